"""The measurement behind pyfer.video's scene-cut rule (SCENE_CUT_CHANGE, SCENE_CUT_SHARE,
SCENE_CUT_UNEVEN_SHARE): how much of two frames' thumbnails changes across a cut, and how much
within one shot.

    python scripts/scene_cut_threshold.py [--sfew ../shared/data/sfew_train] [--pairs 299]

Cuts: consecutive pairs of different SFEW film frames (shuffled with seed 0, each resized to
640x480). One shot: each of those frames moved 3% or 5% sideways, zoomed 5%, or moved 2%, zoomed
3% and brightened 10% (more than a face video moves between two frames); and each with a hand
in front (a flat block over 10%, 25% or 40% of the frame, at a random place, of the covered part's
mean colour, of a light or of a dark skin tone); and each made lighter or darker (a light switched
on, an exposure step: gains 0.8-1.3, offsets of 17-40 gray levels). Prints percentiles of the
share of thumbnail cells that change by more than SCENE_CUT_CHANGE gray levels, and what share of
each kind pyfer.video calls a cut, beside the rule it replaced (a mean difference above 18).
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import cv2
import numpy as np

from pyfer.video import SCENE_CUT_CHANGE, SCENE_CUT_SHARE, SCENE_CUT_UNEVEN_SHARE, is_scene_cut, scene_thumbnail

REPO = Path(__file__).resolve().parents[1]
# (sideways shift as a share of the width, zoom, brightness gain)
WITHIN_A_SHOT = ((0.03, 1.0, 1.0), (0.0, 1.05, 1.0), (0.02, 1.03, 1.1), (0.05, 1.0, 1.0))
HAND_AREAS = (0.10, 0.25, 0.40)
HAND_COLOURS = {"mean": None, "light": (120, 150, 200), "dark": (60, 80, 110)}  # BGR
LIGHTING_GAINS = (0.8, 0.85, 1.15, 1.2, 1.3)
LIGHTING_STEPS = (-25, -17, 17, 25, 40)
OLD_MEAN_DIFFERENCE = 18.0


def moved(img: np.ndarray, shift: float, zoom: float, gain: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = np.float32([[zoom, 0, shift * w + (1 - zoom) * w / 2], [0, zoom, (1 - zoom) * h / 2]])
    warped = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    return np.clip(warped * gain, 0, 255).astype(np.uint8)


def with_hand(img: np.ndarray, area: float, colour, rng: np.random.Generator) -> np.ndarray:
    """``img`` with a flat block over ``area`` of it (a bit taller than wide) at a random place."""
    out = img.copy()
    h, w = out.shape[:2]
    bw, bh = int(w * np.sqrt(area) * 0.9), int(h * np.sqrt(area) / 0.9)
    x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    fill = out[y0:y0 + bh, x0:x0 + bw].reshape(-1, 3).mean(0) if colour is None else colour
    cv2.rectangle(out, (x0, y0), (x0 + bw, y0 + bh), tuple(float(c) for c in fill), -1)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sfew", default=str(REPO.parent / "shared" / "data" / "sfew_train"))
    ap.add_argument("--pairs", type=int, default=299, help="cuts measured (frames read: one more)")
    args = ap.parse_args(argv)
    if args.pairs < 1:
        ap.error("--pairs must be at least 1")
    root = Path(args.sfew)
    if not (root / "manifest.csv").is_file():
        ap.error(f"no SFEW manifest at {root / 'manifest.csv'} (--sfew)")
    with open(root / "manifest.csv", newline="") as fh:
        paths = [root / row["path"] for row in csv.DictReader(fh)]
    random.Random(0).shuffle(paths)
    frames = [cv2.resize(cv2.imread(str(p)), (640, 480)) for p in paths[:args.pairs + 1]]
    thumbs = [scene_thumbnail(f) for f in frames]
    rng = np.random.default_rng(0)
    kinds = {"cuts": list(zip(thumbs, thumbs[1:])),
             "moved within a shot": [(t, scene_thumbnail(moved(f, *m))) for f, t in zip(frames, thumbs)
                                     for m in WITHIN_A_SHOT]}
    for area in HAND_AREAS:
        for name, colour in HAND_COLOURS.items():
            kinds[f"hand over {area:.0%}, {name}"] = [(t, scene_thumbnail(with_hand(f, area, colour, rng)))
                                                      for f, t in zip(frames, thumbs)]
    for gain in LIGHTING_GAINS:
        kinds[f"lighting x{gain:g}"] = [(t, scene_thumbnail(np.clip(f * gain, 0, 255).astype(np.uint8)))
                                        for f, t in zip(frames, thumbs)]
    for step in LIGHTING_STEPS:
        kinds[f"lighting {step:+d} gray levels"] = [
            (t, scene_thumbnail(np.clip(f.astype(np.int16) + step, 0, 255).astype(np.uint8)))
            for f, t in zip(frames, thumbs)]
    pct = (1, 5, 50, 95, 99)
    print(f"share of 16x16 gray thumbnail cells changed by more than {SCENE_CUT_CHANGE:g} gray levels; a cut above "
          f"{SCENE_CUT_SHARE:g}, with above {SCENE_CUT_UNEVEN_SHARE:g} changed that much beyond the median change\n")
    print(f"| pairs | n | share changed: percentiles {pct} | called a cut | by the old rule (mean above "
          f"{OLD_MEAN_DIFFERENCE:g}) |")
    print("|---|---|---|---|---|")
    for name, pairs in kinds.items():
        shares = [float(np.mean(np.abs(b - a) > SCENE_CUT_CHANGE)) for a, b in pairs]
        cut = np.mean([is_scene_cut(a, b) for a, b in pairs])
        old = np.mean([float(np.abs(b - a).mean()) > OLD_MEAN_DIFFERENCE for a, b in pairs])
        print(f"| {name} | {len(pairs)} | {' '.join(f'{v:.2f}' for v in np.percentile(shares, pct))} | "
              f"{cut:.2%} | {old:.2%} |")


if __name__ == "__main__":
    main()
