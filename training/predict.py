"""Prediction helpers shared by training, evaluation and Grad-CAM: load a trained model from a
checkpoint or an export, and run it over uint8 face batches."""
from __future__ import annotations

from pathlib import Path

import torch

from pyfer.preprocess import PreprocessSpec
from training.checkpoint import load_checkpoint
from training.data import to_model_input
from training.export import from_safetensors, read_metadata, spec_of
from training.models import ModelSpec


def load_model(path: str | Path) -> tuple[torch.nn.Module, ModelSpec, PreprocessSpec]:
    """A trained model from a training checkpoint (.pt) or an exported .safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        spec, prep = spec_of(read_metadata(path))
        return from_safetensors(path), spec, prep
    return load_checkpoint(path).build_model()


@torch.no_grad()
def predict_logits(model, images_u8: torch.Tensor, prep: PreprocessSpec, batch: int = 512,
                   tta: bool = False, amp: bool = False) -> torch.Tensor:
    """Logits for uint8 (N, 1, S, S) images on the model's device (eval mode)."""
    model.eval()
    outs = []
    for i in range(0, len(images_u8), batch):
        x = to_model_input(images_u8[i:i + batch], prep)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            y = model(x).float()
            if tta:
                y = (y + model(x.flip(3)).float()) / 2
        outs.append(y)
    return torch.cat(outs)
