"""Choose the post-hoc logit adjustment of a model trained with the logit-adjusted loss.

A model trained with ``--balance 1`` predicts the class-balanced posterior: good macro recall,
lower accuracy on data as imbalanced as FERPlus. Adding ``shift * log(prior)`` to its logits
moves it back toward the training prior. This sweeps ``shift`` on FERPlus valid and SFEW train
(faces framed as at inference, flip averaging) and picks the one that comes closest to all four
targets of issue 13 at once: the largest min(metric / target).

    python -m training.prior_shift --weights runs/robust_tsnet/best.pt --out results/prior_shift_robust_tsnet

Writes ``<out>.md`` (the table), ``<out>.json`` (what ``training.leaderboard`` reads) and ``<out>.png``
(the four metrics against the shift).

Every shift of the sweep is the total the scores carry: an export with a shift baked in
(``training.export --prior-shift``) has it taken out first, so it scores as its checkpoint does at
the same shift; ``--per-class-check``'s biases are tuned on those raw logits too.

``--per-class-check K`` also tries one bias per class instead of one shift (chosen by the same rule,
``tune_class_biases``) and asks whether it carries to faces it was not tuned on: K random halvings
of both sets, tuned on one half, scored on the other, beside no bias on that half.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pyfer.atomic import make_folders, save_figure, write_file
from pyfer.facenorm import FaceFraming
from training.cli import output_path, reported_errors, run_tool
from training.data import DEFAULT_DATA, ferplus_prior
from training.export import baked_prior_shift, baked_shift, total_shift_offset
from training.framing import load_framed
from training.predict import load_model, predict_logits

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"FERPlus valid accuracy": 0.87, "FERPlus valid macro recall": 0.72,
           "SFEW accuracy": 0.52, "SFEW macro recall": 0.42}


def metrics(labels: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, recall_score

    pred = logits.argmax(1)
    present = np.unique(labels)
    return (float(accuracy_score(labels, pred)),
            float(recall_score(labels, pred, labels=present, average="macro", zero_division=0)))


def per_class_recall_table(logits: dict, labels: dict, bias) -> tuple[str, dict]:
    """Recall of every class on each set for ``logits + bias``, as a markdown table (classes a set
    lacks: "-") and as {set: {class: recall or None}}."""
    from sklearn.metrics import recall_score

    from pyfer.preprocess import EMOTIONS

    recall = {}
    for k in logits:
        pred = (logits[k] + bias).argmax(1)
        r = recall_score(labels[k], pred, labels=range(len(EMOTIONS)), average=None, zero_division=0)
        present = np.bincount(labels[k], minlength=len(EMOTIONS)) > 0
        recall[k] = {e: (float(r[c]) if present[c] else None) for c, e in enumerate(EMOTIONS)}
    lines = ["| set | " + " | ".join(EMOTIONS) + " |", "|---|" + "---|" * len(EMOTIONS)]
    for k, row in recall.items():
        lines.append(f"| {k} | " + " | ".join("-" if v is None else f"{100 * v:.1f}" for v in row.values()) + " |")
    return "\n".join(lines), recall


def scores(logits: dict, labels: dict, bias, idx: dict | None = None) -> dict:
    """The four metrics of TARGETS for ``logits + bias`` (on the rows ``idx`` of each set, else all)
    and the rule's score, their worst ratio to target. ``bias``: one for every set, or {set: bias}."""
    r = {}
    for k in logits:
        rows = slice(None) if idx is None else idx[k]
        set_bias = bias[k] if isinstance(bias, dict) else bias
        r[f"{k} accuracy"], r[f"{k} macro recall"] = metrics(labels[k][rows], logits[k][rows] + set_bias)
    r["worst ratio to target"] = min(r[k] / t for k, t in TARGETS.items())
    return r


def worst_ratio(logits: dict, labels: dict, bias, idx: dict | None = None) -> float:
    return scores(logits, labels, bias, idx)["worst ratio to target"]


def best_shift(logits: dict, labels: dict, log_prior: np.ndarray, shifts) -> tuple[float, dict]:
    """The shift among ``shifts`` whose ``scores`` are best by the rule, and those scores."""
    return max(((float(s), scores(logits, labels, s * log_prior)) for s in shifts),
               key=lambda r: r[1]["worst ratio to target"])


