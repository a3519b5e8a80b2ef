"""Video: per-frame recognition, IoU face tracking by predicted motion, smoothing of scores,
boxes and landmarks over each track, annotation.

    pyfer video clip.mp4 --out annotated.mp4 --jsonl faces.jsonl
    pyfer video interview.mp4 --summary faces.csv --timeline faces.png
    pyfer video 0 --max-frames 300 --jsonl -          # camera 0, JSON lines to stdout
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import time
from array import array
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Optional, Union, cast

import numpy as np

from pyfer.atomic import atomic_write, make_folders, open_for_writing, open_in_place, real_path, save_figure
from pyfer.c_stderr import caught_c_stderr
from pyfer.files import VIDEO_CODECS
from pyfer.recognizer import Face, ImageLike, Recognizer, load_image
from pyfer.stop_signals import StopHandlers

MAX_BAD_FRAMES = 50  # undecodable frames in a row before a file is taken to have ended
# A scene cut: more than SCENE_CUT_SHARE of the cells of two frames' 16x16 gray thumbnails (0-255)
# changed by more than SCENE_CUT_CHANGE, and more than SCENE_CUT_UNEVEN_SHARE of them by that much
# beyond the frame's median change. A cut changes the whole frame, unevenly; a hand or a person
# passing close to the camera changes a part, however much (the mean difference above 18 it
# replaced called a light hand over a quarter of a film frame a cut 80% of the time, over 40% of it
# 98%), and a light switched on or an exposure step changes it all evenly (that rule: 95-100% of
# frames made 25 gray levels darker or lighter). Measured by scripts/scene_cut_threshold.py
# (results/scene_cuts/thresholds.md) on 299 pairs of different SFEW film frames: 97.7% of those cuts
# found (98.0% before); none of 1,200 of the same frames moved 3 or 5%, zoomed 5%, or moved 2%,
# zoomed 3% and brightened 10% together called one (0.25% before), nor any with a hand over 10%, 25%
# or 40% of it, nor any 17-40 gray levels lighter or darker; 0.3-0.7% of those made 20% lighter
# or darker (12-14% before), 9.7% of those made 30% lighter (52% before).
SCENE_CUT_CHANGE = 15.0
SCENE_CUT_SHARE = 0.48
SCENE_CUT_UNEVEN_SHARE = 0.2


def iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def scene_thumbnail(frame: np.ndarray) -> np.ndarray:
    """What scene cuts are judged on: the frame in gray, shrunk to 16x16 (float32)."""
    import cv2

    from pyfer.preprocess import to_gray

    return cv2.resize(to_gray(frame), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def is_scene_cut(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether two frames' thumbnails (:func:`scene_thumbnail`) are of different scenes."""
    change = after - before
    return (float(np.mean(np.abs(change) > SCENE_CUT_CHANGE)) > SCENE_CUT_SHARE
            and float(np.mean(np.abs(change - np.median(change)) > SCENE_CUT_CHANGE)) > SCENE_CUT_UNEVEN_SHARE)


class OneEuroFilter:
    """The 1€ filter (Casiez, Roussel and Vogel, CHI 2012) over a vector of positions: a low-pass
    whose cutoff rises with speed, so a face that holds still keeps a steady box (the detector's
    frame-to-frame wobble is filtered out) and one that moves is followed with little lag.
    ``min_cutoff`` (Hz): the cutoff at rest; ``beta``: how fast it rises with speed, where speed is
    measured in ``scale`` units per second (the face's width: the same filter for small and big
    faces); ``d_cutoff`` (Hz): the low-pass on that speed."""

    def __init__(self, x: np.ndarray, t: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0):
        self.x, self.t = np.asarray(x, np.float64), t
        self.dx = np.zeros_like(self.x)
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff

    @staticmethod
    def _weight(cutoff, dt: float):
        return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))  # the new sample's share at this cutoff

    def __call__(self, x: np.ndarray, t: float, scale: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        dt = t - self.t
        if dt <= 0:  # no time passed (or it went back): start again from this sample
            self.x, self.t, self.dx = x, t, np.zeros_like(x)
            return x
        a = self._weight(self.d_cutoff, dt)
        self.dx = a * (x - self.x) / dt + (1 - a) * self.dx
        a = self._weight(self.min_cutoff + self.beta * np.abs(self.dx) / max(scale, 1.0), dt)
        self.x, self.t = a * x + (1 - a) * self.x, t
        return self.x


VELOCITY_CUTOFF = 1.0  # Hz: the low-pass on a track's velocity (as the 1€ filter's on its speed)


def corners(box) -> np.ndarray:
    """(x, y, w, h) -> (x0, y0, x1, y1), float64."""
    x, y, w, h = box
    return np.array([x, y, x + w, y + h], np.float64)


@dataclass
class Track:
    id: int
    box: tuple
    scores: np.ndarray  # smoothed probabilities
    missed: int = 0
    age: int = 1
    box_filter: Optional[OneEuroFilter] = None  # smooths the box corners
    landmark_filter: Optional[OneEuroFilter] = None
    seen: float = 0.0  # when the detector last found it (seconds)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box corners, px/s, low-passed
    shown: Optional[Face] = None  # the face as last reported (smoothed), which held() moves on

    def predicted_box(self, seconds: float) -> tuple[float, float, float, float]:
        """Where its motion puts the box at ``seconds`` (x, y, w, h)."""
        x0, y0, x1, y1 = corners(self.box) + self.velocity * (seconds - self.seen)
        return (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))

    def moved_to(self, box: tuple, seconds: float) -> None:
        dt = seconds - self.seen
        if dt > 0:
            a = OneEuroFilter._weight(VELOCITY_CUTOFF, dt)
            self.velocity = a * (corners(box) - corners(self.box)) / dt + (1 - a) * self.velocity
        self.box, self.seen = box, seconds


# held() draws a missed face for hold_seconds and at most this many missed frames (a camera whose
# stated frame rate is too high, or a clock that stands still, would stretch the time)
HOLD_MAX_MISSED = 12
# ...and not over a face found in that frame (IoU above this): A hidden behind B is not drawn on B
HOLD_MAX_OVERLAP = 0.1

# A track's unseen time (max_unseen_seconds) is bounded in frames too: it lives at least this many
# missed frames (below 5 frames/s, a time-lapse: a face missed once was a new one) and at most that
# many (a frame time that stands still: update(faces, 0.0) on every frame kept every track)
TRACK_MIN_MISSED = 5
TRACK_MAX_MISSED = 300


