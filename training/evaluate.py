"""Evaluate a checkpoint or an exported model.

    python -m training.evaluate --weights pyfer/models/tsnet_student.safetensors \
        --data ferplus:../shared/data/ferplus [--split valid] [--tta] [--confusion-png C.png] [--json]
    python -m training.evaluate --weights W --manifest ../shared/data/sfew_train/manifest.csv --json

Reports accuracy, macro precision / recall, per-class recall (the paper's Table IV), one-vs-rest
AUC, the confusion matrix (optionally as a PNG), parameters, MACs at the input size and the
single-image CPU latency of the PyTorch module. With ``--json`` the last stdout line is one JSON
object (AUC null where the data has two classes or fewer). All metrics come from scikit-learn.

``--prior-shift S`` scores at a total shift of S: an export's baked shift is taken out first, so an
export and its checkpoint agree at the same S; without it a model scores as its weights answer.
By default (``--framing auto``) faces are framed as the model trained on them, as it records it:
``align`` for the shipped student, so that its faces are framed as ``predict`` frames them; a model
that records no framing scores the data set's own crops (``--framing frame``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pyfer.evaluate import plot_confusion
from pyfer.preprocess import EMOTIONS
from training.cli import reported_errors, run_tool
from training.data import FaceSet, ferplus_prior, is_split_source, load_dataset
from training.export import baked_shift, read_metadata, total_shift_offset
from training.predict import load_model
from training.models import count_parameters


def count_macs(model: torch.nn.Module, input_size: int, in_channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass (convolutions and linear layers)."""
    macs = 0

    def conv_hook(m, _inp, out):
        nonlocal macs
        macs += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, _inp, out):
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, in_channels, input_size, input_size))
    for h in hooks:
        h.remove()
    return macs


def cpu_latency_ms(model: torch.nn.Module, input_size: int, repeats: int = 30) -> float:
    """Median single-image latency of the PyTorch module on this CPU, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.zeros(1, 1, input_size, input_size)
    times = []
    with torch.no_grad():
        for i in range(repeats + 5):
            t = time.perf_counter()
            model(x)
            if i >= 5:
                times.append(time.perf_counter() - t)
    torch.set_num_threads(threads)
    return float(np.median(times) * 1e3)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, data: FaceSet, prep, tta: bool = False, batch: int = 256,
                  progress: str | None = None) -> np.ndarray:
    from training.predict import predict_logits

    x = torch.from_numpy(data.images).unsqueeze(1)
    return torch.softmax(predict_logits(model, x, prep, batch=batch, tta=tta, progress=progress), 1).numpy()


def compute_metrics(labels: np.ndarray, proba: np.ndarray, class_names=EMOTIONS) -> dict:
    from sklearn.metrics import (accuracy_score, confusion_matrix, precision_recall_fscore_support,
                                 roc_auc_score)

    n_classes = len(class_names)
    pred = proba.argmax(1)
    present = np.unique(labels)
    prec, rec, _, _ = precision_recall_fscore_support(labels, pred, labels=np.arange(n_classes), zero_division=0)
    # macro averages over the classes the data contains (SFEW has no contempt); no AUC (None,
    # JSON's null: NaN is no JSON) for two classes or fewer
    auc = float(roc_auc_score(labels, proba[:, present] / proba[:, present].sum(1, keepdims=True),
                              multi_class="ovr", labels=present)) if len(present) > 2 else None
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_precision": float(prec[present].mean()),
        "macro_recall": float(rec[present].mean()),
        "auc": auc,
        "per_class_recall": {c: (float(rec[i]) if i in present else None) for i, c in enumerate(class_names)},
        "confusion": confusion_matrix(labels, pred, labels=np.arange(n_classes)).tolist(),
    }


def class_prior_for(weights: str, source: str) -> np.ndarray:
    """The training prior a post-hoc shift moves by: the one an export stores (the prior of the data
    it trained on), else FERPlus train under ``source`` when that is FERPlus, else the default root."""
    if str(weights).endswith(".safetensors"):
        stored = (read_metadata(weights).get("logit_adjustment") or {}).get("class_prior")
        if stored:
            return np.asarray(stored, np.float64)
    kind, _, root = source.partition(":")
    prior = ferplus_prior(root) if kind == "ferplus" and root else ferplus_prior()
    return np.maximum(prior, 1e-6)  # a class the set lacks: no log(0), so no NaN scores after a shift


def prior_offset(weights: str, source: str, prior_shift: float | None) -> np.ndarray | None:
    """What moves a model's logits to a total prior shift of ``prior_shift`` (``(shift - baked) *
    log prior`` for an export with a shift baked in), or None where nothing moves them."""
    if prior_shift is None:
        return None
    offset = total_shift_offset(weights, prior_shift, np.log(class_prior_for(weights, source)))
    return offset if offset.any() else None


def recorded_framing(weights: str) -> str | None:
    """The framing mode ("align", "box") of the faces a model trained on, as its export or checkpoint
    records it for ``predict``; None: trained on the data set's own crops, or not recorded."""
    if str(weights).endswith(".safetensors"):
        recorded = read_metadata(weights).get("framing")
    else:
        from training.checkpoint import load_checkpoint

        recorded = load_checkpoint(weights).state.get("framing")
    return (recorded or {}).get("mode")


