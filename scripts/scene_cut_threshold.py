"""The measurement behind pyfer.video.SCENE_CUT_DIFFERENCE: how far apart two frames' thumbnails
are across a cut, and how far within one shot.

    python scripts/scene_cut_threshold.py [--sfew ../shared/data/sfew_train] [--pairs 299]

Cuts: consecutive pairs of different SFEW film frames (shuffled with seed 0, each resized to
640x480). One shot: each of those frames moved 3% or 5% sideways, zoomed 5%, or moved 2%, zoomed
3% and brightened 10% (more than a face video moves between two frames). Prints percentiles of the
mean absolute thumbnail difference (gray levels) for both, and how many of each the threshold in
pyfer.video would call a cut.
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import cv2
import numpy as np

from pyfer.video import SCENE_CUT_DIFFERENCE, is_scene_cut, scene_thumbnail

REPO = Path(__file__).resolve().parents[1]
# (sideways shift as a share of the width, zoom, brightness gain)
WITHIN_A_SHOT = ((0.03, 1.0, 1.0), (0.0, 1.05, 1.0), (0.02, 1.03, 1.1), (0.05, 1.0, 1.0))


def moved(img: np.ndarray, shift: float, zoom: float, gain: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = np.float32([[zoom, 0, shift * w + (1 - zoom) * w / 2], [0, zoom, (1 - zoom) * h / 2]])
    warped = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    return np.clip(warped * gain, 0, 255).astype(np.uint8)


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(scene_thumbnail(a) - scene_thumbnail(b)).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sfew", default=str(REPO.parent / "shared" / "data" / "sfew_train"))
    ap.add_argument("--pairs", type=int, default=299, help="cuts measured (frames read: one more)")
    args = ap.parse_args()
    root = Path(args.sfew)
    paths = [root / row["path"] for row in csv.DictReader(open(root / "manifest.csv", newline=""))]
    random.Random(0).shuffle(paths)
    frames = [cv2.resize(cv2.imread(str(p)), (640, 480)) for p in paths[:args.pairs + 1]]
    cuts = [difference(a, b) for a, b in zip(frames, frames[1:])]
    shots = [difference(f, moved(f, *m)) for f in frames for m in WITHIN_A_SHOT]
    pct = (1, 5, 50, 95, 99)
    print(f"mean absolute difference of 16x16 gray thumbnails; percentiles {pct}")
    for name, values in (("cuts", cuts), ("within a shot", shots)):
        print(f"{name:14s} n={len(values):4d}  " + "  ".join(f"{v:6.2f}" for v in np.percentile(values, pct)))
    print(f"threshold {SCENE_CUT_DIFFERENCE}: {np.mean([v > SCENE_CUT_DIFFERENCE for v in cuts]):.1%} of cuts "
          f"found, {np.mean([v > SCENE_CUT_DIFFERENCE for v in shots]):.2%} of moved frames called a cut")
    # the function pyfer.video uses agrees with the numbers above
    assert is_scene_cut(scene_thumbnail(frames[0]), scene_thumbnail(frames[1])) == (cuts[0] > SCENE_CUT_DIFFERENCE)


if __name__ == "__main__":
    main()
