"""Does averaging more views of each face than the mirror image help? (issue 13)

The Recognizer averages each face's logits with its mirror's. This scores larger view sets on
FERPlus valid and SFEW train, each view a re-framing of the face by ``normalize_face`` with the
landmark template zoomed by ``s`` about its centre and moved by (dx, dy) of the crop, the way the
Recognizer would frame it, every view with its mirror too. For each set it prints the four issue-13
figures at the model's own prior shift (0 added), and again at another added shift where that one
scores better by the selection rule of ``training.prior_shift``.

    python scripts/tta_views.py --weights pyfer/models/tsnet_student.safetensors --out results/tta_views_student
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyfer.atomic import write_file  # noqa: E402
from pyfer.facenorm import FaceFraming  # noqa: E402
from training.cli import output_path  # noqa: E402
from training.data import DEFAULT_DATA, ferplus_prior  # noqa: E402
from training.prior_shift import TARGETS, format_cells, framed_logits, scores  # noqa: E402

# (zoom, dx, dy): zoom > 1 spreads the landmarks, so the face fills more of the crop
VIEW_SETS = {
    "mirror (shipped)": [(1.0, 0.0, 0.0)],
    "+ zoom 0.9 / 1.1": [(1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.1, 0.0, 0.0)],
    "+ zoom 0.95 / 1.05": [(1.0, 0.0, 0.0), (0.95, 0.0, 0.0), (1.05, 0.0, 0.0)],
    "+ shift up / down 4%": [(1.0, 0.0, 0.0), (1.0, 0.0, -0.04), (1.0, 0.0, 0.04)],
    "+ zoom 0.9 / 1.1 + shift up / down 4%": [(1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.1, 0.0, 0.0),
                                             (1.0, 0.0, -0.04), (1.0, 0.0, 0.04)],
}


def view_framing(base: FaceFraming, zoom: float, dx: float, dy: float) -> FaceFraming:
    t = np.asarray(base.template)
    c = t.mean(0)
    moved = c + zoom * (t - c) + (dx, dy)
    return replace(base, template=tuple(map(tuple, moved.tolist())))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=str(REPO / "pyfer" / "models" / "tsnet_student.safetensors"))
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--shifts", type=float, nargs="+", default=[-0.2, -0.1, 0.0, 0.1, 0.2])
    ap.add_argument("--out", default=str(REPO / "results" / "tta_views_student"))
    args = ap.parse_args(argv)

    base = FaceFraming(mode="align")
    views = sorted({v for vs in VIEW_SETS.values() for v in vs})
    logits = {}  # view -> set -> flip-averaged logits
    for v in views:
        logits[v], labels = framed_logits(args.weights, args.data, args.val2, view_framing(base, *v))
    log_prior = np.log(ferplus_prior(args.data.partition(":")[2]))

    cols = list(TARGETS) + ["worst ratio to target"]
    md = ["| views (each with its mirror) | added shift | " + " | ".join(cols) + " |",
          "|---|---|" + "---|" * len(cols)]
    rows = []
    for name, vs in VIEW_SETS.items():
        avg = {k: np.mean([logits[v][k] for v in vs], 0) for k in labels}
        by_shift = [{"shift": s, **scores(avg, labels, s * log_prior)} for s in args.shifts]
        own = next(r for r in by_shift if r["shift"] == 0.0)
        best = max(by_shift, key=lambda r: r["worst ratio to target"])
        shown = [("0", own)] + ([(f"{best['shift']:g} (best)", best)] if best is not own else [])
        for tag, r in shown:
            md.append(f"| {name} | {tag} | " + " | ".join(format_cells(r)) + " |")
        rows.append({"views": name, "view_params": vs, "own_shift": own, "best": best})
    text = "\n".join(md)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_file(output_path(args.out, ".md"), text + "\n")
    write_file(output_path(args.out, ".json"), json.dumps({"weights": args.weights, "rows": rows}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
