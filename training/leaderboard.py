"""Every candidate scored by the selection rule, ranked, with a picture of the spread (issue 13).

``training.prior_shift`` writes one ``results/prior_shift_NAME.json`` per scored checkpoint. This
reads them all, takes each candidate at its best prior shift (the rule: the largest worst ratio to
the four targets), and writes

- ``OUT.md``: the candidates ranked, and for the students the spread of the rule's score (min,
  quartiles, max), so that a new candidate can be read against how far checkpoints scatter;
- ``OUT.png``: FERPlus valid against SFEW train, accuracy and macro recall, one point a candidate,
  teachers apart, the shipped student marked, the targets drawn.

Teachers are the candidates whose checkpoint path names a teacher; they are listed but left out of
the students' spread.

``--run NAME`` also draws one run's course, ``OUT_NAME.png``: the rule's score of each scored epoch
(``prior_shift_NAME_eN.json``) beside the shipped student's, and the raw-logit metrics of every
epoch from the run's ``log.jsonl`` (``--logs``, default ``results/runs``; ``runs/`` is tried too).

    python -m training.leaderboard --out results/leaderboard [--run patient32]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from pyfer.atomic import make_folders, save_figure, write_file
from training.checkpoint import read_log
from training.cli import output_path, reported_errors, run_tool
from training.prior_shift import REPO, TARGETS

RULE = "worst ratio to target"
FIGURES = tuple(TARGETS)  # FERPlus acc, FERPlus macro recall, SFEW acc, SFEW macro recall
SHIPPED = "consistent_t4_last"  # results/prior_shift_consistent_t4_last.json: the shipped student's run


def load_candidates(folder: Path) -> list[dict]:
    """One entry per ``prior_shift_*.json``: name, weights, whether a teacher, and its best row."""
    out = []
    for path in sorted(folder.glob("prior_shift_*.json")):
        try:
            d = json.loads(path.read_text())
            best = max(d["rows"], key=lambda r: r[RULE])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: not a training.prior_shift result ({e})") from e
        weights = str(d.get("weights", ""))
        out.append({"name": path.stem[len("prior_shift_"):], "weights": weights,
                    "teacher": "teacher" in weights.lower(), "row": best})
    if not out:
        raise FileNotFoundError(f"no prior_shift_*.json in {folder}: run training.prior_shift first")
    return sorted(out, key=lambda c: -c["row"][RULE])


def spread(candidates: list[dict]) -> dict:
    """Count, min, quartiles and max of the students' scores by the rule."""
    s = np.array([c["row"][RULE] for c in candidates if not c["teacher"]])
    if s.size == 0:
        return {"students": 0}
    q = np.percentile(s, [0, 25, 50, 75, 100])
    return {"students": int(s.size), **dict(zip(("min", "q1", "median", "q3", "max"), q.round(4).tolist()))}


def markdown(candidates: list[dict], shipped: str) -> str:
    st = spread(candidates)
    lines = [f"{st['students']} student checkpoint{'' if st['students'] == 1 else 's'} scored; "
             "the rule's score (worst ratio to target) "
             + (f"spreads from {st['min']:.3f} to {st['max']:.3f}, quartiles {st['q1']:.3f} / "
                f"{st['median']:.3f} / {st['q3']:.3f}." if st["students"] else "has no students."),
             "",
             "| rank | candidate | shift | " + " | ".join(FIGURES) + f" | {RULE} |",
             "|---|---|---|" + "---|" * (len(FIGURES) + 1)]
    for i, c in enumerate(candidates, 1):
        r = c["row"]
        name = c["name"] + (" (teacher)" if c["teacher"] else "") + (" **(shipped)**" if c["name"] == shipped else "")
        lines.append(f"| {i} | {name} | {r['shift']:g} | "
                     + " | ".join(f"{100 * r[f]:.2f}" for f in FIGURES) + f" | {r[RULE]:.3f} |")
    lines.append("| | target | | " + " | ".join(f"{100 * TARGETS[f]:g}" for f in FIGURES) + " | 1.000 |")
    return "\n".join(lines) + "\n"


