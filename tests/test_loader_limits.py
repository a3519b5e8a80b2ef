"""Limits on what a crafted weights file can make the loader do (session 32's audit): each case
is refused with a ValueError that names the file and says why, where before it loaded wrongly,
cost memory out of proportion, or hung.

* a shape whose product wraps past 2^64 (accepted as a small tensor before);
* a tensor of more than 8 dimensions, a header of more than 2^18 JSON values (5M dimensions cost
  790 MB to parse before), a header over 16 MiB;
* a network description whose activation maps need gigabytes per image (a 395 KB file asked for
  8.7 GB);
* a FIFO given as the weights path (open() waited for a writer, forever, holding the GIL);
* YuNet metadata that is not JSON (the error did not name the file).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from test_loader_fuzz import DATA, HEADER, META, NAMES, REPO, build

pyfer = pytest.importorskip("pyfer")
_engine = pytest.importorskip("pyfer._engine")


def refused(path, *, why: str, loader=None):
    with pytest.raises(ValueError) as e:
        (loader or (lambda p: pyfer.Engine(p, threads=1)))(str(path))
    assert path.name in str(e.value) and why in str(e.value), str(e.value)


def with_shape(shape, offsets) -> dict:
    h = dict(HEADER)
    h[NAMES[0]] = dict(h[NAMES[0]], shape=shape, data_offsets=offsets)
    return h


@pytest.mark.parametrize("shape", [[1 << 32, 1 << 32], [2, 27, 19, 43, 5419, 77158673929]])  # 2^64, 2^64 + 2
def test_a_shape_whose_size_wraps_is_refused_as_too_large(tmp_path, shape):
    p = tmp_path / "wrap.safetensors"
    p.write_bytes(build(with_shape(shape, [0, 8])))
    refused(p, why="is too large")


def test_more_than_eight_dimensions_are_refused(tmp_path):
    p = tmp_path / "rank.safetensors"
    p.write_bytes(build(with_shape([1] * 9, [0, 4])))
    refused(p, why="more than 8 dimensions")


def test_a_header_of_too_many_values_is_refused_before_it_costs_memory(tmp_path):
    p = tmp_path / "values.safetensors"
    p.write_bytes(build(with_shape([1] * 300_000, [0, 4])))
    refused(p, why="too many values")


def test_a_header_over_16_mib_is_refused(tmp_path):
    h = dict(HEADER, __metadata__=dict(HEADER["__metadata__"], padding="x" * (17 << 20)))
    p = tmp_path / "big_header.safetensors"
    p.write_bytes(build(h))
    refused(p, why="header length")


def test_a_network_whose_maps_pass_the_limit_is_refused(tmp_path):
    """The shipped student's description at a 1024-px input: its stem map alone holds 25M floats
    per image (the limit is 2^23; the helper's crafted 8192-channel stem asked for 2.2G)."""
    meta = dict(META, preprocess=dict(META["preprocess"], input_size=1024))
    h = dict(HEADER, __metadata__=dict(HEADER["__metadata__"], pyfer=json.dumps(meta)))
    p = tmp_path / "bomb.safetensors"
    p.write_bytes(build(h, DATA))
    refused(p, why="largest activation map")


def test_the_shipped_student_is_far_below_the_map_limit():
    eng = pyfer.Engine(REPO / "pyfer" / "models" / "tsnet_student.safetensors", threads=1)
    assert eng.forward(np.zeros((1, *eng.input_shape), np.float32)).shape == (1, 8)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_weights_is_refused_at_once(tmp_path):
    """In a child process with a timeout: a regression would hang, not fail."""
    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)
    code = ("import pyfer\ntry:\n    pyfer.Engine(%r)\nexcept ValueError as e:\n    print('refused:', e)\n" % str(fifo))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "refused:" in out.stdout and "not a regular file" in out.stdout, out


def test_yunet_metadata_that_is_not_json_names_the_file(tmp_path):
    raw = (REPO / "pyfer" / "models" / "yunet.safetensors").read_bytes()
    hlen = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + hlen])
    header["__metadata__"]["yunet"] = "{not json"
    p = tmp_path / "yunet_bad.safetensors"
    p.write_bytes(build(header, raw[8 + hlen:]))
    refused(p, why="'yunet' metadata is not valid JSON", loader=_engine.YuNet)
