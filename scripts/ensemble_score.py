"""Score averages of several models by issue 13's selection rule: is an ensemble of teachers a
higher ceiling to distil from than the best teacher alone?

Each model's flip-averaged log-probabilities on FERPlus valid and SFEW train (faces framed as at
inference) are averaged over every combination of the models given, and each average is scored at
the prior shift (over ``--shifts``, negative ones included: an export may have a shift baked in)
where the rule's worst ratio to target is largest.

    python scripts/ensemble_score.py --weights models/teacher_s11_fp16.safetensors \\
        models/teacher_effresnet18_fp16.safetensors pyfer/models/tsnet_student.safetensors \\
        --out results/ensemble_teachers
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyfer.atomic import write_file  # noqa: E402
from training.cli import output_path  # noqa: E402
from training.data import DEFAULT_DATA, ferplus_prior  # noqa: E402
from training.prior_shift import TARGETS, best_shift, format_cells, framed_logits  # noqa: E402


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Per row (one face's logits)."""
    from scipy.special import log_softmax as rowwise

    return rowwise(z, axis=1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--shifts", type=float, nargs="+", default=list(np.round(np.arange(-1.5, 1.01, 0.05), 2)))
    ap.add_argument("--out", default=str(REPO / "results" / "ensemble"))
    args = ap.parse_args(argv)
    if len(args.weights) < 2:
        raise SystemExit("--weights needs at least two models to average")
    for w in args.weights:
        if not Path(w).is_file():
            raise SystemExit(f"no such model: {w}")

    logp, labels = {}, None
    for w in args.weights:
        logits, labels = framed_logits(w, args.data, args.val2)
        logp[w] = {k: log_softmax(v) for k, v in logits.items()}
    log_prior = np.log(ferplus_prior(args.data.partition(":")[2]))
    cols = list(TARGETS) + ["worst ratio to target"]
    md = ["| models averaged | shift | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for n in range(1, len(args.weights) + 1):
        for combo in itertools.combinations(args.weights, n):
            mean = {k: np.mean([logp[w][k] for w in combo], 0) for k in labels}
            shift, row = best_shift(mean, labels, log_prior, args.shifts)
            names = " + ".join(f"`{Path(w).name}`" for w in combo)
            md.append(f"| {names} | {shift:+.2f} | " + " | ".join(format_cells(row)) + " |")
    text = "\n".join(md)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_file(output_path(args.out, ".md"), text + "\n")
    print(text)


if __name__ == "__main__":
    main()