def format_cells(row: dict) -> list[str]:
    """A row of ``scores`` as table cells: TARGETS' figures in %, then the worst ratio."""
    return [f"{100 * row[c]:.2f}" for c in TARGETS] + [f"{row['worst ratio to target']:.3f}"]


def framed_logits(weights: str, data: str, val2: str, framing: str | FaceFraming = "align") -> tuple[dict, dict]:
    """A model's flip-averaged logits and the labels on FERPlus valid and SFEW (the two sets of
    TARGETS), each face framed by ``normalize_face`` as at inference (or by ``framing``)."""
    model, _, prep = load_model(weights)
    fr = framing if isinstance(framing, FaceFraming) else FaceFraming(mode=framing)
    sets = {"FERPlus valid": load_framed(data, prep, "valid", fr), "SFEW": load_framed(val2, prep, "valid", fr)}
    logits = {k: predict_logits(model, torch.from_numpy(s.images).unsqueeze(1), prep, tta=True,
                                progress=f"{Path(weights).name} on {k}").numpy()
              for k, s in sets.items()}
    return logits, {k: s.labels for k, s in sets.items()}


def raw_logits(logits: dict, weights: str) -> dict:
    """``framed_logits`` without the prior shift baked into an export, so that a shift added to
    them is the total shift of the scores (a checkpoint's logits are raw already)."""
    baked = baked_prior_shift(weights)
    return logits if baked is None else {k: v - baked for k, v in logits.items()}


def at_total_shift(logits: dict, weights: str, shift: float | None, log_prior: np.ndarray) -> dict:
    """``framed_logits`` moved to a total prior shift ``shift`` (None: as the weights give them)."""
    if shift is None:
        return logits
    offset = total_shift_offset(weights, shift, log_prior)
    return {k: v + offset for k, v in logits.items()}


