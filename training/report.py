"""Regenerate the numbers and figures of RESULTS.md from the committed models and run logs.

    python -m training.report [--data ferplus:../shared/data/ferplus] [--out results] [--runs results/runs]
    python -m training.report --limit 500 --out results/quick_report   # a quick look (114 s on Zen 4), not RESULTS.md's

Writes ``<out>/metrics.json`` (teacher, baseline student and T-SNet on FERPlus validation, with
and without flip averaging, plus the shipped student on SFEW), ``<out>/tables.md`` (Tables I, II
and IV), ``<out>/confusion_tsnet.png`` and ``<out>/curves.png``. The curves and Table I come from
the run logs under ``--runs`` (``<run>/log.jsonl``), the committed ones by default; where none of
their logs is there (session 1's were not kept), the figure and the table already in ``--out`` are
kept as they are, not replaced by empty ones.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyfer.atomic import save_figure, write_file
from pyfer.preprocess import EMOTIONS
from training.ablation import cell_dir, table as ablation_table
from training.checkpoint import read_log
from training.cli import reported_errors, run_tool
from pyfer.evaluate import plot_confusion
from training.evaluate import evaluate
from training.data import DEFAULT_DATA

REPO = Path(__file__).resolve().parents[1]
SHIPPED = "robust T-SNet (session 7, shipped)"
MODELS = {
    "teacher (EFF-ResNet18)": REPO / "models" / "teacher_effresnet18_fp16.safetensors",
    "student (ShuffleNetV2, no KD)": REPO / "models" / "student_baseline.safetensors",
    "T-SNet (distilled student, session 1)": REPO / "models" / "tsnet_student_session1.safetensors",
    SHIPPED: REPO / "pyfer" / "models" / "tsnet_student.safetensors",
}
# each curve's run folder in --runs: the first that has a log (the names of results/runs, then
# those docs/training.md's commands write: runs/student, runs/tsnet)
CURVES = {"teacher": ("teacher",), "student (hard labels)": ("student_hard", "student"),
          "student (vote shares)": ("student_soft",), "T-SNet (hard labels, shipped)": ("tsnet_hard", "tsnet"),
          "T-SNet (vote shares)": ("tsnet_soft",), "student, imagenet stem": ("student_soft_imagenetstem",)}
ABLATION_TS, ABLATION_ALPHAS = [4, 6, 8], [0.2, 0.4, 0.6]  # Table I's grid


def curve_log(runs: Path, folders: tuple[str, ...]) -> Path:
    """The log of a curve: in the first of ``folders`` that has one (else the first's, absent)."""
    logs = [runs / folder / "log.jsonl" for folder in folders]
    return next((log for log in logs if log.is_file()), logs[0])


def ablation_root(runs: Path) -> Path:
    """Where the (T, a) cells are: ``runs`` itself (results/runs), or ``runs/ablation`` where
    ``training.ablation --out runs/ablation`` (docs/training.md) put them."""
    cells = [(T, a) for T in ABLATION_TS for a in ABLATION_ALPHAS]
    nested = runs / "ablation"
    here = any(cell_dir(runs, T, a).is_dir() for T, a in cells)
    return nested if not here and any(cell_dir(nested, T, a).is_dir() for T, a in cells) else runs


def missing_logs(runs: Path) -> dict[str, list[Path]]:
    """The parts drawn from run logs ("curves.png", "Table I") none of whose logs in ``runs`` has an
    epoch, each with the logs it looked for."""
    grid = ablation_root(runs)
    parts = {"curves.png": [curve_log(runs, folders) for folders in CURVES.values()],
             "Table I": [cell_dir(grid, T, a) / "log.jsonl" for T in ABLATION_TS for a in ABLATION_ALPHAS]}
    return {part: logs for part, logs in parts.items() if not any(read_log(log) for log in logs)}


def validation_kind(runs: Path) -> str:
    """How the ablation's cells validated, for Table I's title: with flip averaging (``--tta``) or
    not, as each cell's config.json records it."""
    tta = set()
    grid = ablation_root(runs)
    for cfg in (cell_dir(grid, T, a) / "config.json" for T in ABLATION_TS for a in ABLATION_ALPHAS):
        try:
            tta.add(bool(json.loads(cfg.read_text()).get("tta")))
        except (OSError, ValueError, AttributeError):  # absent or damaged: that cell does not say
            pass
    kinds = {frozenset(): "%", frozenset({True}): "%, flip TTA", frozenset({False}): "%, no TTA"}  # (none recorded: "%")
    return kinds.get(frozenset(tta), "%, flip TTA in some cells")


def previous_table_i(tables: Path) -> str | None:
    """Table I's section of an earlier ``tables.md`` (to keep when its run logs are gone), or None."""
    text = tables.read_text() if tables.is_file() else ""
    if "## Table I:" not in text:
        return None
    return ("## Table I:" + text.split("## Table I:", 1)[1]).rstrip()


def score_models(data: str, sfew: str, limit: int | None = None) -> dict:
    """``training.evaluate``'s metrics of every model of MODELS on ``data`` (with and without flip
    averaging) and of the shipped student on the manifest ``sfew`` ("": not scored on SFEW), on at
    most ``limit`` faces of each set."""
    if sfew and not Path(sfew).is_file():  # not dropped unseen: its metrics are half of RESULTS.md's SFEW lines
        raise FileNotFoundError(f"no SFEW manifest at {sfew} (--sfew '' leaves SFEW out)")
    metrics = {}
    for name, path in MODELS.items():
        for tta in (False, True):
            key = f"{name}{' +flip' if tta else ''}"
            metrics[key] = evaluate(str(path), data, "valid", tta=tta, latency=not tta, limit=limit)
            print(f"{key}: accuracy {metrics[key]['accuracy']:.4f}", flush=True)
    if sfew:
        for tta in (False, True):
            metrics[f"T-SNet on SFEW train{' +flip' if tta else ''}"] = evaluate(str(MODELS[SHIPPED]), sfew, tta=tta,
                                                                                 latency=False, limit=limit)
    return metrics


def plot_curves(runs: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, folders in CURVES.items():
        rows = read_log(curve_log(runs, folders))
        if not rows:
            continue
        ep = [r["epoch"] for r in rows]
        ax1.plot(ep, [100 * r["val_accuracy"] for r in rows], label=name)
        ax2.plot(ep, [r["train_loss"] for r in rows], label=name)
    # the axis spans the curves (a fixed 60-90% cut off a from-scratch run's first epochs at 39.5%)
    ax1.set(xlabel="epoch", ylabel="FERPlus valid accuracy (%)")
    ax2.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--sfew", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"),
                    help="SFEW manifest the shipped student is also scored on ('': none)")
    ap.add_argument("--out", default=str(REPO / "results"))
    ap.add_argument("--runs", default=str(REPO / "results" / "runs"),
                    help="folder of run folders with log.jsonl (the curves and Table I)")
    ap.add_argument("--limit", type=int, metavar="N",
                    help="score on at most N faces of each set, evenly spread (a quick look; needs --out "
                         "elsewhere than results/, whose numbers are RESULTS.md's)")
    args = ap.parse_args(argv)
    out, runs = Path(args.out), Path(args.runs)
    if args.limit is not None:
        if args.limit < 1:
            ap.error(f"--limit must be >= 1, got {args.limit}")
        if out.resolve() == (REPO / "results").resolve():
            ap.error("--limit scores a sample: give --out elsewhere, results/ holds RESULTS.md's full numbers")
    # an empty figure or table would replace the drawn one: those already there are kept, and what
    # was looked for told (the committed results/runs lacks session 1's logs: a note, not a warning)
    missing = missing_logs(runs)
    if missing:
        parts = " and ".join(missing)
        looked = "; ".join(", ".join(str(log.relative_to(runs)) for log in logs) for logs in missing.values())
        there = [part for part in missing if (part == "curves.png" and (out / "curves.png").is_file())
                 or (part == "Table I" and previous_table_i(out / "tables.md"))]
        fate = " and ".join([f"{part} kept as in {out}" for part in there]
                            + [f"no {part} drawn" for part in missing if part not in there])
        print(f"note: none of the run logs of {parts} is in {runs}: {fate} (looked for {looked})", file=sys.stderr)
    kept_table_i = previous_table_i(out / "tables.md") if "Table I" in missing else None
    with reported_errors():
        out.mkdir(parents=True, exist_ok=True)
        metrics = score_models(args.data, args.sfew, args.limit)

    tsnet = metrics["T-SNet (distilled student, session 1) +flip"]
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        write_file((out / "metrics.json"), json.dumps(metrics, indent=1))
        plot_confusion(tsnet["confusion"], EMOTIONS, EMOTIONS, out / "confusion_tsnet.png",
                       f"T-SNet, FERPlus valid (flip TTA): accuracy {100 * tsnet['accuracy']:.2f}%")
        if "curves.png" not in missing:
            plot_curves(runs, out / "curves.png")

    first = metrics[next(iter(MODELS))]
    n_valid, n_total = first["n"], first.get("n_total", first["n"])
    sample = f"; a --limit sample of {n_total:,}, not RESULTS.md's numbers" if n_valid < n_total else ""
    lines = [f"## Table II: teacher, student and T-SNet on FERPlus valid ({n_valid:,} images{sample})", "",
             "Faces framed as each model was trained (`training.evaluate`'s default): `frame` is the data "
             "set's crops as given, `align` re-framed by `pyfer.facenorm` as `predict` frames them.", "",
             "| model | framing | params | MACs (64x64) | accuracy | +flip | macro precision | AUC | "
             "CPU latency (PyTorch, 1 thread) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in MODELS:
        m, f = metrics[name], metrics[f"{name} +flip"]
        auc = "-" if f["auc"] is None else f"{f['auc']:.4f}"  # None: two classes or fewer
        lines.append(f"| {name} | {m['framing']} | {m['params'] / 1e6:.2f}M | {m['macs'] / 1e6:.1f}M | "
                     f"{100 * m['accuracy']:.2f} | {100 * f['accuracy']:.2f} | {100 * f['macro_precision']:.2f} | "
                     f"{auc} | {m['cpu_latency_ms']:.2f} ms |")
    lines += ["", "## Table IV: per-class recall (%, flip TTA)", "",
              "| model | " + " | ".join(EMOTIONS) + " | macro |", "|---|" + "---|" * (len(EMOTIONS) + 1)]
    for name in MODELS:
        f = metrics[f"{name} +flip"]
        recall = f["per_class_recall"]  # None for a class the data lacks (SFEW, RAF-DB: contempt)
        cells = ["-" if recall[c] is None else f"{100 * recall[c]:.1f}" for c in EMOTIONS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * f['macro_recall']:.1f} |")
    if "Table I" not in missing:
        lines += ["", f"## Table I: (T, a) ablation, best FERPlus valid accuracy ({validation_kind(runs)})", "",
                  ablation_table(ablation_root(runs), ABLATION_TS, ABLATION_ALPHAS)]
    elif kept_table_i:
        lines += ["", kept_table_i]
    with reported_errors():
        write_file((out / "tables.md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    run_tool(main)
