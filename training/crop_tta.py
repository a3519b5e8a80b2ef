"""Does averaging a model over several framings of each face (multi-crop test-time augmentation)
beat the one framing ``predict`` uses? Scored by issue 13's rule on FERPlus valid and SFEW.

Each view frames every face by ``normalize_face`` with the landmark template zoomed about the
crop's centre (``--scales``: 1.1 puts the landmarks 10% further apart, a tighter crop) or moved
(``--offset``: the face moved by that share of the crop's side, left/right/up/down in the crop,
at scale 1); each view is flip-averaged as at inference. Every single view and the averages of
the zoomed views and of all views are scored at their own best prior shift
(``training.prior_shift``'s rule), and each average is set against the plain view by a paired
bootstrap over faces (both sets resampled).

    python -m training.crop_tta --weights pyfer/models/tsnet_student.safetensors --out results/crop_tta_student

Writes ``<out>.md`` and ``<out>.json``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from pyfer.atomic import make_folders, write_file
from pyfer.facenorm import FaceFraming
from training.cli import output_path, reported_errors, run_tool
from training.data import DEFAULT_DATA, ferplus_prior
from training.prior_shift import REPO, TARGETS, best_shift, format_cells, framed_logits, scores


def view_framing(base: FaceFraming, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> FaceFraming:
    """``base`` with its landmark template zoomed by ``scale`` about the crop's centre, then moved
    by (dx, dy) of the crop's side: the face lands that much further right (dx > 0) and down
    (dy > 0) in the crop."""
    t = 0.5 + (np.asarray(base.template, np.float64) - 0.5) * scale + np.array([dx, dy])
    return replace(base, template=tuple(map(tuple, t.tolist())))


def views(scales, offset: float) -> dict[str, tuple[float, float, float]]:
    """View name -> (scale, dx, dy): each scale, then scale 1 with the face moved by ``offset``
    each way in the crop (the name says which)."""
    out = {f"zoom {s:g}": (float(s), 0.0, 0.0) for s in scales}
    if offset:
        for name, (dx, dy) in {"left": (-offset, 0), "right": (offset, 0), "up": (0, -offset),
                               "down": (0, offset)}.items():
            out[f"{name} {offset:g}"] = (1.0, float(dx), float(dy))
    return out


def paired_bootstrap(a: dict, b: dict, labels: dict, rounds: int, seed: int = 0) -> dict:
    """Worst-ratio gain of ``b`` over ``a`` (logits already shifted) on ``rounds`` resamplings of
    the faces of both sets, the same faces for both: mean, 95% interval, share of rounds <= 0."""
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(rounds):
        idx = {k: rng.integers(0, len(v), len(v)) for k, v in labels.items()}
        gains.append(scores(b, labels, 0.0, idx)["worst ratio to target"]
                     - scores(a, labels, 0.0, idx)["worst ratio to target"])
    g = np.asarray(gains)
    lo, hi = np.percentile(g, [2.5, 97.5])
    return {"mean": float(g.mean()), "low": float(lo), "high": float(hi), "share_not_better": float((g <= 0).mean())}


def crop_tta_table(weights: str, data: str, val2: str, scales, offset: float, shifts, rounds: int) -> tuple[str, dict]:
    from tqdm import tqdm

    base = FaceFraming()
    named = views(scales, offset)
    logits, labels = {}, None
    for name, (s, dx, dy) in tqdm(named.items(), desc=f"views of {Path(weights).name}", disable=None):
        logits[name], labels = framed_logits(weights, data, val2, view_framing(base, s, dx, dy))
    log_prior = np.log(ferplus_prior(data.partition(":")[2]))
    averages = {"average of the zooms": [n for n in named if n.startswith("zoom")]}
    if offset:
        averages["average of all views"] = list(named)
    rows, shifted = {}, {}
    for name, members in [*((n, [n]) for n in named), *averages.items()]:
        mean = {k: np.mean([logits[m][k] for m in members], 0) for k in labels}
        shift, r = best_shift(mean, labels, log_prior, shifts)
        rows[name] = {"views": len(members), "shift": shift, **r}
        shifted[name] = {k: v + shift * log_prior for k, v in mean.items()}
    for name in averages:
        rows[name]["bootstrap vs zoom 1"] = paired_bootstrap(shifted["zoom 1"], shifted[name], labels, rounds)
    cols = list(TARGETS) + ["worst ratio to target"]
    md = [f"`{weights}`, each row at its own best prior shift (flip averaging in every view)", "",
          "| view | views | shift | " + " | ".join(cols) + " |", "|---|---|---|" + "---|" * len(cols)]
    md += [f"| {n} | {r['views']} | {r['shift']:+g} | " + " | ".join(format_cells(r)) + " |" for n, r in rows.items()]
    md += ["", f"Paired bootstrap over faces ({rounds} rounds), worst-ratio gain over zoom 1:", ""]
    for name in averages:
        b = rows[name]["bootstrap vs zoom 1"]
        md.append(f"- {name}: mean {b['mean']:+.4f}, 95% interval {b['low']:+.4f} to {b['high']:+.4f}, "
                  f"no gain in {100 * b['share_not_better']:.1f}% of rounds")
    return "\n".join(md), rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, nargs="+")
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--val2", default=str(REPO.parent / "shared" / "data" / "sfew_train" / "manifest.csv"))
    ap.add_argument("--scales", type=float, nargs="+", default=[0.9, 0.95, 1.0, 1.05, 1.1])
    ap.add_argument("--offset", type=float, default=0.03, help="the moved views' shift (0: none)")
    ap.add_argument("--shifts", type=float, nargs="+", default=[round(s, 2) for s in np.arange(-0.8, 0.81, 0.05)])
    ap.add_argument("--bootstrap", type=int, default=1000, metavar="ROUNDS")
    ap.add_argument("--out", required=True, help="writes OUT.md and OUT.json")
    args = ap.parse_args(argv)
    if not all(0.5 <= s <= 2 for s in args.scales) or not 0 <= args.offset <= 0.2 or args.bootstrap < 1:
        ap.error("--scales must lie in [0.5, 2], --offset in [0, 0.2], --bootstrap >= 1")
    if 1.0 not in args.scales:
        ap.error("--scales must include 1: the framing predict uses, the baseline")
    texts, result = [], {}
    out = Path(args.out)
    with reported_errors():
        make_folders(out.parent)  # before the work, not after it
        for w in args.weights:
            text, rows = crop_tta_table(w, args.data, args.val2, args.scales, args.offset, args.shifts, args.bootstrap)
            texts.append(text)
            result[w] = rows
    with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
        write_file(output_path(out, ".md"), "\n\n".join(texts) + "\n")
        write_file(output_path(out, ".json"), json.dumps(result, indent=1))
    print("\n\n".join(texts))


if __name__ == "__main__":
    run_tool(main)