def plot(candidates: list[dict], shipped: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    students = [c for c in candidates if not c["teacher"]]
    scores = [c["row"][RULE] for c in students]
    for ax, (fx, fy) in zip(axes, [FIGURES[0::2], FIGURES[1::2]]):
        pts = ax.scatter([100 * c["row"][fx] for c in students], [100 * c["row"][fy] for c in students],
                         c=scores, cmap="viridis", s=28, label="student checkpoint")
        teachers = [c for c in candidates if c["teacher"]]
        ax.scatter([100 * c["row"][fx] for c in teachers], [100 * c["row"][fy] for c in teachers],
                   marker="^", s=60, facecolors="none", edgecolors="black", label="teacher")
        for c in candidates:
            if c["name"] == shipped:
                ax.scatter([100 * c["row"][fx]], [100 * c["row"][fy]], marker="*", s=260,
                           facecolors="none", edgecolors="black", label="shipped student")
        ax.axvline(100 * TARGETS[fx], color="grey", ls="--", lw=1)
        ax.axhline(100 * TARGETS[fy], color="grey", ls="--", lw=1)
        ax.set_xlabel(f"{fx} (%)")
        ax.set_ylabel(f"{fy} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.colorbar(pts, ax=axes, label="worst of the four score / target ratios (1: all met)", shrink=0.9)
    fig.suptitle("Every scored candidate at its best prior shift (dashed lines: the targets of issue 13)")
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def run_course(candidates: list[dict], run: str) -> list[tuple[int, dict]]:
    """(epoch, best row) of each scored epoch of ``run`` (candidates named ``RUN_eN``), by epoch."""
    pattern = re.compile(rf"{re.escape(run)}_e(\d+)")
    course = [(int(m.group(1)), c["row"]) for c in candidates if (m := pattern.fullmatch(c["name"]))]
    if not course:
        raise FileNotFoundError(f"no prior_shift_{run}_eN.json scored: run training.prior_shift on its epochs")
    return sorted(course)


def plot_run(course: list[tuple[int, dict]], log: list[dict], shipped_score: float | None, run: str,
             path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot([e for e, _ in course], [r[RULE] for _, r in course], "o-", label=f"{run}, at its best shift")
    if shipped_score is not None:
        ax1.axhline(shipped_score, color="black", ls="--", lw=1, label="shipped student")
    ax1.axhline(1.0, color="grey", ls=":", lw=1, label="all four targets met")
    ax1.set(xlabel="epoch", ylabel=RULE, title="the selection rule, scored epochs")
    ax1.legend(fontsize=8)
    for key, name in (("val_accuracy", "FERPlus valid accuracy"), ("val_macro_recall", "FERPlus valid macro recall"),
                      ("val2_accuracy", "SFEW accuracy"), ("val2_macro_recall", "SFEW macro recall")):
        rows = [r for r in log if key in r]
        if rows:
            ax2.plot([r["epoch"] for r in rows], [100 * r[key] for r in rows], label=name)
    ax2.set(xlabel="epoch", ylabel="% (raw logits, no prior shift)", title="every epoch, from the training log")
    if log:
        ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(REPO / "results"), help="folder of prior_shift_*.json")
    ap.add_argument("--shipped", help="the shipped student's result: NAME or its file, prior_shift_NAME.json "
                                      f"(default {SHIPPED})")
    ap.add_argument("--out", default=str(REPO / "results" / "leaderboard"), help="writes OUT.md and OUT.png")
    ap.add_argument("--run", help="also draw this run's course over its scored epochs (OUT_RUN.png)")
    ap.add_argument("--logs", default=str(REPO / "results" / "runs"), help="folder of run folders with log.jsonl")
    args = ap.parse_args(argv)
    with reported_errors():
        candidates = load_candidates(Path(args.results))
        course = run_course(candidates, args.run) if args.run else None
    given = args.shipped is not None
    # the file (a path, as a shell completes it) or its stem is taken too: prior_shift_NAME.json
    args.shipped = Path(args.shipped or SHIPPED).name.removesuffix(".json").removeprefix("prior_shift_")
    if given and not any(c["name"] == args.shipped for c in candidates):
        print(f"warning: --shipped {args.shipped}: no prior_shift_{args.shipped}.json in {args.results}, so no "
              "candidate is marked as shipped", file=sys.stderr)
    text = markdown(candidates, args.shipped)
    md, png = output_path(args.out, ".md"), output_path(args.out, ".png")
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        make_folders(Path(args.out).parent)
        write_file(md, text)
        plot(candidates, args.shipped, png)
    print(text.split("\n")[0])
    print(f"wrote {md} and {png}")
    if args.run:
        log = read_log(Path(args.logs) / args.run / "log.jsonl") or read_log(REPO / "runs" / args.run / "log.jsonl")
        shipped = next((c["row"][RULE] for c in candidates if c["name"] == args.shipped), None)
        path = output_path(args.out, f"_{args.run}.png")
        with reported_errors():
            plot_run(course, log, shipped, args.run, path)
        print(f"wrote {path}: {len(course)} scored epochs, {len(log)} logged")


if __name__ == "__main__":
    run_tool(main)
