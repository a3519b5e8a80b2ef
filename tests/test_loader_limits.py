"""What session 32's audit of the loaders found. Limits on what a crafted weights file can make
the loader do: each case is refused with a ValueError that names the file and says why, where
before it loaded wrongly, cost memory out of proportion, or hung.

* a shape whose product wraps past 2^64 (accepted as a small tensor before);
* a tensor of more than 8 dimensions, a header of more than 2^18 JSON values (5M dimensions cost
  790 MB to parse before), a header over 16 MiB;
* a network description whose activation maps need gigabytes per image (a 395 KB file asked for
  8.7 GB);
* a FIFO given as the weights path (open() waited for a writer, forever, holding the GIL);
* a weights file truncated by another process while it loaded (the mapped file killed the app
  with SIGBUS; session 33 reads it instead), and a file over 1 GiB;
* a file rewritten in place, at the same size, while it loaded (a mix of the two files loaded;
  session 34 checks the data checksum that exports carry, session 35 the header checksum), and a
  damaged data or header byte;
* YuNet metadata that is not JSON (the error did not name the file).

And what must still load: numbers strtod reads as out of range (inf, subnormals), the student at
the largest input preprocessing allows, and any model under a comma-decimal LC_NUMERIC.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib

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


def with_meta(meta: dict) -> dict:
    return dict(HEADER, __metadata__=dict(HEADER["__metadata__"], pyfer=json.dumps(meta)))


def test_a_network_whose_maps_pass_the_limit_is_refused(tmp_path):
    """The student's description with an 8192-channel stem at 1024 px: 8.6G floats in one map
    per image (the limit is 2^26; the weights are never read)."""
    net = dict(META["network"], stem=dict(META["network"]["stem"], cout=8192))
    net["blocks"] = [dict(net["blocks"][0], cin=8192)] + net["blocks"][1:]
    meta = dict(META, network=net, preprocess=dict(META["preprocess"], input_size=1024))
    p = tmp_path / "bomb.safetensors"
    p.write_bytes(build(with_meta(meta)))
    refused(p, why="largest activation map")


def test_the_student_loads_at_the_largest_input_preprocessing_allows(tmp_path):
    """1024 px (PreprocessSpec's limit): 25M floats in its stem map, under the limit."""
    p = tmp_path / "student_1024.safetensors"
    p.write_bytes(build(with_meta(dict(META, preprocess=dict(META["preprocess"], input_size=1024)))))
    assert pyfer.Engine(p, threads=1).input_shape == (1, 1024, 1024)


def test_numbers_out_of_double_range_still_load(tmp_path):
    """Grammar-valid JSON numbers that strtod reads as inf, 0 or subnormal, anywhere in the
    metadata (such as a training config), must not refuse the model."""
    text = json.dumps(META)[:-1] + ', "odd": [1e309, -1e309, 1e-400, 1e-310, 5e-324, 2.225073858507201e-308]}'
    p = tmp_path / "odd_numbers.safetensors"
    p.write_bytes(build(dict(HEADER, __metadata__=dict(HEADER["__metadata__"], pyfer=text))))
    assert pyfer.Engine(p, threads=1).num_classes == 8


def test_weights_load_the_same_under_a_comma_decimal_locale(tmp_path):
    """An application may set LC_NUMERIC to a locale that writes 0,5 (GTK's init does, from the
    environment); the metadata's numbers ("mean": 0.5) must still read as JSON numbers. Builds a
    de_DE locale with localedef; under CI a missing one fails rather than skips."""
    import shutil

    made = None
    if shutil.which("localedef"):
        made = subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(tmp_path / "de_DE.UTF-8")],
                              capture_output=True, text=True)
    if not (tmp_path / "de_DE.UTF-8").exists():
        why = f"could not build a de_DE locale with localedef: {made.stderr[-300:] if made else 'not found'}"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)
    weights = REPO / "pyfer" / "models" / "tsnet_student.safetensors"
    code = ("import locale, sys, numpy as np, pyfer\n"
            "locale.setlocale(locale.LC_NUMERIC, 'de_DE.UTF-8')\n"
            "assert locale.localeconv()['decimal_point'] == ',', locale.localeconv()['decimal_point']\n"
            f"eng = pyfer.Engine({str(weights)!r}, threads=1)\n"
            "x = np.random.default_rng(0).standard_normal((1, *eng.input_shape)).astype(np.float32)\n"
            "np.save(sys.argv[1], eng.forward(x))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "de.npy")], capture_output=True, text=True,
                         env=dict(os.environ, LOCPATH=str(tmp_path)), timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    eng = pyfer.Engine(weights, threads=1)
    x = np.random.default_rng(0).standard_normal((1, *eng.input_shape)).astype(np.float32)
    np.testing.assert_array_equal(np.load(tmp_path / "de.npy"), eng.forward(x))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_as_weights_is_refused_at_once(tmp_path):
    """In a child process with a timeout: a regression would hang, not fail."""
    fifo = tmp_path / "weights.safetensors"
    os.mkfifo(fifo)
    code = ("import pyfer\ntry:\n    pyfer.Engine(%r)\nexcept ValueError as e:\n    print('refused:', e)\n" % str(fifo))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "refused:" in out.stdout and "not a regular file" in out.stdout, out


def test_a_file_rewritten_during_loads_is_loaded_or_refused_never_a_crash(tmp_path):
    """A child loads the student (5 MB; the file ships in the wheel) 300 times while this process
    truncates it to 4 KB and writes it back, over and over. Each load must load or raise
    ValueError: a memory-mapped read of a page truncated away is SIGBUS, which kills the child."""
    raw = (REPO / "pyfer" / "models" / "tsnet_student.safetensors").read_bytes()
    p = tmp_path / "rewritten.safetensors"
    p.write_bytes(raw)
    code = ("import pyfer\nloaded = refused = 0\nfor _ in range(300):\n"
            "    try:\n        pyfer.Engine(%r, threads=1); loaded += 1\n"
            "    except ValueError:\n        refused += 1\nprint(loaded, refused)\n" % str(p))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while child.poll() is None and time.monotonic() < deadline:
            with open(p, "r+b") as f:
                f.truncate(4096)
            with open(p, "r+b") as f:
                f.write(raw)
            time.sleep(0.001)  # leave the child some of the CPU
        out, err = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 0, (child.returncode, err[-2000:])
    loaded, refused = map(int, out.split())
    assert loaded + refused == 300 and refused > 0, out  # refused > 0: the race was met


def stamped(header: dict, data: bytes, crc: int | None = None, *, header_crc: bool = True) -> bytes:
    """A file with ``data`` under ``header``, whose metadata carries ``data_crc32`` (the data's
    CRC-32, or ``crc``) and, unless not ``header_crc``, ``header_crc32``. Built by hand, byte for
    byte, so that two files differ only where meant; the same keys as pyfer/weights_file.py writes,
    computed apart from it: the header's CRC-32 with its own digits read as zeros."""
    h = dict(header, __metadata__=dict(header["__metadata__"]))
    h["__metadata__"]["data_crc32"] = f"{zlib.crc32(data) if crc is None else crc:08x}"
    if not header_crc:
        return build(h, data)
    h["__metadata__"]["header_crc32"] = "00000000"
    raw = build(json.dumps(h, separators=(",", ":")).encode(), data)
    end = 8 + struct.unpack("<Q", raw[:8])[0]
    return raw.replace(b'"header_crc32":"00000000"', b'"header_crc32":"%08x"' % zlib.crc32(raw[:end]), 1)


def test_the_shipped_weights_carry_checksums_of_their_header_and_data():
    for name in ("tsnet_student.safetensors", "yunet.safetensors"):
        raw = (REPO / "pyfer" / "models" / name).read_bytes()
        hlen = struct.unpack("<Q", raw[:8])[0]
        meta = json.loads(raw[8:8 + hlen])["__metadata__"]
        assert meta.get("data_crc32") == f"{zlib.crc32(raw[8 + hlen:]):08x}", name
        field = b'"header_crc32":"%s"' % meta["header_crc32"].encode()
        unstamped = raw[:8 + hlen].replace(field, b'"header_crc32":"00000000"')
        assert meta["header_crc32"] == f"{zlib.crc32(unstamped):08x}", name


def test_a_damaged_data_byte_is_refused_by_the_checksum(tmp_path):
    header = with_meta(META)
    p = tmp_path / "good.safetensors"
    p.write_bytes(stamped(header, DATA))
    pyfer.Engine(str(p), threads=1)
    for at in (0, len(DATA) // 2, len(DATA) - 1):  # first, middle and last byte (the crc's tail loop)
        damaged = bytearray(DATA)
        damaged[at] ^= 0x10
        p = tmp_path / f"flip{at}.safetensors"
        p.write_bytes(stamped(header, bytes(damaged), crc=zlib.crc32(DATA)))
        refused(p, why="fails its checksum")
    p = tmp_path / "unchecked.safetensors"
    p.write_bytes(build(header, bytes(damaged)))  # without the key a file loads unchecked
    pyfer.Engine(str(p), threads=1)
    for bad in ("7B72E7D0", "7b72e7d", "0x7b72e7", "7b72e7d0 ", "7b72e7g0"):
        h = dict(header, __metadata__=dict(header["__metadata__"], data_crc32=bad))
        p = tmp_path / "badkey.safetensors"
        p.write_bytes(build(h, DATA))
        refused(p, why="is not 8 lowercase hex digits")


def test_a_damaged_header_byte_is_refused_by_the_header_checksum(tmp_path):
    header = with_meta(META)
    good = stamped(header, DATA)
    p = tmp_path / "good.safetensors"
    p.write_bytes(good)
    assert pyfer.Engine(str(p), threads=1).class_names == META["class_names"]
    hlen = struct.unpack("<Q", good[:8])[0]
    name = META["class_names"][0].encode()
    # a letter of a class name (the JSON stays valid), a digit of each checksum, the header's last byte
    for at in (good.index(name), good.index(b'"data_crc32":"') + 14, good.index(b'"header_crc32":"') + 16,
               8 + hlen - 1):
        damaged = bytearray(good)
        damaged[at] = ord("0") if damaged[at] != ord("0") else ord("1")
        p = tmp_path / f"flip{at}.safetensors"
        p.write_bytes(bytes(damaged))
        refused(p, why="header fails its checksum" if at < 8 + hlen - 1 else "corrupt header")
    # what a copy edited or re-saved by another writer gets: the way out
    refused(tmp_path / f"flip{good.index(name)}.safetensors",
            why="write it with pyfer.weights_file.save_checked, or delete data_crc32 and header_crc32")
    # the key must be where the loader looks for it: once, in compact JSON
    for label, key in (("spaced", b'"header_crc32": "'), ("escaped", b'"header\\u005fcrc32":"'),
                       ("twice", b'"header_crc32":"00000000","header_crc32":"')):
        h = good[8:8 + hlen].replace(b'"header_crc32":"', key, 1)
        p = tmp_path / f"{label}.safetensors"
        p.write_bytes(struct.pack("<Q", len(h)) + h + good[8 + hlen:])
        refused(p, why="header_crc32 is not in the header once")


def loads_while_rewritten_in_place(tmp_path, files: dict[str, bytes], probe: str) -> dict[str, int]:
    """A child loads a file while this process rewrites it in place, nonstop, with ``files["a"]``
    and ``files["b"]`` in turn (the same size: the same inode, no truncation): 300 times, and on
    until a checksum has refused one (the race is met at random; at most 20,000 loads or 90 s: on
    a Zen 3 VM the modification-time check refused nearly every raced load, and 2,000 loads once
    passed with no checksum refusal among them).
    ``probe`` is an expression of the loaded Engine ``e`` that tells the two files apart. Returns
    how many loads gave file a, file b, neither (``mixed``), or a refusal, and how many refusals
    named a failed checksum."""
    assert len(files["a"]) == len(files["b"])
    for k, raw in files.items():
        (tmp_path / f"{k}.safetensors").write_bytes(raw)
    p = tmp_path / "rewritten.safetensors"
    p.write_bytes(files["a"])
    code = f"""
import time, numpy as np, pyfer
x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 64, 64)).astype(np.float32)
probe = lambda e: {probe}
want = {{probe(pyfer.Engine({str(tmp_path)!r} + f"/{{k}}.safetensors", threads=1)): k for k in "ab"}}
assert len(want) == 2, "the probe does not tell the files apart"
counts = dict(a=0, b=0, mixed=0, refused=0, by_checksum=0)
start = time.monotonic()
for n in range(20000):
    if n >= 300 and (counts["by_checksum"] or time.monotonic() - start > 90):
        break
    try:
        got = probe(pyfer.Engine({str(p)!r}, threads=1))
    except ValueError as e:
        counts["refused"] += 1
        counts["by_checksum"] += "fails its checksum" in str(e)
        continue
    counts[want.get(got, "mixed")] += 1
print(*counts.values())
"""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    try:
        turn = 0
        while child.poll() is None and time.monotonic() < deadline:
            turn ^= 1
            with open(p, "r+b") as f:
                f.write(files["ab"[turn]])
            time.sleep(0.001)  # leave the child some of the CPU
        out, err = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 0, (child.returncode, err[-2000:])
    counts = dict(zip(("a", "b", "mixed", "refused", "by_checksum"), map(int, out.split())))
    assert sum(counts.values()) - counts["by_checksum"] >= 300, out
    return counts


def test_a_file_rewritten_in_place_loads_as_one_file_or_is_refused(tmp_path):
    """The student and a copy with every weight halved, told apart by their logits. Without the
    checksums, 20-74 of 300 loads gave logits equal to neither file (3 runs, session 34: size and
    modification-time checks miss a write that began before the read)."""
    header = with_meta(META)
    halved = (np.frombuffer(DATA, np.float32) * np.float32(0.5)).tobytes()  # the student is all F32
    counts = loads_while_rewritten_in_place(
        tmp_path, {"a": stamped(header, DATA), "b": stamped(header, halved)}, "e.forward(x).tobytes()")
    assert counts["mixed"] == 0, counts
    assert counts["by_checksum"] > 0, counts  # the race was met where only the checksum sees it


def test_a_header_rewritten_in_place_loads_as_one_file_or_is_refused(tmp_path):
    """Two files of the same tensors whose headers differ only in an 8 MB metadata note, all "a"
    in one and all "b" in the other, told apart by the note (a big header, so that the race is met
    often). Without the header checksum, 10-21 loads of 300 read a note of both letters (3 runs,
    session 35), which the data checksum cannot see; with it none did, and 9-29 were refused."""
    files = {k: stamped(with_meta(dict(META, note=k * (8 << 20))), DATA) for k in "ab"}
    counts = loads_while_rewritten_in_place(tmp_path, files, 'e.metadata["note"]')
    assert counts["mixed"] == 0, counts
    assert counts["by_checksum"] > 0, counts


def test_a_file_over_1_gib_is_refused_before_it_is_read(tmp_path):
    p = tmp_path / "huge.safetensors"
    with open(p, "wb") as f:
        f.write(build(HEADER))
        f.truncate((1 << 30) + 1)  # sparse: no disk used
    refused(p, why="larger than the 1024 MiB")


def test_yunet_metadata_that_is_not_json_names_the_file(tmp_path):
    raw = (REPO / "pyfer" / "models" / "yunet.safetensors").read_bytes()
    hlen = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + hlen])
    header["__metadata__"]["yunet"] = "{not json"
    header["__metadata__"].pop("header_crc32")  # edited: the header's checksum would refuse it first
    p = tmp_path / "yunet_bad.safetensors"
    p.write_bytes(build(header, raw[8 + hlen:]))
    refused(p, why="'yunet' metadata is not valid JSON", loader=_engine.YuNet)
