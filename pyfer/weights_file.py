"""Writing weights files that the engine's loader can check.

Every file the project writes (``training.export``, ``scripts/yunet_to_safetensors.py``) carries
``data_crc32`` in its safetensors metadata: the CRC-32 (as :func:`zlib.crc32` computes it, 8
lowercase hex digits) of the data section, the bytes after the header. The loader
(csrc/core/safetensors.cpp) recomputes it and refuses a file that disagrees: a file rewritten in
place while it loads reads as a mix of two files, which size and modification-time checks miss.
Files without the key load unchecked.

Needs the ``safetensors`` package (the ``train`` and ``test`` extras); the engine does not.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

CHECKSUM_KEY = "data_crc32"


def data_section(blob: bytes) -> memoryview:
    """The bytes after a safetensors file's 8-byte length and JSON header."""
    header_len = int.from_bytes(blob[:8], "little")
    return memoryview(blob)[8 + header_len:]


def read_checked(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a safetensors file, read once and checked as the engine checks
    them. ValueError, naming the file, when it is not safetensors or fails its checksum."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    blob = Path(path).read_bytes()
    try:
        tensors = load(blob)
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a readable safetensors file (damaged or cut short?): {exc}") from exc
    meta = json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")]).get("__metadata__") or {}
    expected, got = meta.get(CHECKSUM_KEY), f"{zlib.crc32(data_section(blob)):08x}"
    if expected is not None and expected != got:  # worded as the engine's loader words it
        raise ValueError(f"{path}: tensor data fails its checksum ({CHECKSUM_KEY} {expected}, read {got}): the "
                         "file is damaged, or was rewritten while it loaded")
    return tensors, meta


def save_checked(tensors: dict[str, np.ndarray], out: str | Path, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` with ``metadata`` plus ``data_crc32`` to ``out``, atomically (a temporary
    file renamed over ``out``, so that a reader never sees a half-written file). A ``data_crc32``
    in ``metadata`` (copied from the file an edited copy comes from) is replaced."""
    from safetensors.numpy import save

    metadata = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    # The data section's layout depends on the tensors alone, so the checksum of a first
    # serialization is the checksum of the final one (checked below).
    section = bytes(data_section(save(tensors)))
    blob = save(tensors, metadata={**metadata, CHECKSUM_KEY: f"{zlib.crc32(section):08x}"})
    if data_section(blob) != section:
        raise RuntimeError("safetensors laid out the data differently with metadata: the checksum would be wrong")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        tmp.write_bytes(blob)
        tmp.replace(out)
    finally:  # a failed write (out is a folder, the disk is full) leaves no stray behind
        tmp.unlink(missing_ok=True)
    return out
