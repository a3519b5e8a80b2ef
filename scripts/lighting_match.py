"""Are film faces missed because of their lighting? (issue 13)

SFEW crops come from film frames: low key, hard light, strong contrast; FERPlus crops are webcam
and press photos. Training already varies brightness, gamma and contrast, so the model should not
care; this checks it at inference, by normalizing each framed crop's lighting before the model
sees it, on SFEW alone or on both sets, and prints the four issue-13 figures and the selection
rule's score at the given prior shifts:

- ``equalize``: global histogram equalization of each crop;
- ``clahe C/T``: contrast-limited adaptive equalization, clip limit C, TxT tiles (``--clahe``);
- ``match``: each crop's mean and standard deviation set to the FERPlus valid crops' averages.

    python scripts/lighting_match.py --weights pyfer/models/tsnet_student.safetensors --shifts 0 \\
        --clahe 1/4 2/4 2/8 4/4 --out results/lighting_match_student
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data import DEFAULT_DATA, clahe_crops  # noqa: E402
from training.prior_shift import transformed_crops_table  # noqa: E402


def equalize(images: np.ndarray) -> np.ndarray:
    import cv2

    return np.stack([cv2.equalizeHist(im) for im in images])


def match_moments(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Each crop's mean and standard deviation set to ``mean`` and ``std`` (a flat crop stays flat)."""
    x = images.astype(np.float32)
    m = x.mean(axis=(1, 2), keepdims=True)
    s = x.std(axis=(1, 2), keepdims=True)
    out = (x - m) / np.maximum(s, 1e-3) * np.where(s > 1e-3, std, 0.0) + mean
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--clahe", nargs="+", default=["2/4"], metavar="CLIP/TILES",
                    help="CLAHE settings to try, e.g. 1/4 2/8")
    ap.add_argument("--shifts", type=float, nargs="+", default=[0.0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from pyfer.facenorm import FaceFraming
    from training.framing import load_framed
    from training.predict import load_model

    # the FERPlus valid crops' average moments, framed at the model's own size
    _, _, prep = load_model(args.weights)
    ref = load_framed(args.data, prep, "valid", FaceFraming(mode="align")).images.astype(np.float32)
    mean, std = float(ref.mean(axis=(1, 2)).mean()), float(ref.std(axis=(1, 2)).mean())

    def match(images):
        return match_moments(images, mean, std)

    cases = [("as framed", "-", None)]
    variants = [("equalize", equalize), (f"match {mean:.0f} / {std:.0f}", match)]
    for setting in args.clahe:
        try:
            clip, tiles = float(setting.split("/")[0]), int(setting.split("/")[1])
        except (IndexError, ValueError):
            raise SystemExit(f"error: --clahe takes CLIP/TILES such as 2/4, got {setting!r}")
        variants.append((f"clahe {clip:g}/{tiles}", partial(clahe_crops, clip=clip, tiles=tiles)))
    for name, fn in variants:
        cases += [(name, which, fn) for which in ("SFEW", "both")]
    print(transformed_crops_table(args.weights, args.data, args.val2, cases, args.shifts, out=args.out))


if __name__ == "__main__":
    main()
