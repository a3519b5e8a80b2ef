"""pyfer.weights_file: the checked writer and reader of weights files (the engine's loader checks
the same ``data_crc32``: test_loader_limits.py)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

pytest.importorskip("safetensors")
from pyfer.weights_file import CHECKSUM_KEY, data_section, read_checked, save_checked  # noqa: E402


def test_arrays_round_trip_with_their_checksum_whatever_their_layout(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"w": rng.standard_normal((3, 5)).astype(np.float32).T,  # a transposed view
               "h": rng.standard_normal(7).astype(np.float16)[::2],   # a strided one
               "b": np.arange(4, dtype=np.float32)}
    out = save_checked(tensors, tmp_path / "sub" / "m.safetensors", {"note": "x", CHECKSUM_KEY: "00000000"})
    back, meta = read_checked(out)
    assert back.keys() == tensors.keys()
    for k in tensors:
        np.testing.assert_array_equal(back[k], tensors[k])
    assert meta["note"] == "x" and meta[CHECKSUM_KEY] == f"{zlib.crc32(data_section(out.read_bytes())):08x}"
    assert [p.name for p in out.parent.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_a_damaged_file_or_a_malformed_checksum_is_refused_naming_the_file(tmp_path):
    out = save_checked({"b": np.arange(4, dtype=np.float32)}, tmp_path / "m.safetensors", {})
    raw = bytearray(out.read_bytes())
    raw[-1] ^= 1
    bad = tmp_path / "damaged.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged.safetensors: tensor data fails its checksum"):
        read_checked(bad)
    crc = out.read_bytes().split(CHECKSUM_KEY.encode())[1][3:11]
    bad.write_bytes(out.read_bytes().replace(crc, crc.upper() if crc.upper() != crc else b"zzzzzzzz"))
    with pytest.raises(ValueError, match="is not 8 lowercase hex digits"):
        read_checked(bad)
    bad.write_bytes(out.read_bytes()[:-3])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_checked(bad)


def test_a_failed_write_leaves_no_stray(tmp_path):
    (tmp_path / "m.safetensors").mkdir()  # the rename fails: out is a folder
    with pytest.raises(OSError):
        save_checked({"b": np.zeros(2, np.float32)}, tmp_path / "m.safetensors", {})
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