def evaluate(weights: str, source: str, split: str = "valid", root: str | None = None, tta: bool = False,
             latency: bool = True, framing: str = "auto", prior_shift: float | None = None,
             limit: int | None = None) -> dict:
    """``framing``: "auto" frames faces as the model records it trained (else the crops as given,
    "frame"). ``prior_shift``: the total shift to score at (None: as the weights answer, baked
    shift and all). A manifest is scored whole: its metrics' ``split`` is None. ``limit``: at most
    that many faces, evenly spread over the set sorted by class, so that each class keeps its share
    (a quick look; ``n_total`` says of how many)."""
    if framing == "auto":
        framing = recorded_framing(weights) or "frame"
    model, spec, prep = load_model(weights)
    if framing == "frame":
        data = load_dataset(source, prep, split, root)
    else:
        from pyfer.facenorm import FaceFraming
        from training.framing import load_framed

        data = load_framed(source, prep, split, FaceFraming(mode=framing))
    n_total = len(data)
    if limit is not None:
        from pyfer.evaluate import spread

        data = data.subset(spread(np.argsort(data.labels, kind="stable"), limit))
    # a bar on a terminal: the teacher over FERPlus valid with --tta ran 2 minutes without one
    proba = predict_proba(model, data, prep, tta=tta, progress=f"{Path(weights).name} on {len(data)} faces")
    offset = prior_offset(weights, source, prior_shift)
    if offset is not None:  # logits + shift * log(prior): shift < 0 favours rare classes, > 0 frequent ones
        z = np.log(proba) + offset
        proba = np.exp(z - z.max(1, keepdims=True))
        proba /= proba.sum(1, keepdims=True)
    metrics = compute_metrics(data.labels, proba)
    baked = baked_shift(weights)
    metrics.update(
        weights=str(weights), data=source, split=split if is_split_source(source) else None,
        tta=tta, framing=framing, n_total=n_total,
        prior_shift=baked if prior_shift is None else prior_shift,
        arch=spec.arch, stem=spec.stem,
        input_size=prep.input_size, params=count_parameters(model),
        macs=count_macs(model, prep.input_size, spec.in_channels),
    )
    if baked:
        metrics["baked_shift"] = baked
    if latency:
        metrics["cpu_latency_ms"] = cpu_latency_ms(model, prep.input_size)
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="training checkpoint (.pt) or export (.safetensors)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="ferplus:DIR or rafdb:DIR")
    src.add_argument("--manifest", help="CSV with a path,label header")
    ap.add_argument("--root", help="folder the manifest's paths are relative to (default: its folder)")
    ap.add_argument("--split", default="valid", help="train or valid (--data only: a manifest is one set)")
    ap.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    ap.add_argument("--framing", choices=("auto", "frame", "align", "box"), default="auto",
                    help="auto (default): the framing the model trained on, as it records it, else frame; "
                         "frame: the crops as given; align/box: re-framed by pyfer.facenorm on YuNet's detection")
    ap.add_argument("--prior-shift", type=float,
                    help="score at a total shift of SHIFT * log(training prior) in the logits (post-hoc logit "
                         "adjustment; an export's baked shift is taken out first; the prior an export stores, "
                         "else FERPlus train under --data, else the default FERPlus); default: as the weights answer")
    ap.add_argument("--confusion-png", help="write the confusion matrix figure here")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--limit", type=int, metavar="N", help="at most N faces, evenly spread over the set (each class keeps its share; a quick look)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        ap.error(f"--limit must be >= 1, got {args.limit}")
    if args.manifest and args.split != "valid":
        ap.error(f"--split {args.split} is for --data: a manifest has no splits, all of it is scored")
    with reported_errors():
        trained_framing = recorded_framing(args.weights)
        if trained_framing and args.framing not in ("auto", trained_framing):
            print(f"note: {args.weights} was trained on faces framed by '{trained_framing}' and --framing "
                  f"{args.framing} differs", file=sys.stderr)
        framing = (trained_framing or "frame") if args.framing == "auto" else args.framing  # read once
        if args.confusion_png:  # before the work, not after it
            Path(args.confusion_png).parent.mkdir(parents=True, exist_ok=True)
        m = evaluate(args.weights, args.data or args.manifest, args.split, args.root, args.tta, not args.no_latency,
                     framing, args.prior_shift, args.limit)
    if args.confusion_png:
        with reported_errors():  # an output that cannot be written (a full disk): one line, as bad input
            plot_confusion(m["confusion"], EMOTIONS, EMOTIONS, args.confusion_png,
                           f"{Path(args.weights).name}: accuracy {m['accuracy']:.4f} (n={m['n']})")
    split = f" [{m['split']}]" if m["split"] else ""
    of = f" (of {m['n_total']})" if m["n"] < m["n_total"] else ""
    print(f"{m['weights']} on {m['data']}{split} n={m['n']}{of} tta={m['tta']} framing={m['framing']}"
          f" prior_shift={m['prior_shift']}" + (f" (total; {m['baked_shift']:g} baked into the export)"
                                               if "baked_shift" in m else ""))
    auc = "-" if m["auc"] is None else f"{m['auc']:.4f}"
    print(f"  accuracy {m['accuracy']:.4f}  macro precision {m['macro_precision']:.4f}  "
          f"macro recall {m['macro_recall']:.4f}  AUC {auc}")
    print("  per-class recall: " + ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}"
                                             for k, v in m["per_class_recall"].items()))
    print(f"  params {m['params']:,}  MACs {m['macs'] / 1e6:.1f}M"
          + (f"  CPU latency {m['cpu_latency_ms']:.2f} ms" if "cpu_latency_ms" in m else ""))
    if args.json:
        print(json.dumps(m, allow_nan=False))


if __name__ == "__main__":
    run_tool(main)
