"""pyfer.weights_file: the checked writer and reader of weights files (the engine's loader checks
the same ``data_crc32`` and ``header_crc32``: test_loader_limits.py)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

pytest.importorskip("safetensors")
from pyfer.weights_file import DATA_CRC_KEY, HEADER_CRC_KEY, header_and_data, read_checked, save_checked  # noqa: E402


def test_arrays_round_trip_with_their_checksum_whatever_their_layout(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"w": rng.standard_normal((3, 5)).astype(np.float32).T,  # a transposed view
               "h": rng.standard_normal(7).astype(np.float16)[::2],   # a strided one
               "b": np.arange(4, dtype=np.float32)}
    stale = {DATA_CRC_KEY: "00000000", HEADER_CRC_KEY: "12345678"}  # copied from another file: replaced
    out = save_checked(tensors, tmp_path / "sub" / "m.safetensors", {"note": "x", **stale})
    back, meta = read_checked(out)
    assert back.keys() == tensors.keys()
    for k in tensors:
        np.testing.assert_array_equal(back[k], tensors[k])
    raw = out.read_bytes()
    header, data = header_and_data(raw)
    assert meta["note"] == "x" and meta[DATA_CRC_KEY] == f"{zlib.crc32(data):08x}"
    field = f'"{HEADER_CRC_KEY}":"{meta[HEADER_CRC_KEY]}"'.encode()
    unstamped = raw[:8 + len(header)].replace(field, f'"{HEADER_CRC_KEY}":"00000000"'.encode())
    assert meta[HEADER_CRC_KEY] == f"{zlib.crc32(unstamped):08x}"
    assert [p.name for p in out.parent.iterdir()] == ["m.safetensors"]  # no temporary file left


def test_a_damaged_file_or_a_malformed_checksum_is_refused_naming_the_file(tmp_path):
    out = save_checked({"b": np.arange(4, dtype=np.float32)}, tmp_path / "m.safetensors", {"note": "x"})
    raw = bytearray(out.read_bytes())
    raw[-1] ^= 1
    bad = tmp_path / "damaged.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged.safetensors: tensor data fails its checksum"):
        read_checked(bad)
    raw = out.read_bytes()
    bad.write_bytes(raw.replace(b'"note":"x"', b'"note":"y"'))  # a header byte, still valid JSON
    with pytest.raises(ValueError, match="damaged.safetensors: header fails its checksum"):
        read_checked(bad)
    from safetensors.numpy import save

    for key in (DATA_CRC_KEY, HEADER_CRC_KEY):  # one at a time: the header's is checked first, as the loader does
        bad.write_bytes(save({"b": np.arange(4, dtype=np.float32)}, metadata={key: "7B72E7D0"}))
        with pytest.raises(ValueError, match=f"{key} metadata '7B72E7D0' is not 8 lowercase hex digits"):
            read_checked(bad)
    header, data = header_and_data(raw)
    spaced = bytes(header).replace(b'"header_crc32":"', b'"header_crc32": "')
    bad.write_bytes(len(spaced).to_bytes(8, "little") + spaced + data)
    with pytest.raises(ValueError, match="header_crc32 is not in the header once"):
        read_checked(bad)
    bad.write_bytes(out.read_bytes()[:-3])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        read_checked(bad)


def test_a_failed_write_leaves_no_stray(tmp_path):
    (tmp_path / "m.safetensors").mkdir()  # the rename fails: out is a folder
    with pytest.raises(OSError):
        save_checked({"b": np.zeros(2, np.float32)}, tmp_path / "m.safetensors", {})
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_the_header_checksum_field_must_be_there_once():
    """A header with the field twice (a second copy as a key of another object) is refused by the
    Python reader, as the engine refuses it: which copy is checked would be ambiguous."""
    from pyfer.weights_file import header_crc32

    header = b'{"__metadata__":{"header_crc32":"00000000"},"x":{"header_crc32":"00000000"}}'
    blob = len(header).to_bytes(8, "little") + header
    with pytest.raises(ValueError, match="not in the header once"):
        header_crc32(blob)
    once = b'{"__metadata__":{"header_crc32":"00000000"}}'
    at, _ = header_crc32(len(once).to_bytes(8, "little") + once)
    assert once[at - 8:at - 8 + 8] == b"00000000"
