"""Weights files with a checksum the engine's loader checks: the one writer and reader of them.

Every model file the project writes goes through :func:`save_checked` (``training.export``,
``training.pretrained``, ``scripts/yunet_to_safetensors.py``, the feature-KD and tau-norm copies)
and carries two CRC-32s (as :func:`zlib.crc32` computes them, 8 lowercase hex digits) in its
safetensors metadata:

* ``data_crc32``, of the data section (the bytes after the header);
* ``header_crc32``, of the 8-byte length and the JSON header, read with its own value as
  ``00000000`` (a checksum cannot cover its own digits). The writer finds the value as the one
  ``"header_crc32":"`` in the compact JSON safetensors writes; so does the loader.

The loader (csrc/core/safetensors.cpp) recomputes both and refuses a file that disagrees: a file
rewritten in place while it loads reads as a mix of two files, which size and modification-time
checks miss. Files without a key load without that check. The training tools read through
:func:`read_checked`.

Needs the ``safetensors`` package (the ``train`` and ``test`` extras); the engine does not.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Union

import numpy as np

from pyfer.atomic import atomic_write, make_folders

DATA_CRC_KEY = "data_crc32"
HEADER_CRC_KEY = "header_crc32"
CHECKSUM_KEYS = (DATA_CRC_KEY, HEADER_CRC_KEY)
_HEADER_CRC_FIELD = f'"{HEADER_CRC_KEY}":"'.encode()
_UNSTAMPED = b"00000000"
# the end of the refusal, in the engine's loader too (csrc/core/safetensors.cpp)
STALE_CHECKSUM_HINT = ("re-saved by another writer that kept the old checksum (safetensors' save_file writes the "
                       "metadata in another order each run): write it with pyfer.weights_file.save_checked, or "
                       "delete data_crc32 and header_crc32 to load it unchecked")


def header_and_data(blob: Union[bytes, bytearray]) -> tuple[memoryview, memoryview]:
    """A safetensors file's JSON header and its data section (the bytes after the header)."""
    end = 8 + int.from_bytes(blob[:8], "little")
    return memoryview(blob)[8:end], memoryview(blob)[end:]


def data_section(blob: Union[bytes, bytearray]) -> memoryview:
    return header_and_data(blob)[1]


def header_crc32(blob: Union[bytes, bytearray]) -> tuple[int, int]:
    """Where ``header_crc32``'s 8 digits start in ``blob``, and the CRC-32 of the length and
    header with those digits read as ``00000000``. ValueError unless the field is there once."""
    header = bytes(header_and_data(blob)[0])
    found = header.find(_HEADER_CRC_FIELD)
    at = 8 + found + len(_HEADER_CRC_FIELD)
    end = 8 + len(header)
    if found < 0 or at + 8 > end or header.find(_HEADER_CRC_FIELD, found + 1) >= 0:
        raise ValueError(f"{HEADER_CRC_KEY} is not in the header once, as compact JSON writes it")
    return at, zlib.crc32(blob[at + 8:end], zlib.crc32(_UNSTAMPED, zlib.crc32(blob[:at])))


def _is_crc_hex(value: str) -> bool:
    return len(value) == 8 and all(c in "0123456789abcdef" for c in value)


def _check(path, what: str, key: str, expected: str, compute) -> None:
    """Worded as the engine's loader words it, in the same order (csrc/core/safetensors.cpp)."""
    if not _is_crc_hex(expected):
        raise ValueError(f"{path}: {key} metadata '{expected}' is not 8 lowercase hex digits")
    try:
        got = f"{compute():08x}"
    except ValueError as exc:  # header_crc32's field is not there once
        raise ValueError(f"{path}: {exc}") from None
    if got != expected:
        raise ValueError(f"{path}: {what} fails its checksum ({key} {expected}, read {got}): the file is damaged, "
                         f"was rewritten while it loaded, or was {STALE_CHECKSUM_HINT}")


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
    if HEADER_CRC_KEY in meta:
        _check(path, "header", HEADER_CRC_KEY, meta[HEADER_CRC_KEY], lambda: header_crc32(blob)[1])
    if DATA_CRC_KEY in meta:
        _check(path, "tensor data", DATA_CRC_KEY, meta[DATA_CRC_KEY], lambda: zlib.crc32(data))
    return tensors, meta


def save_checked(tensors: dict[str, np.ndarray], out: str | Path, metadata: dict[str, str]) -> Path:
    """Write ``tensors`` with ``metadata`` plus ``data_crc32`` and ``header_crc32`` to ``out``,
    atomically (a temporary file of its own renamed over ``out``, so that a reader never sees a
    half-written file, nor one writer's bytes under another's name; ``pyfer.atomic.atomic_write``:
    a new file gets the umask's permissions, a replaced one keeps its own). Checksums in ``metadata``
    (copied from the file an edited copy comes from) are replaced."""
    from safetensors.numpy import save

    metadata = {k: v for k, v in metadata.items() if k not in CHECKSUM_KEYS}
    # safetensors copies each array's memory as it lies: a transposed view would be written scrambled
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    # The data section's layout depends on the tensors alone, so the checksum of a first
    # serialization is the checksum of the final one (checked below).
    section = bytes(data_section(save(tensors)))
    blob = bytearray(save(tensors, metadata={**metadata, DATA_CRC_KEY: f"{zlib.crc32(section):08x}",
                                             HEADER_CRC_KEY: _UNSTAMPED.decode()}))
    if data_section(blob) != section:
        raise RuntimeError("safetensors laid out the data differently with metadata: the checksum would be wrong")
    at, crc = header_crc32(blob)  # the same length either way: the digits go in over the zeros
    blob[at:at + 8] = f"{crc:08x}".encode()
    out = Path(out)
    make_folders(out.parent)
    with atomic_write(out, binary=True) as f:
        f.write(blob)
    return out
