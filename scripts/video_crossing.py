"""How often two faces that cross swap track ids, with the tracker matching faces to where each
track was last seen or to where its motion puts it now (pyfer.video.IoUTracker, ``predict_motion``).

    python scripts/video_crossing.py [--sfew ../shared/data/sfew_train] [--pairs 20]

Clips: pairs of SFEW film faces (shuffled with seed 0), 100 px wide in a 640x480 frame of smooth
random texture, 30 frames/s, sensor noise and JPEG per frame. One face walks right, the other
left, and they pass each other, the second in front, at a vertical offset of 0.2, 0.5 or 0.8
face heights and at 2, 4 or 8 px a frame (0.6-2.4 face widths a second). The detector runs once
per frame (``Recognizer.predict``, real YuNet); each tracker is replayed on the same detections.
A clip *swaps* when a face carries the other face's track id after the crossing (the faces are
told apart by their true positions); a face has a *new* id after when it keeps neither its own
nor the other's (its track ended, mostly while it was hidden); *lost*: a face has no track after.
A second table: synthetic boxes of a still face missed for a while, found again in place.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pyfer import EMOTIONS, Face, Recognizer
from pyfer.video import IoUTracker, corners

from video_jitter import FPS, noisy_jpeg, patch, sfew_paths, texture  # (the same clips' frames: scripts/)

REPO = Path(__file__).resolve().parents[1]
WIDTH = 100
OFFSETS = (0.2, 0.5, 0.8)  # vertical, in face heights
SPEEDS = (2, 4, 8)  # px a frame, each face


def crossing_clip(rec: Recognizer, faces, offset: float, speed: int, seed: int):
    """Per frame: the faces predict finds and the two true face centres (the left-starting one first)."""
    rng = np.random.default_rng(seed)
    back = texture(rng)
    patches = [patch(f, WIDTH) for f in faces]
    h = patches[0].shape[0] - WIDTH // 2
    y = (200 - round(offset * h / 2), 200 + round(offset * h / 2))
    span = 360  # each face walks this far: they meet in the middle
    frames = span // speed + 1
    out = []
    for i in range(frames):
        img = back.copy()
        xs = (140 + i * speed, 140 + span - i * speed)
        centres = []
        for p, x, yy in zip(patches, xs, y):  # the second is pasted last: in front
            ph, pw = p.shape[:2]
            img[yy - ph // 2:yy - ph // 2 + ph, x - pw // 2:x - pw // 2 + pw] = p
            centres.append((x, yy))
        out.append((rec.predict(noisy_jpeg(img, rng)), centres))
    return out


def owner(face, centres) -> int:
    """Which true face a box belongs to: the nearer centre, if within half a face width."""
    x, y, w, h = face.box
    d = [np.hypot(x + w / 2 - cx, y + h / 2 - cy) for cx, cy in centres]
    k = int(np.argmin(d))
    return k if d[k] < WIDTH / 2 else -1


def replay(detections, tracker: IoUTracker) -> str:
    """One clip's outcome, from each face's ids in the first and last quarter of the clip (where
    the faces are apart): 'kept' (each face keeps its id), 'swap' (a face has the other's id
    after), 'new' (a face has a new id after: its track ended while it was hidden), 'lost' (a
    face has no track after)."""
    n = len(detections)
    ids: dict[tuple[str, int], set] = {}
    for i, (faces, centres) in enumerate(detections):
        tracked = tracker.update(faces, i / FPS)
        phase = "before" if i < n // 4 else "after" if i >= n - n // 4 else None
        if phase is None:
            continue
        for tid, f in tracked:
            k = owner(f, centres)
            if k >= 0:
                ids.setdefault((phase, k), set()).add(tid)
    before = [ids.get(("before", k), set()) for k in (0, 1)]
    after = [ids.get(("after", k), set()) for k in (0, 1)]
    if not all(after):
        return "lost"
    if any(a & before[1 - k] for k, a in enumerate(after)):
        return "swap"
    return "kept" if all(b & a for b, a in zip(before, after)) else "new"


class PredictedOnly(IoUTracker):
    """Matched to the predicted box alone (not the last-seen one too)."""

    def _candidate_boxes(self, t, seconds):
        return [t.predicted_box(seconds)]


class FadingVelocity(IoUTracker):
    """Matched to a box moved on by a velocity that fades while the face is unseen (0.3 s)."""

    def _candidate_boxes(self, t, seconds):
        dt = seconds - t.seen
        x0, y0, x1, y1 = corners(t.box) + t.velocity * 0.3 * (1 - np.exp(-dt / 0.3))
        return [(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))]


# (name, tracker class, its settings)
TRACKERS = [("last box, tracks live 5 frames unseen (before)", IoUTracker, dict(predict_motion=False, max_missed=5)),
            ("last box, 15 frames", IoUTracker, dict(predict_motion=False, max_missed=15)),
            ("last box, 30 frames", IoUTracker, dict(predict_motion=False, max_missed=30)),
            ("predicted or last box, 5 frames", IoUTracker, dict(max_missed=5)),
            ("predicted or last box, 15 frames", IoUTracker, dict(max_missed=15)),
            ("predicted or last box, 30 frames (default)", IoUTracker, {}),
            ("predicted box alone, 30 frames", PredictedOnly, {}),
            ("fading velocity alone, 30 frames", FadingVelocity, {})]


def still_face_gap(tracker_class, settings: dict, size: int, gap: int, trials: int = 200) -> float:
    """% of trials in which a still ``size`` px face, its detected box wobbling by 2 px (SD),
    missed for ``gap`` frames, keeps its id when found again in place (synthetic boxes)."""
    kept = 0
    for trial in range(trials):
        rng = np.random.default_rng(trial)
        tracker, ids = tracker_class(**settings), set()
        for i in range(10 + gap + 1):
            box = tuple(int(v) for v in np.array([200, 200, size, size]) + np.round(rng.normal(0, 2, 4)))
            face = Face(box=box, label=EMOTIONS[0], scores=dict.fromkeys(EMOTIONS, 1 / 8), confidence=1 / 8)
            ids |= {tid for tid, _ in tracker.update([] if 10 <= i < 10 + gap else [face], i / FPS)}
        kept += len(ids) == 1
    return 100 * kept / trials

def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sfew", type=Path, default=REPO.parent / "shared" / "data" / "sfew_train")
    ap.add_argument("--pairs", type=int, default=20)
    args = ap.parse_args(argv)
    paths = sfew_paths(args.sfew)
    rec = Recognizer(threads=1)
    cv2.setNumThreads(1)
    clips = []  # (offset, speed, detections)
    for k in tqdm(range(args.pairs), desc="pairs", unit="pair"):
        faces = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[2 * k:2 * k + 2]]
        for offset in OFFSETS:
            for speed in SPEEDS:
                clips.append((offset, speed, crossing_clip(rec, faces, offset, speed, seed=k)))
    print(f"{args.pairs} pairs of SFEW faces crossing, {WIDTH} px, {FPS:g} frames/s; clips (of {args.pairs} "
          "per setting) where the faces swapped ids / where one had a new id after the crossing\n")
    cols = [(o, s) for o in OFFSETS for s in SPEEDS]
    print("| matching | " + " | ".join(f"offset {o:g}, {s} px/frame" for o, s in cols) + " | all: swapped / new / lost |")
    print("|---|" + "---|" * (len(cols) + 1))
    for name, tracker_class, kw in TRACKERS:
        cells, total = [], {"swap": 0, "new": 0, "lost": 0}
        for o, s in cols:
            res = [replay(d, tracker_class(**kw)) for oo, ss, d in clips if (oo, ss) == (o, s)]
            cells.append(f"{res.count('swap')} / {res.count('new')}")
            for key in total:
                total[key] += res.count(key)
        print(f"| {name} | " + " | ".join(cells) + f" | {total['swap']} / {total['new']} / {total['lost']} "
              f"of {len(clips)} |")
    gaps = [(30, 15), (30, 29), (60, 29)]
    print("\nA still face whose detected box wobbles (2 px SD), missed for some frames, then found in place:"
          " % of 200 trials in which it keeps its id\n")
    print("| matching | " + " | ".join(f"{size} px, {gap} frames missed" for size, gap in gaps) + " |")
    print("|---|" + "---|" * len(gaps))
    for name, tracker_class, kw in TRACKERS:
        print(f"| {name} | " + " | ".join(f"{still_face_gap(tracker_class, kw, size, gap):.1f}%" for size, gap in gaps)
              + " |")

if __name__ == "__main__":
    main()
