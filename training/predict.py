"""Prediction helpers shared by training, evaluation and Grad-CAM: load a trained model from a
checkpoint or an export, and run it over uint8 face batches."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from pyfer.preprocess import EMOTIONS, PreprocessSpec
from training.checkpoint import load_checkpoint
from training.data import to_model_input
from training.export import from_safetensors, read_metadata, spec_of
from training.models import ModelSpec


def load_model(path: str | Path) -> tuple[torch.nn.Module, ModelSpec, PreprocessSpec]:
    """A trained model from a training checkpoint (.pt) or an exported .safetensors file.

    The training tools read a model's outputs as the FERPlus classes, in ``EMOTIONS`` order (labels,
    metrics, priors): a model of other classes is refused here rather than scored wrongly. The
    pyfer package runs any class list, by name (``pyfer evaluate``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        meta = read_metadata(path)
        names = list(meta.get("class_names") or [])
        if names != list(EMOTIONS):
            raise ValueError(f"{path}: its classes are {names}, and the training tools score the 8 FERPlus "
                             f"classes in this order: {list(EMOTIONS)} (pyfer evaluate scores any, by name)")
        spec, prep = spec_of(meta)
        return from_safetensors(path), spec, prep
    ck = load_checkpoint(path)
    if ck.spec.num_classes != len(EMOTIONS):
        raise ValueError(f"{path}: a model of {ck.spec.num_classes} classes, and the training tools score the 8 "
                         "FERPlus classes")
    return ck.build_model()


@torch.no_grad()
def predict_logits(model, images_u8: torch.Tensor, prep: PreprocessSpec, batch: int = 512,
                   tta: bool = False, amp: bool = False, progress: str | None = None) -> torch.Tensor:
    """Logits for uint8 (N, 1, S, S) images on the model's device (eval mode). ``progress``: a
    bar with this title, on a terminal (a teacher over a set takes minutes on a laptop's CPU)."""
    model.eval()
    outs = []
    starts = range(0, len(images_u8), batch)
    for i in tqdm(starts, desc=progress, unit="batch", leave=False, disable=None if progress else True):
        x = to_model_input(images_u8[i:i + batch], prep)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            y = model(x).float()
            if tta:
                y = (y + model(x.flip(3)).float()) / 2
        outs.append(y)
    return torch.cat(outs)