def transformed_crops_table(weights: str, data: str, val2: str, cases, shifts, out: str | None = None) -> str:
    """Score a model on crops changed before it sees them, as a markdown table.

    ``cases``: (name, which, fn) with ``fn`` mapping (N, S, S) uint8 crops to the same, applied to
    the SFEW crops (``which="SFEW"``), to both sets (``"both"``) or to none (``"-"``); every case is
    scored at each prior shift in ``shifts`` added to the logits as the weights give them (unlike
    ``main``'s totals: an export keeps its baked shift, and 0 scores it as shipped), flip
    averaging, faces framed as at inference.
    Also written to ``<out>.md`` when ``out`` is given."""
    model, _, prep = load_model(weights)
    framing = FaceFraming(mode="align")
    sets = {"FERPlus valid": load_framed(data, prep, "valid", framing),
            "SFEW": load_framed(val2, prep, "valid", framing)}
    labels = {k: s.labels for k, s in sets.items()}
    log_prior = np.log(ferplus_prior(data.partition(":")[2]))
    cols = list(TARGETS) + ["worst ratio to target"]
    md = ["| crops | changed | shift | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    for name, which, fn in cases:
        logits = {}
        for k, s in sets.items():
            images = fn(s.images) if which == "both" or which == k else s.images
            logits[k] = predict_logits(model, torch.from_numpy(images).unsqueeze(1), prep, tta=True).numpy()
        for shift in shifts:
            r = scores(logits, labels, shift * log_prior)
            md.append(f"| {name} | {which} | {shift:g} | " + " | ".join(format_cells(r)) + " |")
    text = f"`{weights}` at {prep.input_size} px\n\n" + "\n".join(md)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_file(output_path(out, ".md"), text + "\n")
    return text


def tune_class_biases(logits: dict, labels: dict, idx: dict, sweeps: int = 4,
                      grid=np.linspace(-1.5, 1.5, 31)) -> tuple[np.ndarray, float]:
    """One additive bias per class, by coordinate search over ``grid`` for the rule's score."""
    bias = np.zeros(next(iter(logits.values())).shape[1])
    best = worst_ratio(logits, labels, bias, idx)
    for _ in range(sweeps):
        for c in range(len(bias)):
            for v in grid:
                trial = bias.copy()
                trial[c] = v
                score = worst_ratio(logits, labels, trial, idx)
                if score > best + 1e-9:
                    best, bias = score, trial
    return bias, best


def per_class_check(logits: dict, labels: dict, halvings: int) -> str:
    lines = ["| halving | tuned half (per-class biases) | other half (same biases) | other half (no bias) |",
             "|---|---|---|---|"]
    for seed in range(halvings):
        perm = {k: np.random.default_rng(seed).permutation(len(v)) for k, v in labels.items()}
        tune = {k: v[: len(v) // 2] for k, v in perm.items()}
        held = {k: v[len(v) // 2:] for k, v in perm.items()}
        bias, tuned = tune_class_biases(logits, labels, tune)
        zero = np.zeros_like(bias)
        lines.append(f"| {seed} | {tuned:.3f} | {worst_ratio(logits, labels, bias, held):.3f} | "
                     f"{worst_ratio(logits, labels, zero, held):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--framing", default="align", choices=("align", "box"))
    ap.add_argument("--shifts", type=float, nargs="+", default=[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0])
    ap.add_argument("--out", required=True,
                    help="writes OUT.md, OUT.json and OUT.png; training.leaderboard reads results/prior_shift_NAME")
    ap.add_argument("--per-class-check", type=int, default=0, metavar="K",
                    help="also check per-class biases on K random halvings (tuned on one half, scored on the other)")
    args = ap.parse_args(argv)

    out = Path(args.out)
    with reported_errors():
        make_folders(out.parent)  # before the work, not after it
        logits, labels = framed_logits(args.weights, args.data, args.val2, args.framing)
        logits = raw_logits(logits, args.weights)
        baked = baked_shift(args.weights)
        log_prior = np.log(ferplus_prior(args.data.partition(":")[2]))
    rows = [{"shift": shift, **scores(logits, labels, shift * log_prior)} for shift in args.shifts]
    best = max(rows, key=lambda r: r["worst ratio to target"])

    cols = list(TARGETS) + ["worst ratio to target"]
    md = ["| shift | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in rows:
        cells = format_cells(r)
        mark = " **(chosen)**" if r is best else ""
        md.append(f"| {r['shift']:g}{mark} | " + " | ".join(cells) + " |")
    md.append("| target | " + " | ".join(f"{100 * t:.0f}" for t in TARGETS.values()) + " | 1.000 |")
    recall_md, recall = per_class_recall_table(logits, labels, best["shift"] * log_prior)
    text = "\n".join(md) + f"\n\nRecall per class (%) at the chosen shift, {best['shift']:g}:\n\n" + recall_md
    result = {"weights": args.weights, "rows": rows, "chosen": best["shift"], "chosen_recall": recall}
    if baked:
        text = (f"`{args.weights}` has a prior shift of {baked:g} baked in, taken out first: each shift is the "
                f"total ({baked:g} scores the export as it is).\n\n" + text)
        result["baked_shift"] = baked
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        write_file(output_path(out, ".md"), text + "\n")
        write_file(output_path(out, ".json"), json.dumps(result, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r["shift"] for r in rows]
    for (k, t), c in zip(TARGETS.items(), ("C0", "C1", "C2", "C3")):
        ax.plot(xs, [100 * r[k] for r in rows], "o-", color=c, label=k)
        ax.axhline(100 * t, color=c, ls=":", lw=1)
    ax.axvline(best["shift"], color="k", lw=0.8)
    ax.set_xlabel("shift (x log prior added to the raw logits)")
    ax.set_ylabel("%")
    # the run folder too: every run's checkpoint is best.pt, and plots of several runs looked alike
    named = Path(args.weights)
    ax.set_title(f"{named.parent.name}/{named.name}: dotted = issue 13 targets, line = chosen")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with reported_errors():
        save_figure(fig, output_path(out, ".png"), dpi=110)
    print(text)
    print(f"chosen shift: {best['shift']:g}")
    if args.per_class_check:
        check = per_class_check(logits, labels, args.per_class_check)
        with reported_errors():
            write_file(output_path(out, "_per_class.md"), check + "\n")
        print(check)


if __name__ == "__main__":
    run_tool(main)
