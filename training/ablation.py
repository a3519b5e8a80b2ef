"""The (T, a) ablation of the paper's Table I.

    python -m training.ablation --teacher models/teacher_effresnet18_fp16.safetensors \
        --out runs/ablation --epochs 15 [--Ts 4 6 8] [--alphas 0.2 0.4 0.6] [-- extra train flags]
    python -m training.ablation --table-only --out results/runs      # table from existing logs

Each cell is an ordinary distillation run in ``<out>/ablation_T{T}_a{a}``; an interrupted grid
picks up where it stopped (finished cells are skipped, a started one resumes). The table
(markdown, best validation accuracy per cell) is printed and written to ``<out>/ablation.md``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pyfer.atomic import make_folders, write_file
from training import train as train_mod
from training.checkpoint import read_log
from training.cli import reported_errors, run_tool


def cell_dir(out: Path, T: float, a: float) -> Path:
    return out / f"ablation_T{T:g}_a{a:g}"


def read_cell(run: Path) -> dict | None:
    rows = read_log(run / "log.jsonl")
    if not rows:
        return None
    best = max(rows, key=lambda r: r["val_accuracy"])
    return {"best": best["val_accuracy"], "best_epoch": best["epoch"], "epochs": rows[-1]["epoch"]}


def table(out: Path, Ts, alphas) -> str:
    lines = ["| T \\ a | " + " | ".join(f"{a:g}" for a in alphas) + " |",
             "|---|" + "---|" * len(alphas)]
    for T in Ts:
        cells = []
        for a in alphas:
            c = read_cell(cell_dir(out, T, a))
            cells.append("-" if c is None else f"{100 * c['best']:.2f} (ep {c['best_epoch']}/{c['epochs']})")
        lines.append(f"| {T:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="teacher checkpoint or export")
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--Ts", type=float, nargs="+", default=[4, 6, 8])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.4, 0.6])
    ap.add_argument("--table-only", action="store_true", help="only build the table from existing logs")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="flags passed to training.train (after --)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.table_only:
        if not args.teacher:
            raise SystemExit("--teacher is required unless --table-only")
        extra = [x for x in args.extra if x != "--"]
        for T in args.Ts:
            for a in args.alphas:
                run = cell_dir(out, T, a)
                done = read_cell(run)
                if done and done["epochs"] >= args.epochs:
                    continue
                flags = ["distill", "--teacher", args.teacher, "--out", str(run), "--T", str(T),
                         "--alpha", str(a), "--epochs", str(args.epochs), *extra]
                if (run / "last.pt").is_file():
                    flags.append("--resume")
                print(f"== T={T:g} a={a:g}", flush=True)
                train_mod.main(flags, rerun_hint="this ablation command (it resumes each unfinished cell)")
    md = table(out, args.Ts, args.alphas)
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        make_folders(out)
        write_file((out / "ablation.md"), md + "\n")
    print(md)


if __name__ == "__main__":
    run_tool(main)
