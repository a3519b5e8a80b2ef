"""How often a video's labels jump (from above a face's box to below it, say) from one frame to
the next, with the labels' memory of where they were (``draw_faces(..., spots)``, what
``process_video`` does) and without it (each frame placed afresh, as before session 43).

    python scripts/video_labels.py [--sfew ../shared/data/sfew_train] [--pairs 20] [--frames 90]

Clips: two SFEW film faces (shuffled with seed 0, in pairs) pasted at 120 px wide into a 640x480
frame of smooth random texture (``scripts/video_jitter.py``'s scene, sensor noise and JPEG), filmed
at 30 frames/s. The upper face moves up and down by 0.3 face widths at 0.5 Hz above the lower
one, so the gap between them opens and closes: the lower face's label fits above its box only
while the gap is open. The detector and tracker run once per frame (``Recognizer.predict``, real
YuNet; ``IoUTracker``); the labels are then placed on the same faces both ways.

Per clip: the share of a track's frame-to-frame steps in which its label moved to another spot
(``Label.spot``: above, below or inside the top of the box; from its left edge or centred), the
same as jumps per face and minute, and the share of labels that cover another face's box.
Totals over all clips.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from pyfer import Recognizer
from pyfer.video import IoUTracker, _overlap, face_labels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from video_jitter import FPS, SIZE, noisy_jpeg, patch, sfew_paths, texture  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WIDTH = 120  # px: each face's width in the frame


def pasted(canvas: np.ndarray, face: np.ndarray, x: int, y: int) -> None:
    """``face`` at ``WIDTH`` px with its surround, its top left corner at (x, y)."""
    p = patch(face, WIDTH)
    y0, x0 = y - WIDTH // 4, x - WIDTH // 4  # the surround's corner
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(canvas.shape[0], y0 + p.shape[0]), min(canvas.shape[1], x0 + p.shape[1])
    canvas[ys:ye, xs:xe] = p[ys - y0:ye - y0, xs - x0:xe - x0]


def clip_faces(rec: Recognizer, upper: np.ndarray, lower: np.ndarray, frames: int, seed: int):
    """Per frame: the tracked faces, [(id, Face)]."""
    rng = np.random.default_rng(seed)
    background = texture(rng)
    h_up = round(upper.shape[0] * WIDTH / upper.shape[1])
    h_low = round(lower.shape[0] * WIDTH / lower.shape[1])
    x = int((SIZE[0] - WIDTH) / 2 + rng.integers(-60, 61))
    y_low = SIZE[1] - h_low - 40
    tracker = IoUTracker()
    out = []
    for i in range(frames):
        gap = 0.35 * WIDTH + 0.3 * WIDTH * np.sin(2 * np.pi * 0.5 * i / FPS)  # px between the faces
        canvas = background.copy()
        pasted(canvas, upper, x, int(round(y_low - gap - h_up)))
        pasted(canvas, lower, x, y_low)
        out.append(tracker.update(rec.predict(noisy_jpeg(canvas, rng)), i / FPS))
    return out


def label_moves(tracked_frames, image_shape, memory: bool) -> tuple[int, int, int, int]:
    """(steps, moves, labels, labels over another face) over one clip."""
    spots: dict = {}
    last: dict = {}
    steps = moves = labels = covering = 0
    for tracked in tracked_frames:
        ids = [tid for tid, _ in tracked]
        faces = [f for _, f in tracked]
        kept = {tid: spots[tid] for tid in ids if tid in spots} if memory else {}
        placed = face_labels(faces, image_shape, ids, kept)
        spots = kept
        for tid, label in zip(ids, placed):
            if label is None:
                continue
            labels += 1
            if tid in last:
                steps += 1
                moves += last[tid] != label.spot
            covering += any(_overlap(label.rect, (x, y, x + w, y + h)) > 0
                            for other, (x, y, w, h) in zip(ids, (f.box for f in faces)) if other != tid)
        last = {tid: label.spot for tid, label in zip(ids, placed) if label is not None}
    return steps, moves, labels, covering


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sfew", type=Path, default=REPO.parent / "shared" / "data" / "sfew_train")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--frames", type=int, default=90)
    args = ap.parse_args(argv)
    paths = sfew_paths(args.sfew)[: 2 * args.pairs]
    rec = Recognizer(threads=1)
    totals = {True: np.zeros(4, int), False: np.zeros(4, int)}
    for k in tqdm(range(args.pairs), desc="clips"):
        upper, lower = cv2.imread(str(paths[2 * k])), cv2.imread(str(paths[2 * k + 1]))
        tracked = clip_faces(rec, upper, lower, args.frames, seed=k)
        for memory in (True, False):
            totals[memory] += label_moves(tracked, (SIZE[1], SIZE[0], 3), memory)
    print(f"\n{args.pairs} clips of two faces, {args.frames} frames each ({args.frames / FPS:.1f} s at {FPS:g} frames/s)\n")
    print("| labels | frame-to-frame steps | label moved | share | per face and minute | labels | over another face |")
    print("|---|---|---|---|---|---|---|")
    for memory in (False, True):
        steps, moves, labels, covering = totals[memory]
        name = "kept where they were (spots)" if memory else "placed afresh each frame"
        per_minute = moves / max(1, steps) * FPS * 60
        print(f"| {name} | {steps} | {moves} | {100 * moves / max(1, steps):.1f}% | {per_minute:.1f} | {labels} | "
              f"{covering} ({100 * covering / max(1, labels):.1f}%) |")


if __name__ == "__main__":
    main()
