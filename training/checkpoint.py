"""Training checkpoints: atomic writes, clear errors on corrupt files, model rebuild."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from pyfer.atomic import atomic_write
from pyfer.preprocess import PreprocessSpec
from training.models import ModelSpec


def read_log(path: Path) -> list[dict]:
    """A run's ``log.jsonl``: one record per epoch ([] when there is none). A line cut short by a
    kill is skipped rather than failing every reader of the run."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file."""


DIGEST_KEY = "_pyfer_digest"
RESUME_KEYS = ("mode", "epoch", "model", "optimizer", "scheduler", "best_val_accuracy", "best_epoch",
               "model_spec", "preprocess")


def state_digest(state) -> str:
    """SHA-256 over every tensor's bytes (and the keys and plain values around them). torch.load
    does not notice flipped bytes inside tensor data; this does (checked by load_checkpoint)."""
    h = hashlib.sha256()

    def feed(obj):
        if isinstance(obj, torch.Tensor):
            t = obj.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(obj, dict):
            h.update(b"{")
            for k in sorted(obj, key=repr):
                if k != DIGEST_KEY:
                    h.update(repr(k).encode())
                    feed(obj[k])
            h.update(b"}")
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for v in obj:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(obj).encode())

    feed(state)
    return h.hexdigest()


def previous_path(path: str | Path) -> Path:
    """``last.pt`` -> ``prev.pt`` (any other name: ``NAME.prev``)."""
    path = Path(path)
    return path.with_name("prev.pt") if path.name == "last.pt" else path.with_name(path.name + ".prev")


def save_checkpoint(state: dict, path: str | Path, keep_previous: bool = False) -> None:
    """Write ``state`` to ``path`` atomically: a crash leaves either the old file or the new one.

    The state gets a content digest (see :func:`state_digest`). With ``keep_previous`` the file
    being replaced is first hard-linked (copied where links are not supported) to
    :func:`previous_path` (``last.pt`` -> ``prev.pt``), so that at every instant both a ``last.pt``
    and the one before it exist: if ``last.pt`` turns out corrupt, ``--resume`` falls back to
    ``prev.pt``.
    """
    path = Path(path)
    state = dict(state)
    state[DIGEST_KEY] = state_digest(state)
    with atomic_write(path, binary=True) as f:  # a unique temporary file, flushed, renamed over
        try:
            torch.save(state, f)
        except RuntimeError as exc:
            # a full disk inside torch's zip writer comes out as a RuntimeError ("unexpected pos")
            # raised while handling the OSError: the OSError is what the tools report in one line
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise
        if keep_previous and path.is_file():  # once the new one is written: prev.pt := the old last.pt
            prev = previous_path(path)
            ptmp = prev.with_name(f".{prev.name}.{secrets.token_hex(6)}.tmp")
            try:
                try:
                    os.link(path, ptmp)
                except OSError:
                    shutil.copy2(path, ptmp)
                os.replace(ptmp, prev)
            finally:
                ptmp.unlink(missing_ok=True)  # (a failed copy leaves no stray file)
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        return self.spec.load(self.state[which], self.path), self.spec, self.prep

    def provenance(self) -> dict:
        """Where an export came from. The state's 0-based ``epoch`` becomes ``epochs_trained``
        (the 1-based epoch of ``log.jsonl``); its ``best_val_accuracy``, which is the sum of both
        accuracies when the run had ``--val2``, becomes ``selection_score``, the best score of the
        run so far, reached at ``selected_epoch`` (1-based; a ``last.pt`` may be a later epoch).
        New names, so that they cannot be read with the meaning exports before session 32 gave them."""
        out = {k: self.state[k] for k in ("mode", "config") if k in self.state}
        if "epoch" in self.state:
            out["epochs_trained"] = self.state["epoch"] + 1
        if "best_val_accuracy" in self.state:
            out["selection_score"] = self.state["best_val_accuracy"]
        if "best_epoch" in self.state:
            out["selected_epoch"] = self.state["best_epoch"] + 1
        return out


