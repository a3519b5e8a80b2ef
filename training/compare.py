"""Is candidate B better than candidate A, or only luckier? A paired bootstrap over the faces.

The selection rule (``training.prior_shift``) ranks candidates by their worst ratio to issue 13's
four targets, and SFEW train has only 860 faces: one face is 0.12 points of accuracy, and the
binomial standard error of a 50% accuracy is 1.7 points. This resamples the faces of both sets
with replacement (the same draw for both models, so that what they share cancels), recomputes the
four figures and the rule's score for A and B, and reports each difference with its 95% interval
and how often B comes out ahead.

    python -m training.compare pyfer/models/tsnet_student.safetensors runs/px80/ep3.pt \\
        --shift-b 0.3 --out results/compare_px80_e3

A shift is the total post-hoc prior shift a model is scored at (an export's baked shift is taken
out first, as ``training.prior_shift`` does); without one, a model is scored as its weights answer
(the shipped student: at its baked 0.4). Before session 31 shifts were added to an export's own.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pyfer.atomic import make_folders, write_file
from training.cli import output_path, reported_errors, run_tool
from training.data import DEFAULT_DATA, ferplus_prior
from training.export import baked_shift
from training.prior_shift import REPO, TARGETS, at_total_shift, framed_logits, scores


def paired_bootstrap(logits_a: dict, logits_b: dict, labels: dict, resamples: int, seed: int = 0,
                     progress: bool = False) -> dict:
    """{figure: (A, B, B - A, low, high, P(B > A))} over ``resamples`` paired resamplings of each set's
    faces; figures are TARGETS' four and ``worst ratio to target``; low / high bound 95% of B - A."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    observed_a, observed_b = scores(logits_a, labels, 0.0), scores(logits_b, labels, 0.0)
    draws = {k: [] for k in observed_a}
    for _ in tqdm(range(resamples), desc="paired bootstrap", disable=not progress, mininterval=2.0):
        idx = {k: rng.integers(0, len(v), len(v)) for k, v in labels.items()}
        a, b = scores(logits_a, labels, 0.0, idx), scores(logits_b, labels, 0.0, idx)
        for k in draws:
            draws[k].append(b[k] - a[k])
    out = {}
    for k, d in draws.items():
        d = np.asarray(d)
        low, high = np.percentile(d, [2.5, 97.5])
        out[k] = (observed_a[k], observed_b[k], observed_b[k] - observed_a[k], float(low), float(high),
                  float((d > 0).mean()))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="candidate A: a checkpoint (.pt) or export (.safetensors)")
    ap.add_argument("b", help="candidate B")
    ap.add_argument("--shift-a", type=float, help="A's total prior shift (default: as A's weights answer)")
    ap.add_argument("--shift-b", type=float, help="B's total prior shift (default: as B's weights answer)")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write OUT.md and OUT.json")
    args = ap.parse_args(argv)
    if args.resamples < 100:
        raise SystemExit("--resamples must be >= 100 for a 95% interval")
    with reported_errors():
        for path in (args.a, args.b):
            if not Path(path).is_file():
                raise FileNotFoundError(f"no such model file: {path}")
        if args.out:  # before the work, not after it
            make_folders(Path(args.out).parent)
        log_prior = np.log(ferplus_prior(args.data.partition(":")[2]))
        logits_a, labels = framed_logits(args.a, args.data, args.val2)
        logits_b, labels_b = framed_logits(args.b, args.data, args.val2)
    if any(not np.array_equal(labels[k], labels_b[k]) for k in labels):
        raise SystemExit("the two candidates were scored on different faces")
    logits_a = at_total_shift(logits_a, args.a, args.shift_a, log_prior)
    logits_b = at_total_shift(logits_b, args.b, args.shift_b, log_prior)
    result = paired_bootstrap(logits_a, logits_b, labels, args.resamples, args.seed, progress=True)

    def at(shift, weights):
        return f"shift {shift:g}" if shift is not None else f"as its weights answer, shift {baked_shift(weights):g}"

    md = [f"A = `{args.a}` ({at(args.shift_a, args.a)}), B = `{args.b}` ({at(args.shift_b, args.b)}); "
          f"{args.resamples} paired resamplings of the faces",
          "", "| figure | A | B | B - A | 95% interval of B - A | P(B > A) |", "|---|---|---|---|---|---|"]
    for k, (a, b, diff, low, high, p) in result.items():
        scale, unit = (100, " pts") if k in TARGETS else (1, "")
        fmt = ".2f" if k in TARGETS else ".3f"
        md.append(f"| {k} | {scale * a:{fmt}} | {scale * b:{fmt}} | {scale * diff:+{fmt}}{unit} | "
                  f"{scale * low:+{fmt}} to {scale * high:+{fmt}} | {p:.2f} |")
    text = "\n".join(md)
    print(text)
    if args.out:
        with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
            write_file(output_path(args.out, ".md"), text + "\n")
            write_file(output_path(args.out, ".json"), json.dumps(
                {"a": args.a, "b": args.b, "shift_a": args.shift_a, "shift_b": args.shift_b,
                 "resamples": args.resamples, "seed": args.seed,
                 "figures": {k: dict(zip(("a", "b", "diff", "low", "high", "p_b_better"), v)) for k, v in result.items()}},
                indent=1))


if __name__ == "__main__":
    run_tool(main)
