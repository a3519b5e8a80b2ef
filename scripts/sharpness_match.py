"""Are film faces missed because they are sharper than the training faces? (issue 13)

FERPlus faces are 48 px, so every training crop is an enlargement; SFEW faces are larger and their
crops are reductions, sharper at the same input size. This blurs the framed crops the way a 48 px
source would (down to R px with area averaging, back up bilinearly) on SFEW alone or on both sets,
and prints the four issue-13 figures and the selection rule's score at the given prior shifts.

    python scripts/sharpness_match.py --weights pyfer/models/tsnet_student.safetensors --shifts 0 \\
        --out results/sharpness_match_student
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data import DEFAULT_DATA  # noqa: E402
from training.prior_shift import transformed_crops_table  # noqa: E402


def soften(images: np.ndarray, via: int) -> np.ndarray:
    """(N, S, S) uint8 crops -> the same size after a round trip through ``via`` px."""
    import cv2

    size = images.shape[-1]
    return np.stack([cv2.resize(cv2.resize(im, (via, via), interpolation=cv2.INTER_AREA), (size, size),
                                interpolation=cv2.INTER_LINEAR) for im in images])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--via", type=int, nargs="+", default=[48, 40, 32], help="round-trip sizes (px)")
    ap.add_argument("--shifts", type=float, nargs="+", default=[0.0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    cases = [("as framed", "-", None)]
    for via in args.via:
        cases += [(f"via {via} px", which, partial(soften, via=via)) for which in ("SFEW", "both")]
    print(transformed_crops_table(args.weights, args.data, args.val2, cases, args.shifts, out=args.out))


if __name__ == "__main__":
    main()
