"""Training checkpoints: atomic writes, clear errors on corrupt files, model rebuild."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from pyfer.preprocess import PreprocessSpec
from training.models import ModelSpec


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file."""


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically: a crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Checkpoint:
    path: Path
    state: dict

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(**self.state["model_spec"])

    @property
    def prep(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.state["preprocess"])

    def build_model(self, which: str = "model") -> tuple[torch.nn.Module, ModelSpec, PreprocessSpec]:
        """The trained module (eval mode) with its model and preprocessing specs."""
        model = self.spec.build()
        model.load_state_dict(self.state[which])
        return model.eval(), self.spec, self.prep

    def provenance(self) -> dict:
        keys = ("mode", "epoch", "best_val_accuracy", "config")
        return {k: self.state[k] for k in keys if k in self.state}


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a pyfer checkpoint: {exc}") from exc
    missing = [k for k in ("model", "model_spec", "preprocess") if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: not a pyfer training checkpoint")
    return Checkpoint(path, state)


def load_model(path: str | Path) -> tuple[torch.nn.Module, ModelSpec, PreprocessSpec]:
    """A trained model from a training checkpoint (.pt) or an exported .safetensors file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from training.export import read_metadata
        from training.models import from_safetensors

        meta = read_metadata(path)
        spec = ModelSpec(meta["arch"], meta["num_classes"], meta["in_channels"], meta["stem"])
        return from_safetensors(path), spec, PreprocessSpec.from_dict(meta["preprocess"])
    return load_checkpoint(path).build_model()
