"""How often two faces that cross swap track ids, with the tracker matching faces to where each
track was last seen or to where its motion puts it now (pyfer.video.IoUTracker, ``predict_motion``).

    python scripts/video_crossing.py [--sfew ../shared/data/sfew_train] [--pairs 20]

Clips: pairs of SFEW film faces (shuffled with seed 0), 100 px wide in a 640x480 frame of smooth
random texture, 30 frames/s, sensor noise and JPEG per frame. One face walks right, the other
left, and they pass each other, the second in front, at a vertical offset of 0.2, 0.5 or 0.8
face heights and at 2, 4 or 8 px a frame (0.6-2.4 face widths a second). The detector runs once
per frame (``Recognizer.predict``, real YuNet); each tracker is replayed on the same detections.
A clip *swaps* when a face carries the other face's track id after the crossing (the faces are
told apart by their true positions); a face gets a *new* id when its track ended while it was
hidden behind the other (longer than its track lives unseen); *lost*: a face has no track after.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pyfer import Recognizer
from pyfer.video import IoUTracker

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


TRACKERS = {"last box, tracks live 5 frames unseen (before)": dict(predict_motion=False, max_missed=5),
            "last box, 15 frames": dict(predict_motion=False, max_missed=15),
            "last box, 30 frames": dict(predict_motion=False, max_missed=30),
            "predicted by motion, 5 frames": dict(max_missed=5),
            "predicted by motion, 15 frames": dict(max_missed=15),
            "predicted by motion, 30 frames (default)": dict(max_missed=30)}


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
          "per setting) where the faces swapped ids / where one got a new id after being hidden\n")
    cols = [(o, s) for o in OFFSETS for s in SPEEDS]
    print("| matching | " + " | ".join(f"offset {o:g}, {s} px/frame" for o, s in cols) + " | all: swapped / new / lost |")
    print("|---|" + "---|" * (len(cols) + 1))
    for name, kw in TRACKERS.items():
        cells, total = [], {"swap": 0, "new": 0, "lost": 0}
        for o, s in cols:
            res = [replay(d, IoUTracker(**kw)) for oo, ss, d in clips if (oo, ss) == (o, s)]
            cells.append(f"{res.count('swap')} / {res.count('new')}")
            for key in total:
                total[key] += res.count(key)
        print(f"| {name} | " + " | ".join(cells) + f" | {total['swap']} / {total['new']} / {total['lost']} "
              f"of {len(clips)} |")

if __name__ == "__main__":
    main()
