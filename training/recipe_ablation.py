"""Ablation of the generalization recipe (issue 13): the full recipe, then the full recipe with
one ingredient taken out per row, and none of them. Each row is a short distillation fine-tune
of the session-1 student (``models/tsnet_student_session1.safetensors``) on a random subset of
FERPlus train (its class prior kept), reported on FERPlus valid and on SFEW train (second
domain, never trained on).

    python -m training.recipe_ablation --out runs/recipe_ablation [--train-limit 4000] [--epochs 2]
    python -m training.recipe_ablation --out runs/recipe_ablation --table-only

Rows that finished are skipped and a started one resumes. The table (markdown) is printed and
written to ``<out>/recipe_ablation.md``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pyfer.atomic import make_folders, write_file
from training import train as train_mod
from training.cli import reported_errors, run_tool

REPO = Path(__file__).resolve().parents[1]
FULL = {"--framing": "align", "--augment": "robust", "--mixup": "0.2", "--balance": "1.0", "--soft-labels": None}
OFF = {"--framing": "frame", "--augment": "basic", "--mixup": "0", "--balance": "0", "--soft-labels": False}
ROWS = {
    "full recipe": {},
    "- framing by facenorm (crops as given)": {"--framing": OFF["--framing"]},
    "- robust augmentation (basic)": {"--augment": OFF["--augment"]},
    "- mixup": {"--mixup": OFF["--mixup"]},
    "- logit adjustment": {"--balance": OFF["--balance"]},
    "- vote distributions (hard labels)": {"--soft-labels": False},
    "none of them": dict(OFF),
}


def flags_of(changes: dict) -> list[str]:
    out = []
    for k, v in {**FULL, **changes}.items():
        if v is False:
            continue
        out += [k] if v is None else [k, v]
    return out


def row_dir(out: Path, i: int) -> Path:
    return out / f"row{i}"


def read_row(run: Path) -> dict | None:
    log = run / "log.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()] if log.is_file() else []
    return rows[-1] if rows else None


def table(out: Path) -> str:
    lines = ["| recipe | FERPlus valid acc | valid macro recall | SFEW acc | SFEW macro recall | epochs |",
             "|---|---|---|---|---|---|"]
    for i, name in enumerate(ROWS):
        r = read_row(row_dir(out, i))
        if r is None:
            lines.append(f"| {name} | - | - | - | - | - |")
            continue
        lines.append(f"| {name} | {100 * r['val_accuracy']:.2f} | {100 * r['val_macro_recall']:.2f} | "
                     f"{100 * r.get('val2_accuracy', float('nan')):.2f} | "
                     f"{100 * r.get('val2_macro_recall', float('nan')):.2f} | {r['epoch']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--teacher", default=str(REPO / "models" / "teacher_effresnet18_fp16.safetensors"))
    ap.add_argument("--init", default=str(REPO / "models" / "tsnet_student_session1.safetensors"))
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--train-limit", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.table_only:
        for i, (name, changes) in enumerate(ROWS.items()):
            run = row_dir(out, i)
            done = read_row(run)
            if done and done["epoch"] >= args.epochs:
                continue
            flags = ["distill", "--teacher", args.teacher, "--init", args.init, "--out", str(run),
                     "--val2", args.val2, "--train-limit", str(args.train_limit), "--train-sample", "random", "--epochs", str(args.epochs),
                     "--schedule", "cosine", "--lr", "0.005", "--tta", "--teacher-cache",
                     "--threads", str(args.threads), "--quiet", *flags_of(changes)]
            if (run / "last.pt").is_file():
                flags.append("--resume")
            print(f"== {name}: {' '.join(flags_of(changes))}", flush=True)
            train_mod.main(flags, rerun_hint="this recipe_ablation command (it resumes each unfinished row)")
    md = table(out)
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        make_folders(out)
        write_file((out / "recipe_ablation.md"), md + "\n")
    print(md)


if __name__ == "__main__":
    run_tool(main)