def looks_like_safetensors(path: Path) -> bool:
    """A safetensors file opens with its header's length (8 bytes, little-endian) and then the
    header's JSON; a torch checkpoint opens with a zip or pickle signature."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def load_checkpoint(path: str | Path, required=("model", "model_spec", "preprocess")) -> Checkpoint:
    """Read a checkpoint; ``CheckpointError`` (naming the file) when it is damaged: unreadable,
    not a pyfer checkpoint, lacking ``required`` keys, or failing its content digest."""
    path = Path(path)
    if path.is_dir():
        inside = [p.name for p in (path / "best.pt", path / "last.pt") if p.is_file()]
        raise CheckpointError(f"{path} is a folder: give a checkpoint file"
                              + (f" in it ({' or '.join(inside)})" if inside else " (a run folder's best.pt or last.pt)"))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        safetensors = looks_like_safetensors(path)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc
    if safetensors:
        hint = ("this tool needs a training checkpoint (.pt)" if path.suffix == ".safetensors"
                else "name it *.safetensors where an export is taken (the tools know one by that suffix)")
        raise CheckpointError(f"{path} is a safetensors export, not a training checkpoint: {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # (no code runs from the file)
    except pickle.UnpicklingError as exc:
        # torch's message is many lines; the line that names the cause is kept (errors are one line)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        refused = [line for line in lines if "GLOBAL" in line]  # (a type outside the safe list, not damage)
        if not refused:
            cause = next((b for a, b in zip(lines, lines[1:]) if a.endswith("WeightsUnpickler error:")), lines[0])
            raise CheckpointError(f"checkpoint {path} is corrupt or not a pyfer checkpoint "
                                  f"(torch cannot read it: {cause})") from exc
        raise CheckpointError(f"checkpoint {path} holds objects other than tensors and plain values, which are "
                              "not loaded (loading them could run code): not a pyfer checkpoint, or one from an "
                              f"untrusted source ({refused[0]})") from exc
    except Exception as exc:  # torch raises many types for damaged files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a pyfer checkpoint: "
                              f"{str(exc).strip() or type(exc).__name__}") from exc
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: not a pyfer training checkpoint (or damaged)")
    want = state.get(DIGEST_KEY)
    if want is not None:  # checkpoints written before digests existed have none
        if state_digest(state) != want:
            raise CheckpointError(f"checkpoint {path} is corrupt: its contents do not match the digest "
                                  "written with it (damaged on disk?)")
        state = {k: v for k, v in state.items() if k != DIGEST_KEY}
    return Checkpoint(path, state)


def load_for_resume(run_dir: str | Path) -> tuple[Checkpoint, str | None]:
    """The checkpoint to resume a run from, and a note to print when it is not ``last.pt``.

    ``last.pt`` is used when it is intact. When it is corrupt (or missing while ``prev.pt``
    exists), the run resumes from ``prev.pt`` -- the previous good checkpoint, one epoch older --
    and the damaged file is moved aside to ``last.pt.corrupt`` (kept for inspection, and so that
    the next save does not rotate it into ``prev.pt``). With neither usable: ``CheckpointError`` /
    ``FileNotFoundError`` naming both files.
    """
    run_dir = Path(run_dir)
    last, prev = run_dir / "last.pt", run_dir / "prev.pt"
    try:
        return load_checkpoint(last, RESUME_KEYS), None
    except FileNotFoundError:
        if not prev.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint in {run_dir} (neither {last.name} nor {prev.name})")
        problem = f"{last} is missing"
    except CheckpointError as exc:
        if not prev.is_file():
            raise CheckpointError(f"{exc}; and there is no previous checkpoint {prev} to fall back to") from exc
        problem = str(exc)
        os.replace(last, last.with_name(last.name + ".corrupt"))
    try:
        ck = load_checkpoint(prev, RESUME_KEYS)
    except CheckpointError as exc:
        raise CheckpointError(f"{problem}; the previous checkpoint is unusable too: {exc}") from exc
    note = (f"WARNING: {problem}.\nResuming from the previous good checkpoint {prev} (epoch {ck.state['epoch'] + 1})"
            + (f"; the damaged file was kept as {last.name}.corrupt" if "missing" not in problem else "") + ".")
    return ck, note
