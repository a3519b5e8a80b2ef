"""Weights files with a checksum the engine's loader checks: the one writer and reader of them.

Every model file the project writes goes through :func:`save_checked` (``training.export``,
``training.pretrained``, ``scripts/yunet_to_safetensors.py``, the feature-KD and tau-norm copies)
and carries ``data_crc32`` in its safetensors metadata: the CRC-32 (as :func:`zlib.crc32` computes it, 8
lowercase hex digits) of the data section, the bytes after the header. The loader
(csrc/core/safetensors.cpp) recomputes it and refuses a file that disagrees: a file rewritten in
place while it loads reads as a mix of two files, which size and modification-time checks miss.
Files without the key load unchecked. The training tools read through :func:`read_checked`.

Needs the ``safetensors`` package (the ``train`` and ``test`` extras); the engine does not.
"""
from __future__ import annotations

import json
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

CHECKSUM_KEY = "data_crc32"


def header_and_data(blob: bytes) -> tuple[memoryview, memoryview]:
    """A safetensors file's JSON header and its data section (the bytes after the header)."""
    end = 8 + int.from_bytes(blob[:8], "little")
    return memoryview(blob)[8:end], memoryview(blob)[end:]


def data_section(blob: bytes) -> memoryview:
    return header_and_data(blob)[1]


def read_checked(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a safetensors file, read once and checked as the engine checks
    them. ValueError, naming the file, when it is not safetensors or fails its checksum."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if not Path(path).is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    blob = Path(path).read_bytes()
    try:
        tensors = load(blob)
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a readable safetensors file (damaged or cut short?): {exc}") from exc
    except KeyError as exc:  # a dtype numpy lacks (BF16)
        raise ValueError(f"{path} holds tensors of dtype {exc}, which numpy cannot hold") from exc
    header, data = header_and_data(blob)
    meta = json.loads(bytes(header)).get("__metadata__") or {}
    # worded as the engine's loader words it (csrc/core/safetensors.cpp)
    expected = meta.get(CHECKSUM_KEY)
    if expected is None:
        return tensors, meta
    if len(expected) != 8 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"{path}: {CHECKSUM_KEY} metadata '{expected}' is not 8 lowercase hex digits")
    got = f"{zlib.crc32(data):08x}"
    if expected != got:
        raise ValueError(f"{path}: tensor data fails its checksum ({CHECKSUM_KEY} {expected}, read {got}): the "
                         "file is damaged, or was rewritten while it loaded")
    return tensors, meta


def save_checked(tensors: dict[str, np.ndarray], out: str | Path, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` with ``metadata`` plus ``data_crc32`` to ``out``, atomically (a temporary
    file of its own renamed over ``out``, so that a reader never sees a half-written file, nor one
    writer's bytes under another's name). A ``data_crc32`` in ``metadata`` (copied from the file an
    edited copy comes from) is replaced."""
    from safetensors.numpy import save

    metadata = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    # safetensors copies each array's memory as it lies: a transposed view would be written scrambled
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    # The data section's layout depends on the tensors alone, so the checksum of a first
    # serialization is the checksum of the final one (checked below).
    section = bytes(data_section(save(tensors)))
    blob = save(tensors, metadata={**metadata, CHECKSUM_KEY: f"{zlib.crc32(section):08x}"})
    if data_section(blob) != section:
        raise RuntimeError("safetensors laid out the data differently with metadata: the checksum would be wrong")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a model is read by other users too
        os.replace(tmp, out)
    finally:  # a failed write (out is a folder, the disk is full) leaves no stray behind
        Path(tmp).unlink(missing_ok=True)
    return out
