"""Regenerate the numbers and figures of RESULTS.md from the committed models and run logs.

    python -m training.report [--data ferplus:../shared/data/ferplus] [--out results] [--runs results/runs]

Writes ``<out>/metrics.json`` (teacher, baseline student and T-SNet on FERPlus validation, with
and without flip averaging, plus the shipped student on SFEW), ``<out>/tables.md`` (Tables I, II
and IV), ``<out>/confusion_tsnet.png`` and ``<out>/curves.png``. The curves and Table I come from
the run logs under ``--runs`` (``<run>/log.jsonl``), the committed ones by default.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pyfer.preprocess import EMOTIONS
from training.ablation import cell_dir, table as ablation_table
from training.checkpoint import read_log
from training.evaluate import evaluate, plot_confusion
from training.data import DEFAULT_DATA

REPO = Path(__file__).resolve().parents[1]
SHIPPED = "robust T-SNet (session 7, shipped)"
MODELS = {
    "teacher (EFF-ResNet18)": REPO / "models" / "teacher_effresnet18_fp16.safetensors",
    "student (ShuffleNetV2, no KD)": REPO / "models" / "student_baseline.safetensors",
    "T-SNet (distilled student, session 1)": REPO / "models" / "tsnet_student_session1.safetensors",
    SHIPPED: REPO / "pyfer" / "models" / "tsnet_student.safetensors",
}
CURVES = {"teacher": "teacher", "student (hard labels)": "student_hard", "student (vote shares)": "student_soft",
          "T-SNet (hard labels, shipped)": "tsnet_hard", "T-SNet (vote shares)": "tsnet_soft",
          "student, imagenet stem": "student_soft_imagenetstem"}
ABLATION_TS, ABLATION_ALPHAS = [4, 6, 8], [0.2, 0.4, 0.6]  # Table I's grid


def run_logs(runs: Path) -> list[Path]:
    """The run logs the curves and Table I are drawn from."""
    folders = [runs / f for f in CURVES.values()]
    folders += [cell_dir(runs, T, a) for T in ABLATION_TS for a in ABLATION_ALPHAS]
    return [f / "log.jsonl" for f in folders]


def plot_curves(runs: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, folder in CURVES.items():
        rows = read_log(runs / folder / "log.jsonl")
        if not rows:
            continue
        ep = [r["epoch"] for r in rows]
        ax1.plot(ep, [100 * r["val_accuracy"] for r in rows], label=name)
        ax2.plot(ep, [r["train_loss"] for r in rows], label=name)
    ax1.set(xlabel="epoch", ylabel="FERPlus valid accuracy (%, flip TTA)", ylim=(60, 90))
    ax2.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--sfew", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--out", default=str(REPO / "results"))
    ap.add_argument("--runs", default=str(REPO / "results" / "runs"),
                    help="folder of run folders with log.jsonl (the curves and Table I)")
    args = ap.parse_args(argv)
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    if not any(log.is_file() for log in run_logs(runs)):
        print(f"warning: none of the run logs of the curves and Table I is in {runs} (such as "
              f"{run_logs(runs)[0].relative_to(runs)}): curves.png and Table I will be empty", file=sys.stderr)

    metrics = {}
    for name, path in MODELS.items():
        for tta in (False, True):
            key = f"{name}{' +flip' if tta else ''}"
            metrics[key] = evaluate(str(path), args.data, "valid", tta=tta, latency=not tta)
            print(f"{key}: accuracy {metrics[key]['accuracy']:.4f}", flush=True)
    shipped = str(MODELS[SHIPPED])
    if Path(args.sfew).is_file():
        for tta in (False, True):
            metrics[f"T-SNet on SFEW train{' +flip' if tta else ''}"] = evaluate(shipped, args.sfew, tta=tta,
                                                                                 latency=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))

    tsnet = metrics["T-SNet (distilled student, session 1) +flip"]
    plot_confusion(tsnet["confusion"], EMOTIONS, out / "confusion_tsnet.png",
                   f"T-SNet, FERPlus valid (flip TTA): accuracy {100 * tsnet['accuracy']:.2f}%")
    plot_curves(runs, out / "curves.png")

    lines = ["## Table II: teacher, student and T-SNet on FERPlus valid (3,191 images)", "",
             "| model | params | MACs (64x64) | accuracy | +flip | macro precision | AUC | CPU latency (PyTorch, 1 thread) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in MODELS:
        m, f = metrics[name], metrics[f"{name} +flip"]
        lines.append(f"| {name} | {m['params'] / 1e6:.2f}M | {m['macs'] / 1e6:.1f}M | {100 * m['accuracy']:.2f} | "
                     f"{100 * f['accuracy']:.2f} | {100 * f['macro_precision']:.2f} | {f['auc']:.4f} | "
                     f"{m['cpu_latency_ms']:.2f} ms |")
    lines += ["", "## Table IV: per-class recall (%, flip TTA)", "",
              "| model | " + " | ".join(EMOTIONS) + " | macro |", "|---|" + "---|" * (len(EMOTIONS) + 1)]
    for name in MODELS:
        f = metrics[f"{name} +flip"]
        recall = f["per_class_recall"]  # None for a class the data lacks (SFEW, RAF-DB: contempt)
        cells = ["-" if recall[c] is None else f"{100 * recall[c]:.1f}" for c in EMOTIONS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {100 * f['macro_recall']:.1f} |")
    lines += ["", "## Table I: (T, a) ablation, best FERPlus valid accuracy (%, flip TTA)", "",
              ablation_table(runs, ABLATION_TS, ABLATION_ALPHAS)]
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