@dataclass
class IoUTracker:
    """Greedy IoU matching of this frame's faces to live tracks; each track's scores are an
    exponential moving average (``alpha`` = weight of the new frame), which steadies the label
    against frame-to-frame flicker (``alpha=1``: no smoothing). Each track's box and landmarks go
    through a :class:`OneEuroFilter` (``min_cutoff``, ``beta``), which steadies a still face's box
    and follows a moving one (``smooth_geometry=False``: the detector's own). Faces are matched to
    where each track's motion puts it now or where it was last seen, whichever overlaps more
    (``predict_motion=False``: where it was last seen), so two faces that pass each other keep
    their ids. A track survives ``max_unseen_seconds`` without a match, and at least
    ``TRACK_MIN_MISSED`` and at most ``TRACK_MAX_MISSED`` missed frames (or ``max_missed`` frames,
    where that is set), and the scores of a face found again after ``k`` missed frames weigh as
    ``k + 1`` frames' worth of the average;
    :meth:`reset` (at a scene cut) ends every track. A frame's time going back (another clip, a
    looped file) is a reset. :meth:`held` gives the faces of tracks missed for at most
    ``hold_seconds``, where their motion puts them: what a video draws so that a face the detector
    misses for a frame or two keeps its box (0: none)."""

    iou_threshold: float = 0.3
    alpha: float = 0.4
    # a frame count instead of max_unseen_seconds (None: the time limit)
    max_missed: Optional[int] = None
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 0
    # (the settings below came later: after the fields above, positional arguments mean what they did)
    smooth_geometry: bool = True
    predict_motion: bool = True
    # measured by scripts/video_jitter.py: a still face's box shakes 0.25x as much, a moving one's
    # error against the true motion is 0.1% of the face width more (docs/recognizer.md, "Video")
    min_cutoff: float = 0.3
    beta: float = 10.0
    _last: Optional[float] = None  # the last frame's time
    # a face hidden while another passes in front keeps its id (30 frames at 30 frames/s, measured
    # by scripts/video_crossing.py; docs/recognizer.md, "Video"); a time, so as long at 60 frames/s
    max_unseen_seconds: float = 1.0
    # how long a missed face's box is still drawn (held()): 6 frames at 30 frames/s, none below 5
    # frames/s (scripts/video_hold.py; docs/recognizer.md, "Video")
    hold_seconds: float = 0.2
    _found: list = field(default_factory=list, repr=False)  # the boxes the last update reported

    def reset(self) -> None:
        """No face of the next frame continues a track (ids keep counting up)."""
        self.tracks = []
        self._found = []

    def _geometry(self, t: Track, f: Face, seconds: float) -> Face:
        """``f`` with its box and landmarks replaced by the track's smoothed ones."""
        w = f.box[2]
        if t.box_filter is None:
            t.box_filter = OneEuroFilter(corners(f.box), seconds, self.min_cutoff, self.beta)
        else:
            x0, y0, x1, y1 = (int(round(c)) for c in t.box_filter(corners(f.box), seconds, scale=w))
            f = replace(f, box=(x0, y0, max(1, x1 - x0), max(1, y1 - y0)))
        if f.landmarks is None:
            t.landmark_filter = None
            return f
        points = np.array(f.landmarks, np.float64).ravel()
        if t.landmark_filter is None or t.landmark_filter.x.shape != points.shape:
            t.landmark_filter = OneEuroFilter(points, seconds, self.min_cutoff, self.beta)
            return f
        s = t.landmark_filter(points, seconds, scale=w)
        return replace(f, landmarks=tuple((float(s[i]), float(s[i + 1])) for i in range(0, len(s), 2)))

    def _candidate_boxes(self, t: Track, seconds: float) -> list[tuple]:
        """Where a track's face may be now: where it was last seen and where its motion puts it."""
        return [t.box, t.predicted_box(seconds)] if self.predict_motion else [t.box]

    def _match_scores(self, faces: list[Face], seconds: float) -> list[tuple[float, int, int]]:
        """(IoU, track index, face index) of every pair, the best over the track's candidate boxes."""
        out = []
        for ti, t in enumerate(self.tracks):
            boxes = self._candidate_boxes(t, seconds)  # once per track, not per pair
            out += [(max(iou(b, f.box) for b in boxes), ti, fi) for fi, f in enumerate(faces)]
        return out

    def _lives_on(self, t: Track, seconds: float) -> bool:
        if self.max_missed is not None:
            return t.missed <= self.max_missed
        if t.missed <= TRACK_MIN_MISSED:
            return True
        in_time = seconds - t.seen <= self.max_unseen_seconds + 1e-9  # (n frames of 1/30 s add up to a hair over)
        return in_time and t.missed <= TRACK_MAX_MISSED

    def update(self, faces: list[Face], seconds: Optional[float] = None) -> list[tuple[int, Face]]:
        """Returns ``(track_id, face with smoothed scores, box and landmarks)`` for each face of
        the frame. ``seconds``: the frame's time (the filters' clock); default (and for a time
        that is not finite) the last frame's time + 1/30 s."""
        if seconds is None or not math.isfinite(seconds):  # (a NaN would poison every filter)
            seconds = 0.0 if self._last is None else self._last + 1 / 30
        elif self._last is not None and seconds < self._last:
            self.reset()
        self._last = seconds

        pairs = sorted(self._match_scores(faces, seconds), reverse=True)
        used_t, matched = set(), {}
        for v, ti, fi in pairs:
            if v < self.iou_threshold:
                break
            if ti not in used_t and fi not in matched:
                used_t.add(ti)
                matched[fi] = ti
        out = []
        for fi, f in enumerate(faces):
            p = np.array(list(f.scores.values()))
            if fi in matched:
                t = self.tracks[matched[fi]]
                weight = 1 - (1 - self.alpha) ** (t.missed + 1)  # what the missed frames would have added
                t.scores = (1 - weight) * t.scores + weight * p
                t.moved_to(f.box, seconds)  # the detector's box, not the smoothed one
                t.missed, t.age = 0, t.age + 1
            else:
                t = Track(self._next_id, f.box, p, seen=seconds)
                self._next_id += 1
                self.tracks.append(t)
            names = list(f.scores)
            k = int(np.argmax(t.scores))
            smoothed = replace(f, label=names[k], confidence=float(t.scores[k]),
                               scores={n: float(v) for n, v in zip(names, t.scores)})
            if self.smooth_geometry:
                smoothed = self._geometry(t, smoothed, seconds)
            t.shown = smoothed
            out.append((t.id, smoothed))
        self._found = [f.box for _, f in out]
        seen = {tid for tid, _ in out}
        for t in self.tracks:
            if t.id not in seen:
                t.missed += 1
        self.tracks = [t for t in self.tracks if self._lives_on(t, seconds)]
        return out

    def held(self, shape: Optional[tuple] = None) -> list[tuple[int, Face]]:
        """``(track_id, face)`` for each track the last :meth:`update` missed and last found at
        most ``hold_seconds`` (and ``HOLD_MAX_MISSED`` frames) before it: the face as last
        reported, its box and landmarks moved to where the track's motion puts them at that
        frame's time. Left out: a box moved wholly out of the frame (``shape``: the frame's) and
        one over a face that update found (a face hidden behind another, or found too far off to
        continue its track). For drawing only: the detector did not find these."""
        if self._last is None or not self.hold_seconds > 0:  # (not: NaN holds nothing)
            return []
        out = []
        for t in self.tracks:
            if (t.missed == 0 or t.missed > HOLD_MAX_MISSED or t.shown is None
                    or self._last - t.seen > self.hold_seconds + 1e-9):
                continue
            x, y, w, h = t.shown.box
            px, py, pw, ph = t.predicted_box(self._last) if self.predict_motion else t.box
            # the last reported box (smoothed) moved by the motion since, so as not to jump; its
            # size by the motion's, within a factor of 2 (a fast-shrinking box fell to a few px)
            dx, dy = px - t.box[0], py - t.box[1]
            sw = min(2.0, max(0.5, pw / t.box[2])) if t.box[2] > 0 else 1.0
            sh = min(2.0, max(0.5, ph / t.box[3])) if t.box[3] > 0 else 1.0
            nx, ny = x + dx, y + dy
            box = (int(round(nx)), int(round(ny)), max(1, int(round(w * sw))), max(1, int(round(h * sh))))
            if shape is not None and (box[0] >= shape[1] or box[1] >= shape[0] or box[0] + box[2] <= 0
                                      or box[1] + box[3] <= 0):
                continue
            if any(iou(box, found) > HOLD_MAX_OVERLAP for found in self._found):
                continue
            landmarks = t.shown.landmarks
            if landmarks is not None:
                landmarks = tuple((nx + (lx - x) * sw, ny + (ly - y) * sh) for lx, ly in landmarks)
            out.append((t.id, replace(t.shown, box=box, landmarks=landmarks)))
        return out


