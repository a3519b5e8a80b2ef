"""Export a training checkpoint to the pyfer weights format (and optionally ONNX).

    python -m training.export CHECKPOINT.pt OUT.safetensors [--onnx OUT.onnx] [--fp16]

Format (version 1): a safetensors file. Every BatchNorm is folded into the preceding conv, so
each ConvBN of ``training.models`` appears as ``<module path>.conv.weight`` (float32, OIHW) and
``<module path>.conv.bias`` (float32); the classifier as ``fc.weight`` (classes x features) and
``fc.bias``. The safetensors metadata holds ``data_crc32`` and ``header_crc32``, the checksums of
the data and the header, which the engine checks on load (:mod:`pyfer.weights_file`), and
``pyfer``, whose value is a JSON object::

    {"format_version": 1, "arch": "shufflenetv2" | "effresnet18", "num_classes": 8,
     "in_channels": 1, "stem": "small" | "imagenet", "class_names": [...],
     "preprocess": {"input_size": 64, "channels": 1, "mean": 0.5, "std": 0.5},
     "network": {"stem": {...}, "blocks": [{"kind", "name", "cin", "cout", "stride"}, ...], "conv5": C},
     "framing": {...pyfer.facenorm.FaceFraming.to_dict()...},   # optional: how faces were framed
     "source": {"mode", "epochs_trained", "selection_score", "selected_epoch", "config",
                "prior_shift"}}   # training provenance (prior_shift: with --prior-shift)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from pyfer.preprocess import EMOTIONS, PreprocessSpec
from pyfer.weights_file import read_checked, save_checked
from training.cli import reported_errors, run_tool
from training.data import DEFAULT_DATA, DEFAULT_DATA_ROOT, DataError, ferplus_prior
from training.models import ModelSpec, fold_batchnorm, network_description

FORMAT_VERSION = 1
ENGINE_ARCHITECTURES = ("shufflenetv2", "effresnet18")  # what csrc/ builds; faceresnet trains teachers only


def export_model(model: torch.nn.Module, spec: ModelSpec, prep: PreprocessSpec, out: str | Path,
                 class_names=EMOTIONS, source: dict | None = None, half: bool = False,
                 framing: dict | None = None, class_prior: np.ndarray | None = None,
                 prior_shift: float = 0.0) -> Path:
    """Fold BN and write ``out`` (safetensors). ``half`` stores fp16 (for archived teachers only).
    ``class_prior``: the training set's class frequencies, stored in the metadata with
    ``prior_shift`` (``logit_adjustment``) so that ``Recognizer(prior_shift=...)`` can move the
    adjustment later; ``prior_shift * log(class_prior)`` is baked into the classifier's bias
    (post-hoc logit adjustment, Menon et al. 2021)."""
    if spec.arch not in ENGINE_ARCHITECTURES:
        raise ValueError(f"{spec.arch} is a training-only model: the engine runs {ENGINE_ARCHITECTURES}")
    if len(class_names) != spec.num_classes:
        raise ValueError(f"{len(class_names)} class names for {spec.num_classes} classes")
    if len(set(class_names)) != len(class_names):  # a face's scores are a dict by name
        raise ValueError(f"class names must differ from each other, got {list(class_names)}")
    if spec.in_channels != prep.channels:  # Recognizer feeds what preprocess says: gray crops
        raise ValueError(f"the model takes {spec.in_channels}-channel input and the preprocessing gives "
                         f"{prep.channels} channel(s)")
    if prior_shift and class_prior is None:
        raise ValueError("prior_shift needs the class_prior it shifts by")
    folded = fold_batchnorm(model.cpu().eval(), spec)
    if class_prior is not None:
        class_prior = np.asarray(class_prior, np.float64)
        if class_prior.shape != (spec.num_classes,) or not (class_prior > 0).all():
            raise ValueError(f"class_prior must be {spec.num_classes} positive frequencies, got {class_prior}")
        class_prior = class_prior / class_prior.sum()
    if prior_shift:
        with torch.no_grad():
            folded.fc.bias.add_(torch.as_tensor(prior_shift * np.log(class_prior), dtype=folded.fc.bias.dtype))
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous().numpy() for k, v in folded.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "arch": spec.arch,
        "num_classes": spec.num_classes,
        "in_channels": spec.in_channels,
        "stem": spec.stem,
        **{f: list(getattr(spec, f)) for f in ("widths", "repeats") if getattr(spec, f) is not None},
        "class_names": list(class_names),
        "preprocess": prep.to_dict(),
        # the block list the engine reads (training.models.network_description; older files
        # without it are described from arch + stem by the engine)
        "network": network_description(folded),
        "source": source or {},
    }
    if framing is not None:
        meta["framing"] = framing
    if class_prior is not None:
        meta["logit_adjustment"] = {"class_prior": [round(float(v), 8) for v in class_prior],
                                    "prior_shift": float(prior_shift)}
    return save_checked(tensors, out, {"pyfer": json.dumps(meta)})


def read_metadata(path: str | Path) -> dict:
    """The ``pyfer`` metadata of an export (the format's one reader, with :func:`from_safetensors`)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a readable safetensors file (damaged or cut short?): {exc}") from exc
    return pyfer_metadata(meta, path)


def pyfer_metadata(file_metadata: dict, path) -> dict:
    """The ``pyfer`` entry of a file's safetensors metadata, decoded."""
    if "pyfer" not in file_metadata:
        raise ValueError(f"{path} has no 'pyfer' metadata: not a pyfer export")
    return json.loads(file_metadata["pyfer"])


def baked_shift(path: str | Path) -> float:
    """The prior shift a model's scores carry as stored: an export's baked one, else 0 (a
    checkpoint's logits are raw)."""
    if not str(path).endswith(".safetensors"):
        return 0.0
    return float((read_metadata(path).get("logit_adjustment") or {}).get("prior_shift") or 0.0)


def baked_prior_shift(path: str | Path):
    """The ``prior_shift * log(class_prior)`` an export's classifier bias carries (a numpy vector),
    or None: a checkpoint (.pt), or an export without a shift. Subtract it for the raw logits."""
    shift = baked_shift(path)
    if not shift:
        return None
    return shift * np.log(np.asarray(read_metadata(path)["logit_adjustment"]["class_prior"], dtype=np.float64))


def total_shift_offset(path: str | Path, shift: float, log_prior: np.ndarray) -> np.ndarray:
    """What to add to a model's logits to score it at a total prior shift ``shift``: ``shift *
    log prior``, less the shift an export carries baked in (a checkpoint carries none)."""
    offset = shift * np.asarray(log_prior, dtype=np.float64)
    baked = baked_prior_shift(path)
    return offset if baked is None else offset - baked


def spec_of(meta: dict) -> tuple[ModelSpec, PreprocessSpec]:
    return (ModelSpec(meta["arch"], meta["num_classes"], meta["in_channels"], meta["stem"],
                      meta.get("widths"), meta.get("repeats")),  # (a 1.0x ShuffleNetV2 stores none)
            PreprocessSpec.from_dict(meta["preprocess"]))


def from_safetensors(path: str | Path) -> torch.nn.Module:
    """Rebuild the eval-mode PyTorch reference module (BN folded) from an exported file."""
    tensors, file_metadata = read_checked(path)  # one read: the spec and the tensors of one file
    spec, _ = spec_of(pyfer_metadata(file_metadata, path))
    return spec.load({k: torch.from_numpy(v) for k, v in tensors.items()}, path, folded=True)


def export_onnx(weights: str | Path, out: str | Path, opset: int = 17) -> Path:
    """Export the folded reference model of ``weights`` to ONNX (dynamic batch)."""
    model = from_safetensors(weights)
    size = read_metadata(weights)["preprocess"]["input_size"]
    x = torch.zeros(1, model.stem.conv.in_channels, size, size)
    out = Path(out)
    torch.onnx.export(model, (x,), str(out), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                      dynamo=False)
    return out


def main(argv=None) -> None:
    from training.checkpoint import load_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a training checkpoint (.pt)")
    ap.add_argument("out", help="output .safetensors path")
    ap.add_argument("--onnx", help="also write an ONNX model here")
    ap.add_argument("--prior-shift", type=float, default=0.0,
                    help="bake SHIFT * log(FERPlus train prior) into the classifier bias (post-hoc logit "
                         "adjustment; SHIFT > 0 gives the frequent classes back some of their prior)")
    ap.add_argument("--fp16", action="store_true", help="store fp16 (archival; the engine wants fp32)")
    ap.add_argument("--class-names", metavar="A,B,...",
                    help="comma-separated names of the model's outputs, in order (what Face.label and "
                         "Face.scores say; default: the 8 FERPlus classes, " + ",".join(EMOTIONS) + ")")
    args = ap.parse_args(argv)
    if not args.out.endswith(".safetensors"):  # every tool tells an export from a checkpoint by this suffix
        ap.error(f"out {args.out!r}: an export's name must end in .safetensors (the tools read other names "
                 "as training checkpoints)")
    with reported_errors():
        ckpt = load_checkpoint(args.checkpoint)
        model, spec, prep = ckpt.build_model()
        class_names = EMOTIONS if args.class_names is None else tuple(n.strip() for n in args.class_names.split(","))
        if len(class_names) != spec.num_classes:  # (training.train makes the 8 FERPlus classes)
            given = "--class-names gives" if args.class_names is not None else "the default names are the"
            raise ValueError(f"{args.checkpoint}: a model of {spec.num_classes} classes, and {given} "
                             f"{len(class_names)}: name each output with --class-names A,B,...")
        if not all(class_names):
            raise ValueError(f"--class-names: an empty name in {args.class_names!r}")
        source = ckpt.provenance()
        prior = None
        # the prior of the data the checkpoint trained on, wherever that is on this machine (a GPU
        # machine has FERPlus in .cache/ferplus, not in ../shared); older checkpoints lack a config
        data = (ckpt.state.get("config") or {}).get("data") or DEFAULT_DATA
        kind, _, root = data.partition(":")
        if kind == "ferplus" and root:
            # the same labels at this machine's default place, for a run made elsewhere
            roots = [root] + ([DEFAULT_DATA_ROOT] if root != DEFAULT_DATA_ROOT else [])
            try:
                prior = ferplus_prior(next((r for r in roots if Path(r).is_dir()), root))
            except (OSError, DataError) as exc:
                if args.prior_shift:
                    raise ValueError(f"--prior-shift needs the FERPlus training prior: {exc}") from exc
                print(f"warning: no class prior stored in the export ({exc}), so Recognizer(prior_shift=...) "
                      "cannot move its adjustment", file=sys.stderr)
        elif args.prior_shift:
            raise ValueError(f"--prior-shift needs the FERPlus training prior; this checkpoint was trained on {data}")
        if args.prior_shift:
            source["prior_shift"] = args.prior_shift
        out = export_model(model, spec, prep, args.out, class_names=class_names, source=source, half=args.fp16,
                           framing=ckpt.state.get("framing"), class_prior=prior, prior_shift=args.prior_shift)
        print(f"wrote {out}")
        if args.onnx:
            print(f"wrote {export_onnx(out, args.onnx)}")


if __name__ == "__main__":
    run_tool(main)