# The timeline's colour for each expression: Okabe-Ito's palette, which colour-blind viewers tell
# apart (a helper's review found neutral and anger, and happiness, surprise and sadness, the same
# under deuteranopia in matplotlib's tab10); neutral grey. Each layer also has its own hatch, for
# greyscale prints. Classes of other models take the rest of the palette in turn.
EXPRESSION_COLOURS = {"neutral": "#BBBBBB", "happiness": "#E69F00", "surprise": "#F0E442", "sadness": "#0072B2",
                      "anger": "#D55E00", "disgust": "#009E73", "fear": "#CC79A7", "contempt": "#56B4E9"}
OTHER_COLOURS = ("#000000", "#882255", "#44AA99", "#999933", "#332288", "#AA4499", "#117733", "#661100")
LAYER_HATCHES = ("", "//", "..", "\\\\", "xx", "oo", "--", "++", "||", "**")


def expression_colours(names: list) -> list:
    """A colour per class name, as the timeline draws them (EXPRESSION_COLOURS, then OTHER_COLOURS)."""
    others = iter(OTHER_COLOURS * (1 + len(names) // len(OTHER_COLOURS)))
    return [EXPRESSION_COLOURS.get(n) or next(others) for n in names]


class Timeline:
    """Each track's scores over time, as :func:`process_video` reports them (``timeline=``): a
    summary row per track (:meth:`rows`, :meth:`write_csv`) and a chart (:meth:`plot`). Scores
    are the reported ones: smoothed, unless the tracker does not smooth. One Timeline per video
    (track ids start again in each run). Kept in compact arrays, 48 bytes a face a frame (time,
    frame index, 8 float32 scores): 2 h of 8 faces at 60 frames/s take about 170 MB."""

    CHART_BINS = 1000  # the chart's time steps at most (a long video's frames are averaged into them)

    def __init__(self) -> None:
        self.class_names: Optional[list[str]] = None
        # every frame added, with or without faces: how many, the earliest and latest time
        self.frames, self.first_time, self.last_time = 0, 0.0, 0.0
        self.times: dict[int, "array[float]"] = {}
        self.frame_index: dict[int, "array[int]"] = {}
        self.scores: dict[int, "array[float]"] = {}

    def add(self, seconds: float, tracked: list[tuple[int, Face]], frame: Optional[int] = None) -> None:
        """One frame's tracked faces (``frame``: its index; default the count of frames added)."""
        frame = self.frames if frame is None else frame
        if self.frames == 0:
            self.first_time = self.last_time = seconds
        self.frames += 1
        self.first_time, self.last_time = min(self.first_time, seconds), max(self.last_time, seconds)
        for tid, f in tracked:
            if self.class_names is None:
                self.class_names = list(f.scores)
            if tid not in self.times:
                self.times[tid], self.frame_index[tid], self.scores[tid] = array("d"), array("q"), array("f")
            self.times[tid].append(seconds)
            self.frame_index[tid].append(frame)
            self.scores[tid].extend(f.scores.values())

    def _scores(self, tid: int) -> np.ndarray:
        return np.frombuffer(self.scores[tid], np.float32).reshape(len(self.times[tid]), -1)

    def frame_step(self) -> float:
        """Seconds between frames (the average over the video; 1/30 before two frames or when
        they all have one time)."""
        step = (self.last_time - self.first_time) / (self.frames - 1) if self.frames > 1 else 0.0
        return step if step > 0 else 1 / 30

    def rows(self) -> list[dict]:
        """One dict per track, in order of first appearance: ``id``; ``first_frame``,
        ``last_frame`` (as ``frame`` in the JSON lines) and ``first_seen``, ``last_seen`` (seconds);
        ``frames`` it was found in; ``label``, the class of highest mean score (over its frames,
        so possibly top in none of them); each class's mean score; then ``<class>_top``, the share
        of its frames whose label (top class) it was ("happy 40% of the time")."""
        out = []
        names = self.class_names or []
        for tid in sorted(self.times, key=lambda t: (self.times[t][0], t)):
            scores = self._scores(tid)
            mean = scores.mean(axis=0, dtype=np.float64)
            top = np.bincount(scores.argmax(axis=1), minlength=len(names)) / len(scores)
            out.append({"id": tid, "first_frame": self.frame_index[tid][0], "last_frame": self.frame_index[tid][-1],
                        "first_seen": round(self.times[tid][0], 3), "last_seen": round(self.times[tid][-1], 3),
                        "frames": len(self.times[tid]), "label": names[int(np.argmax(mean))],
                        **{n: round(float(v), 4) for n, v in zip(names, mean)},
                        **{f"{n}_top": round(float(v), 4) for n, v in zip(names, top)}})
        return out

    def write_csv(self, path: Union[str, os.PathLike]) -> None:
        """The rows, with a header (only a header when no face was found)."""
        import csv

        from pyfer import EMOTIONS

        names = self.class_names or EMOTIONS
        columns = ["id", "first_frame", "last_frame", "first_seen", "last_seen", "frames", "label",
                   *names, *(f"{n}_top" for n in names)]
        with atomic_write(path) as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows())

    def chart_tracks(self, tracks: int) -> tuple[list[int], list[int]]:
        """The ids of the ``tracks`` faces found in most frames (of equals, the lower id), in order
        of first appearance as the chart draws them, and the ids of the rest, ascending."""
        ranked = sorted(self.times, key=lambda t: (-len(self.times[t]), t))
        return sorted(ranked[:tracks], key=lambda t: (self.times[t][0], t)), sorted(ranked[tracks:])

    def plot(self, path: Union[str, os.PathLike], tracks: int = 6) -> None:
        """The ``tracks`` faces found in most frames, one panel each: the share of each expression
        over time, stacked; empty where the face was not found (for more than 3 frames), its
        frames averaged into at most CHART_BINS steps. Needs matplotlib; leaves pyplot and the
        caller's backend alone."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter, MultipleLocator

        shown, hidden = self.chart_tracks(tracks)
        names = self.class_names or []
        colours = expression_colours(names)
        hatches = [LAYER_HATCHES[i % len(LAYER_HATCHES)] for i in range(len(names))]
        step = self.frame_step()
        span = max(self.last_time - self.first_time, step)
        width = max(step, span / self.CHART_BINS)  # one drawn step: a frame, or a bin of frames
        height = 1.1 + 1.5 * max(1, len(shown))  # inches: 0.5 at the top for the title and legend
        fig = Figure(figsize=(10, height))
        FigureCanvasAgg(fig)
        axes = fig.subplots(max(1, len(shown)), 1, sharex=True, squeeze=False)[:, 0]
        for ax, tid in zip(axes, shown):
            t = np.asarray(self.times[tid])
            p = self._scores(tid)
            # (the last frame, at span / width, goes into the last bin)
            bins = np.minimum(np.floor((t - self.first_time) / width), self.CHART_BINS - 1).astype(np.int64)
            used, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
            mean = np.zeros((len(used), p.shape[1]))
            np.add.at(mean, inverse, p)
            mean /= counts[:, None]
            # left empty: bins without this face worth more than 3 frames (with a bin per frame,
            # 4 missed frames or more; with longer bins, any whole bin)
            breaks = np.flatnonzero((np.diff(used) - 1) * width > 3 * step + 1e-9) + 1
            for seg_bins, seg_p in zip(np.split(used, breaks), np.split(mean, breaks)):
                x0 = self.first_time + seg_bins * width  # each bin drawn across its width
                xs = np.repeat(x0, 2) + np.tile([0, width], len(x0))
                ax.stackplot(xs, np.repeat(seg_p, 2, axis=0).T, colors=colours, hatch=hatches or None,
                             edgecolor="white", linewidth=0.5)
            ax.set_ylim(0, 1)
            ax.set_ylabel(f"#{tid}", fontsize=10)
            ax.set_yticks([0, 0.5, 1])
        if not shown:
            axes[0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_xlim(self.first_time, self.first_time + span + (step if span > step else 0))
        if span > 120:  # minutes:seconds beyond two minutes, ticks on whole minutes
            tick = next((m for m in (60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 14400) if span / m <= 10), 36000)
            axes[-1].xaxis.set_major_locator(MultipleLocator(tick))
            axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v // 60)}:{int(v % 60):02d}"))
            axes[-1].set_xlabel("minutes:seconds")
        else:
            axes[-1].set_xlabel("seconds")
        if shown:
            fig.supylabel("share of scores, smoothed (blank: face not found)", fontsize=8)
        if names:
            fig.legend(handles=[Patch(facecolor=c, hatch=h, edgecolor="white", label=n)
                                for c, h, n in zip(colours, hatches, names)], loc="upper center",
                       bbox_to_anchor=(0.5, 1 - 0.3 / height), ncol=min(8, len(names)), fontsize=10, frameon=False,
                       handleheight=1.4, handlelength=2.2)
        note = "" if not hidden else f"; not shown: {len(hidden)} found in fewer frames (" + \
            ", ".join(f"#{t}" for t in hidden[:8]) + (", ..." if len(hidden) > 8 else "") + ")"
        fig.suptitle("expressions over time, per face (track id)" + note, y=1 - 0.05 / height, va="top", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))
        save_figure(fig, path, dpi=150)  # (a legend still legible on a phone)


LABEL_MIN_SCALE = 0.3  # below this OpenCV's font is unreadable: a shorter text, or none


@dataclass(frozen=True)
class Label:
    """A face's label as drawn: ``text`` from ``origin`` (its baseline's left end) at font ``scale``
    and stroke ``thick``, on a black background ``rect`` (x0, y0, x1, y1; x1, y1 excluded) that
    holds every stroke, descenders and all."""

    text: str
    origin: tuple[int, int]
    scale: float
    thick: int
    rect: tuple[int, int, int, int]
    # where beside the box: (above, below, inside its top), (left edge, centred, right edge)
    spot: tuple[int, int] = (0, 0)


def label_scale(shape, face_width: float) -> float:
    """A label's font scale: text about 1/160 of the image's long side high at least, readable when
    the whole image is seen on a screen (a 4032 px phone photo drawn at the 40 px faces' scale was
    a smudge), and as wide as the face's for big faces (above 1/18 of the long side: only there
    does a label's size follow its box's jitter in a video)."""
    return max(0.4, max(shape[:2]) / 3600, face_width / 200)


def text_thickness(scale: float) -> int:
    return max(1, round(1.6 * scale))  # the stroke in proportion to the glyphs (a fixed one blotted small text)


def _overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


LABEL_SPOTS = [(row, col) for row in range(3) for col in range(3)]  # Label.spot, in the order tried
LABEL_SIZES = (1.0, 0.75, 0.5)  # of label_scale's, each text tried at each (never below LABEL_MIN_SCALE)
# Where no spot is free: a pixel of another label covered counts as much as this many pixels of
# another face. Text over text hides both ("neutrc", "ppiness" in a 6000 px crowd of 30 faces,
# a helper's review, session 47); a label over a forehead still leaves that face readable.
LABEL_OVER_LABEL_COST = 8


def label_placement(texts: list[str], box, shape, avoid=(), prefer: Optional[tuple[int, int]] = None,
                    labels=()) -> Optional[Label]:
    """Where a face's label goes, or None where no text of ``texts`` fits the image at a readable
    size. Tried in order: each text (longest first) at each of LABEL_SIZES, each above the box,
    below it and inside its top, starting at the box's left edge, centred on it or ending at its
    right edge (``prefer``, a ``Label.spot``, first: where the face's label was in the last frame
    of a video); the first that covers nothing of ``avoid`` (rects: the other faces' boxes) and
    ``labels`` (rects: the labels placed so far) is taken, else the one that covers least, a
    label's pixel counting LABEL_OVER_LABEL_COST times (a crowd of small faces). Always whole
    inside the image: moved, and shrunk where needed (a face filling a small image cut it to
    "happines")."""
    import cv2

    x, y, w, h = box
    height, width = shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    try:  # (a spot read back from JSON is a list)
        prefer = None if prefer is None else (int(prefer[0]), int(prefer[1]))
    except (TypeError, ValueError, IndexError):
        prefer = None
    best: Optional[tuple[int, Label]] = None
    for text in texts:
        for size in LABEL_SIZES:
            scale = label_scale(shape, w) * size
            thick = text_thickness(scale)
            (tw, th), descent = cv2.getTextSize(text, font, scale, thick)
            if tw + 2 * (thick + 1) > width:
                scale *= (width - 2 * (thick + 1)) / tw
                thick = text_thickness(scale)
                (tw, th), descent = cv2.getTextSize(text, font, scale, thick)
            pad = thick + 1  # strokes reach about thick/2 past the size OpenCV gives
            bw, bh = tw + 2 * pad, th + descent + 2 * pad
            if scale < LABEL_MIN_SCALE or bw > width or bh > height:
                continue
            rows = (y - bh, y + h, y)  # above, below, inside the top of the box
            cols = (x, x + (w - bw) // 2, x + w - bw)  # from the box's left edge, centred, to its right edge
            spots = LABEL_SPOTS if prefer not in LABEL_SPOTS else [prefer] + [p for p in LABEL_SPOTS if p != prefer]
            for spot in spots:
                x0 = max(0, min(cols[spot[1]], width - bw))
                y0 = max(0, min(rows[spot[0]], height - bh))
                rect = (x0, y0, x0 + bw, y0 + bh)
                covered = (sum(_overlap(rect, r) for r in avoid)
                           + LABEL_OVER_LABEL_COST * sum(_overlap(rect, r) for r in labels))
                if best is None or covered < best[0]:
                    best = (covered, Label(text, (x0 + pad, y0 + pad + th), scale, thick, rect, spot))
                if covered == 0:
                    return best[1]
    return None if best is None else best[1]


def face_labels(faces: list[Face], shape, ids: Optional[list[int]] = None,
                spots: Optional[dict] = None) -> list[Optional[Label]]:
    """Each face's label as :func:`draw_faces` draws it on an image of ``shape`` (None: no readable
    label fits), placed in turn, each off the labels before it and the other faces' boxes;
    ``ids`` and ``spots`` as there (``spots`` is updated). The labels at their kept spots are
    taken only when they are no worse than placed afresh: none shorter, smaller or missing, and
    covering no more of the other labels and faces (a kept spot can take the room a later face's
    label needed)."""
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)]
    labels = _placed_labels(faces, boxes, shape, ids, None)
    if spots and ids is not None and any(tid in spots for tid in ids):
        kept = _placed_labels(faces, boxes, shape, ids, spots)
        if _no_worse(kept, labels, boxes):
            labels = kept
    if spots is not None and ids is not None:
        for tid, label in zip(ids, labels):
            if label is not None:
                spots[tid] = label.spot
    return labels


# the last text tried for these classes, where the name does not fit (a 48 px FER2013 face had
# no label for "happiness": a helper's review, session 47; "contempt", with its wide m and no
# short word for it, is cut)
SHORT_NAMES = {"happiness": "happy", "sadness": "sad", "anger": "angry", "contempt": "contem."}


def _placed_labels(faces, boxes, shape, ids, spots) -> list[Optional[Label]]:
    placed: list[tuple[int, int, int, int]] = []
    labels: list[Optional[Label]] = []
    for i, f in enumerate(faces):
        ident = f" #{ids[i]}" if ids is not None else ""
        # shorter texts where space is short; a video's track id is the last to go (it ties the
        # face to the summary and the timeline)
        texts = [f"{f.label} {f.confidence:.2f}{ident}", f"{f.label}{ident}"]
        if f.label in SHORT_NAMES:
            texts.append(f"{SHORT_NAMES[f.label]}{ident}")
        texts += [ident.strip()] if ident else []
        prefer = spots.get(ids[i]) if spots is not None else None
        label = label_placement(texts, f.box, shape, boxes[:i] + boxes[i + 1:], prefer, placed)
        labels.append(label)
        if label is not None:
            placed.append(label.rect)
    return labels


def _no_worse(kept: list[Optional[Label]], fresh: list[Optional[Label]], boxes) -> bool:
    for k, f in zip(kept, fresh):
        if f is not None and (k is None or len(k.text) < len(f.text) or k.scale < f.scale):
            return False

    def covered(labels) -> int:  # by each label: of the other faces' boxes and the other labels (weighed as placed)
        total = 0
        for i, lab in enumerate(labels):
            if lab is not None:
                total += sum(_overlap(lab.rect, b) for j, b in enumerate(boxes) if j != i)
                total += LABEL_OVER_LABEL_COST * sum(_overlap(lab.rect, o.rect) for j, o in enumerate(labels)
                                                     if j != i and o is not None)
        return total

    return covered(kept) <= covered(fresh)


def _as_face(f) -> Face:
    if isinstance(f, Face):
        return f
    if isinstance(f, dict):
        try:
            return Face.from_dict(f)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise ValueError(f"a face dict needs Face.to_dict's fields (box, label, confidence, scores): {e!r}") from None
    raise TypeError(f"draw_faces takes pyfer Face objects or their dicts (Face.to_dict), got {type(f).__name__}")


def draw_faces(image: ImageLike, faces: list[Union[Face, dict]], ids: Optional[list[int]] = None,
               spots: Optional[dict] = None) -> np.ndarray:
    """A BGR uint8 copy of ``image`` (anything ``predict`` takes: a path, an array, a PIL image)
    with each face's box, landmarks and label drawn; ``cv2.imwrite`` saves it. ``ids``: a number
    shown after each label (the video tracker's). A transparent image is shown on white, as a
    viewer shows it. Labels keep off each other and off the other faces where they can.
    ``spots`` (with ``ids``): a dict kept from frame to frame of a video, id -> where that face's
    label went (``Label.spot``); each label goes there again while it covers nothing there, so
    labels do not jump between above and below a box as faces move (process_video keeps one).
    ``faces``: :class:`Face` objects, or their dicts (``Face.to_dict``, a JSON line's faces)."""
    import cv2

    from pyfer.preprocess import on_white, to_gray

    face_list = [_as_face(f) for f in faces]
    image = load_image(image)
    if image.ndim == 3 and image.shape[2] == 3:
        out = image.copy()
    elif image.ndim == 3 and image.shape[2] == 4:  # colour kept, composited on white
        out = on_white(image)  # (a new array)
    else:
        out = cv2.cvtColor(to_gray(image), cv2.COLOR_GRAY2BGR)
    long_side = max(out.shape[:2])
    for f in face_list:
        x, y, w, h = f.box
        thick = max(1, min(round(long_side / 400), round(w / 15)))  # visible, and not over a small face
        # green inside a black edge: seen on skin, white walls and greenery alike (green alone was
        # 1.1-1.6:1 against them, a helper's review)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 0, 0), thick + 2)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 220, 0), thick)
        if f.landmarks is not None:  # eyes, nose tip, mouth corners: small, not over the pupils
            r = max(1, min(round(w / 40), thick + 1))
            for px, py in f.landmarks:
                centre = (int(round(px)), int(round(py)))
                cv2.circle(out, centre, r + 1, (0, 0, 0), -1, cv2.LINE_AA)
                cv2.circle(out, centre, r, (0, 220, 255), -1, cv2.LINE_AA)
    for label in face_labels(face_list, out.shape, ids, spots):
        if label is None:  # no readable label fits this image
            continue
        x0, y0, x1, y1 = label.rect
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (0, 0, 0), -1)
        cv2.putText(out, label.text, label.origin, cv2.FONT_HERSHEY_SIMPLEX, label.scale, (255, 255, 255),
                    label.thick, cv2.LINE_AA)
    return out


def check_opencv_name(path, what: str) -> None:
    """Refuse a file name OpenCV's Python wrapper would crash on: one that is not valid UTF-8
    (a Latin-1 ``caf\\xe9.mp4`` arrives in Python as a surrogate-escaped str)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {os.fspath(path)!r}: OpenCV cannot open a file name that is not valid "
                         "UTF-8; rename the file") from None


# Set by the pyfer command for its own process: file descriptor 2 is the process's, so a library
# call leaves it alone (a host's threads would lose their stderr while the writer opens).
QUIET_OPENCV_WRITER_OPEN = False


def open_writer(out, fps: float, size: tuple[int, int]):
    """OpenCV's writer for ``out`` (its folder made), with the codec of its type (``VIDEO_CODECS``);
    raises ValueError when it cannot be opened (a file made for it is removed), also for a name
    :func:`pyfer.atomic.real_path` or :func:`pyfer.atomic.open_for_writing` refuses. For WebM,
    OpenCV's FFmpeg wrapper prints that the tag "is not supported" and then writes VP8 all the
    same: in the pyfer command that line is kept off stderr (``QUIET_OPENCV_WRITER_OPEN``)."""
    import cv2

    # OpenCV (FFmpeg) opens the file by a name, and picks the container by its suffix. The name is
    # checked and the file made (or found) ours to write here (pyfer.atomic.open_for_writing); on
    # Linux FFmpeg then gets a name of its own for that very file (a link to /proc/PID/fd/N in a
    # private folder), so that a link another user puts at the name after the check is never
    # followed (a helper's review raced one in); elsewhere, the name as given.
    try:
        real = Path(real_path(out))
        make_folders(real.parent)
        made = not os.path.lexists(real)
        fd = open_for_writing(real)
    except OSError as e:
        raise ValueError(f"cannot write video {out}: {e.strerror or e}") from None
    private = None
    try:
        name = os.fspath(out)
        if os.path.lexists(f"/proc/{os.getpid()}/fd/{fd}"):
            import tempfile

            private = tempfile.mkdtemp(prefix="pyfer-video-")
            name = os.path.join(private, "video" + Path(out).suffix)
            os.symlink(f"/proc/{os.getpid()}/fd/{fd}", name)
        codec = VIDEO_CODECS.get(Path(out).suffix.lower(), "mp4v")
        quiet = codec == "VP80" and QUIET_OPENCV_WRITER_OPEN
        with caught_c_stderr() if quiet else contextlib.nullcontext():
            writer = cv2.VideoWriter(name, cv2.VideoWriter.fourcc(*codec), fps, size)
    finally:  # (FFmpeg has the file open now, or never will)
        os.close(fd)
        if private is not None:
            import shutil

            shutil.rmtree(private, ignore_errors=True)
    if not writer.isOpened():
        if made:
            real.unlink(missing_ok=True)
        raise ValueError(f"cannot write video {out}")
    return writer


# FFmpeg reads a "protocol:" prefix: rtsp://, http://, and wrappers such as cache:http://... or
# async:http://... that reach the network as well. A Windows drive (C:/ or C:\ ) is none.
PROTOCOL_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def is_network_address(source) -> bool:
    """Whether OpenCV's FFmpeg would take ``source`` for a protocol (``rtsp://...``,
    ``cache:http://...``) rather than a file: any ``name:`` prefix, unless it is a Windows drive or
    a file by that name exists. A path object is always a file; ``./my:clip.mp4`` is one too."""
    return (isinstance(source, str) and PROTOCOL_PREFIX.match(source) is not None
            and WINDOWS_DRIVE.match(source) is None and not os.path.exists(source))


class VideoNotFoundError(FileNotFoundError, ValueError):
    """A video file that does not exist (also a ValueError: what a source OpenCV cannot open raises)."""


def open_source(source: Union[str, int, os.PathLike], allow_network: bool = False):
    """``(capture, is_camera)`` for a file path (or anything else OpenCV opens locally: an image
    sequence "frame_%04d.png"), a camera: an index (an int or a string of digits) or a
    ``/dev/video*`` device, or with ``allow_network`` a network stream (``rtsp://``, ``http://``;
    refused otherwise: pyfer goes online only when told to). A folder, an unreadable file and
    (where OpenCV cannot open it either) a missing path are named as such; a named pipe or a
    device is opened by OpenCV alone."""
    import cv2

    if is_network_address(source) and not allow_network:
        raise ValueError(f"video source {source!r} is a network address (or another FFmpeg protocol): pyfer "
                         "reads it only when allowed (allow_network=True, pyfer video --allow-network); a file "
                         "whose name holds a ':' is read as ./NAME")
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        cap = cv2.VideoCapture(int(source))
        if not cap.isOpened():
            raise ValueError(f"cannot open video source {source!r}")
        return cap, True
    check_opencv_name(source, "video source")
    name = os.fspath(source)
    if os.path.isdir(name):
        raise ValueError(f"video source {name!r} is a folder, not a video file")
    if os.path.isfile(name):  # (opening a regular file has no side effect)
        try:
            os.close(os.open(name, os.O_RDONLY))
        except OSError as e:
            raise ValueError(f"cannot read video source {name!r}: {e.strerror}") from None
    cap = cv2.VideoCapture(name)
    if cap.isOpened():
        return cap, name.startswith("/dev/video")
    if not os.path.lexists(name) and "://" not in name and "%" not in name:
        raise VideoNotFoundError(f"no such video file: {name!r}")
    raise ValueError(f"cannot open video source {source!r}")


def _takes_time(update) -> bool:
    """Whether a tracker's ``update`` takes the frame's time after the faces (a tracker of the
    caller's own, or a subclass written for ``update(faces)``, may not)."""
    import inspect

    try:
        params = list(inspect.signature(update).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= 2


def ended_early(announced: int, read: int) -> bool:
    """Whether a file that gave ``read`` frames fell short of the ``announced`` count of its header
    by more than 2% (at least 2 frames): a container without a frame count gives OpenCV's estimate
    from its duration, so a frame or 2% less is no sign of damage. ``announced`` <= 0: no count."""
    return announced > 0 and announced - read > max(1, announced // 50)


class _FrameClock:
    """Each frame's time in the source, in seconds: its own timestamp (phones record at a varying
    rate, so frame index / average rate drifts), or index / average rate where the backend gives
    none (0 after the first frame, or a time going back) and for cameras."""

    def __init__(self, fps: float, timestamps: bool):
        self.fps, self.timestamps, self.last = fps, timestamps, -1.0

    def time(self, cap, index: int) -> float:
        import cv2

        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000 if self.timestamps else -1.0
        if not (t > self.last and (t > 0 or index == 0)):
            t = max(index / self.fps, self.last + 1 / self.fps)  # never back in time
        self.last = t
        return t


class _stops_deferred:
    """Ctrl-C (SIGINT) and SIGTERM that arrive inside the block take effect at its end. Python runs
    a signal's handler at the next bytecode, so a stop that came while OpenCV encoded a frame (a
    long call) raised just after it, between a frame's JSON line, video frame and timeline entry,
    and the summary then lacked a frame the others had (a helper's review: 2 of 5 SIGTERMs). At
    the end the signals that came are raised again, held back until all are pending, as if they
    arrived then: their own handlers run (a program's, SIG_DFL's end, SIG_IGN's nothing). Only in
    the main thread (handlers can be set nowhere else); elsewhere the block runs as is."""

    def __enter__(self):
        self.arrived: list[int] = []
        self.handlers = StopHandlers(lambda signum, frame: self.arrived.append(signum)).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        import signal

        arrived = list(dict.fromkeys(self.arrived))  # each once, in the order they came
        self.handlers.__exit__()
        if not arrived:
            return
        block = getattr(signal, "pthread_sigmask", None)  # (POSIX: all pending before any handler runs)
        if block is not None:
            block(signal.SIG_BLOCK, arrived)
        try:
            for signum in arrived:
                signal.raise_signal(signum)
        finally:
            if block is not None:
                block(signal.SIG_UNBLOCK, arrived)


def process_video(source: Union[str, int, os.PathLike], recognizer: Recognizer,
                  out: Union[str, os.PathLike, None] = None, jsonl: Union[str, os.PathLike, IO[str], None] = None,
                  max_frames: Optional[int] = None, progress: bool = True,
                  tracker: Optional[IoUTracker] = None, allow_network: bool = False,
                  timeline: Optional[Timeline] = None, scene_cuts: bool = True) -> dict:
    """Run ``recognizer`` on every frame of ``source``; write an annotated video to ``out`` and/or
    one JSON line per frame to ``jsonl`` (a path, opened when the first line is ready, so that a
    source that gives none, or a stop before it, leaves an old file as it was; or an open text
    stream). Frames OpenCV cannot
    decode are skipped (reported on stderr); ``frame`` in the JSON lines counts the frames
    processed, ``time`` is the source frame's own timestamp in seconds. At a scene cut every face
    starts a new track (new id, no smoothing carried over from another shot); ``scene_cuts=False``
    looks for none (an edited recording whose people stay in place across cuts keeps their ids). The folder of
    ``out`` is created, and its writer opened, before the first JSON line; the annotated video is
    written at the source's average frame rate. A file that ends before the frame count its header
    announces (by more than 2%) is reported on stderr. Returns ``{"frames", "seconds", "fps",
    "faces", "skipped_frames", "scene_cuts"}``. Raises VideoNotFoundError (a FileNotFoundError and
    a ValueError) for a missing file, ValueError for a source that cannot be read or opened or
    gives no frame at all (a file OpenCV opens but cannot decode, such as a text file) and for a
    source or ``out`` whose file name is not valid UTF-8 (OpenCV's wrapper crashes on it).
    ``allow_network``: read a ``source`` such as ``rtsp://camera/stream`` (refused otherwise);
    ``out`` is always a file: an address there is refused (FFmpeg would upload the video).
    ``tracker`` (default ``IoUTracker()``: smoothed scores, boxes and landmarks) is reset first: no
    face of this source continues a track of another. ``timeline``: a :class:`Timeline` that
    collects each frame's tracked faces (also on a stop)."""
    import cv2

    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if out is not None:
        if is_network_address(out):
            raise ValueError(f"out {out!r} is a network address (or another FFmpeg protocol): the annotated video "
                             "is written to a file (./NAME for a name that holds a ':')")
        check_opencv_name(out, "cannot write video")
    cap, is_camera = open_source(source, allow_network)
    tracker = tracker or IoUTracker()
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 25.0
    clock = _FrameClock(fps_in, timestamps=not is_camera)
    reset = getattr(tracker, "reset", None)  # (a tracker of the caller's own may have none)
    if reset is not None:
        reset()  # a new source: no face continues a track of another
    takes_time = _takes_time(tracker.update)
    announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_camera else 0
    bar = None
    if progress and not is_camera:
        from tqdm import tqdm  # a dependency of pyfer

        total = min(announced, max_frames) if max_frames and announced > 0 else (max_frames or announced)
        bar = tqdm(total=total or None, unit="frame", file=sys.stderr)  # (the bar's length only)
    jsonl_path = os.fspath(jsonl) if isinstance(jsonl, (str, os.PathLike)) else None
    sink: Optional[IO[str]] = None
    writer = None
    n = n_faces = skipped = cuts = 0
    thumb: Optional[np.ndarray] = None
    label_spots: dict = {}  # track id -> where its label went (draw_faces)
    interrupted = False
    t0 = time.perf_counter()
    created = False  # the JSON lines file is this run's own (removed again if no frame is written)
    try:
        if jsonl_path is None and jsonl is not None:
            sink = cast(IO[str], jsonl)
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                # A frame OpenCV cannot decode (damaged data inside a file) ends nothing: read on,
                # up to MAX_BAD_FRAMES failures in a row, which is how the end of a file looks.
                if is_camera:
                    break
                bad = 1
                # (the file's own frame count: max_frames counts output frames, not frames read)
                while bad <= MAX_BAD_FRAMES and not (announced > 0 and n + skipped + bad >= announced):
                    ok, frame = cap.read()
                    if ok:
                        break
                    bad += 1
                if not ok:
                    break
                skipped += bad
                if bar is not None:
                    bar.update(bad)
                print(f"pyfer video: skipped {bad} frame(s) OpenCV could not decode, before output frame {n}",
                      file=sys.stderr)
            t_frame = clock.time(cap, n + skipped)
            if out is not None and writer is None:  # before the first JSON line: a failure leaves none
                h, w = frame.shape[:2]
                writer = open_writer(out, fps_in, (w, h))
            if scene_cuts:
                before, thumb = thumb, scene_thumbnail(frame)
                if before is not None and is_scene_cut(before, thumb):
                    cuts += 1
                    if reset is not None:
                        reset()
            faces = recognizer.predict(frame)
            tracked = tracker.update(faces, t_frame) if takes_time else tracker.update(faces)
            n_faces += len(tracked)
            # both made first, then written back to back: a stop (Ctrl-C) leaves the JSON lines and
            # the video frames in step
            line = json.dumps({"frame": n, "time": round(t_frame, 3),
                               "faces": [{"id": tid, **f.to_dict()} for tid, f in tracked]}) + "\n"
            # a face missed for a frame or two keeps its box in the video (not in the JSON lines)
            held = getattr(tracker, "held", None)  # (a tracker of the caller's own may have none)
            shown = tracked + (held(frame.shape) if writer is not None and callable(held) else [])
            if writer is not None:  # labels stay where they were while they fit there (ids of this frame)
                label_spots = {tid: label_spots[tid] for tid, _ in shown if tid in label_spots}
            drawn = None if writer is None else draw_faces(frame, [f for _, f in shown], [tid for tid, _ in shown],
                                                           label_spots)
            if jsonl_path is not None and sink is None:  # with the first line ready: a source that gives
                created = not os.path.exists(jsonl_path)  # none, or a stop before it, leaves the file as it was
                make_folders(Path(jsonl_path).parent)
                sink = open_in_place(jsonl_path)
            with _stops_deferred():  # a stop lands between frames: the three outputs stay in step
                if sink is not None:
                    sink.write(line)
                    if is_camera:
                        sink.flush()  # live: let a reader downstream see each frame now
                if writer is not None and drawn is not None:
                    writer.write(drawn)
                if timeline is not None:
                    timeline.add(t_frame, tracked, n)
                n += 1
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt as e:  # Ctrl-C ends a camera session cleanly: the video is finalised below
        if not is_camera or type(e) is not KeyboardInterrupt:  # (SIGTERM, pyfer.cli.Terminated: re-raised)
            raise
        interrupted = True
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if bar is not None:
            bar.close()
        if jsonl_path is not None and sink is not None:
            sink.close()
            if n == 0 and created:  # nothing processed: leave nothing behind
                os.remove(jsonl_path)
    if n == 0 and not interrupted:
        what = "camera" if is_camera else "file"
        raise ValueError(f"no frame could be read from the {what} {source!r}"
                         + ("" if is_camera else ": not a video OpenCV can decode"))
    if (max_frames is None or n < max_frames) and ended_early(announced, n + skipped):
        print(f"pyfer video: the file ended after {n + skipped} of the {announced} frames its header announces "
              "(a truncated or damaged file?)", file=sys.stderr)
    dt = time.perf_counter() - t0
    return {"frames": n, "seconds": round(dt, 3), "fps": round(n / dt, 2) if dt > 0 else 0.0, "faces": n_faces,
            "skipped_frames": skipped, "scene_cuts": cuts}
