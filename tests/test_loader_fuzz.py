"""Weight-loader fuzzing: mutated copies of the shipped ``.safetensors`` export.

Every mutated file must either load into a working engine (a harmless mutation, e.g. a changed
class name or input size) or raise ``ValueError`` whose message names the file. Anything else
(another exception type, a crash of the interpreter, an out-of-bounds read under
``scripts/sanitize.sh``) is a bug. Faults injected:

* truncation at every section boundary of the real file (8-byte length, header end, the start and
  end of every tensor) and one byte either side of each;
* random byte flips in the length prefix and JSON header (hypothesis);
* absurd header lengths and data offsets (huge, negative, fractional, reversed, overlapping, past EOF);
* wrong dtypes and shapes for any tensor; a missing, renamed or extra tensor;
* wrong architecture (a student file labelled as the teacher and the teacher as a student), bad
  ``pyfer`` metadata (arch, stem, num_classes, in_channels, input_size, class_names, version);
* random file bytes, and random bytes behind a plausible length prefix.

Counts: see RELIABILITY.md (``max_examples`` below; ``PYFER_FUZZ_SCALE=10`` multiplies them).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("pyfer._engine")
import pyfer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STUDENT = REPO / "pyfer" / "models" / "tsnet_student.safetensors"
TEACHER = REPO / "models" / "teacher_effresnet18_fp16.safetensors"
SCALE = float(os.environ.get("PYFER_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=max(5, int(60 * SCALE)), deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

if not STUDENT.is_file():  # pragma: no cover
    pytest.skip(f"shipped weights missing at {STUDENT}", allow_module_level=True)


def split(path: Path) -> tuple[int, dict, bytes, bytes]:
    raw = path.read_bytes()
    hlen = struct.unpack("<Q", raw[:8])[0]
    return hlen, json.loads(raw[8:8 + hlen]), raw[8 + hlen:], raw


HLEN, HEADER, DATA, RAW = split(STUDENT)
# The cases below edit the header, data and offsets to reach the checks past the checksums, which
# would refuse them all first: they build files without them (test_loader_limits tests them).
HEADER["__metadata__"].pop("data_crc32")
HEADER["__metadata__"].pop("header_crc32")
NAMES = sorted(k for k in HEADER if k != "__metadata__")
META = json.loads(HEADER["__metadata__"]["pyfer"])


def build(header, data: bytes = DATA, hlen: int | None = None) -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def check(path: Path, forward: bool = True):
    """Load ``path``: a working engine or a ValueError naming the file. Returns 'ok' or 'error'."""
    try:
        eng = pyfer.Engine(path, threads=1)
    except ValueError as e:
        msg = str(e)
        assert path.name in msg, f"error does not name the file: {msg}"
        assert len(msg) < 2000, "error message is unreadably long"
        return "error"
    c, h, w = eng.input_shape
    assert eng.num_classes >= 2 and len(eng.class_names) == eng.num_classes
    if forward and h <= 96:
        y = eng.forward(np.zeros((2, c, h, w), np.float32))
        assert y.shape == (2, eng.num_classes) and y.dtype == np.float32
    return "ok"


def with_meta(header: dict, **changes) -> dict:
    m = dict(META)
    for k, v in changes.items():
        if v is _DROP:
            m.pop(k, None)
        else:
            m[k] = v
    h = dict(header)
    h["__metadata__"] = {"pyfer": json.dumps(m)}
    return h


_DROP = object()


# -- truncation at every section boundary ------------------------------------------------------
def boundaries() -> list[int]:
    cuts = {0, 1, 7, 8, 9, 8 + HLEN // 2, 8 + HLEN - 1, 8 + HLEN, 8 + HLEN + 1}
    for name in NAMES:
        b, e = HEADER[name]["data_offsets"]
        for off in (b, e):
            cuts.update({8 + HLEN + off - 1, 8 + HLEN + off, 8 + HLEN + off + 1})
    return sorted(c for c in cuts if 0 <= c < len(RAW))


def test_truncated_at_every_section_boundary(tmp_path):
    cuts = boundaries()
    assert len(cuts) > 3 * len(NAMES)  # every tensor's start and end, +-1
    p = tmp_path / "truncated.safetensors"
    p.write_bytes(RAW)
    outcomes = {}
    for cut in sorted(cuts, reverse=True):  # shrink one file in place: no 5 MB rewrite per case
        os.truncate(p, cut)
        outcomes[cut] = check(p, forward=False)
    assert set(outcomes.values()) == {"error"}, [c for c, o in outcomes.items() if o != "error"]
    os.truncate(p, 0)
    with pytest.raises(ValueError, match="too short"):
        pyfer.Engine(p)


def test_header_length_off_by_one_is_refused(tmp_path):
    """Regression: the header is space-padded, so a length one short still parsed and every tensor
    was read one byte off (garbage weights, no error). Now the tensors must tile the data exactly."""
    p = tmp_path / "hlen_minus_1.safetensors"
    p.write_bytes(struct.pack("<Q", HLEN - 1) + RAW[8:])
    with pytest.raises(ValueError, match=r"hlen_minus_1\.safetensors.*(cover|contiguous)"):
        pyfer.Engine(p)


def test_invalid_utf8_in_header_is_a_clear_error(tmp_path):
    """Regression: a flipped byte in a class name gave a bare UnicodeDecodeError (no file name)."""
    raw = bytearray(RAW[:8 + HLEN])
    raw[raw.index(b"happiness")] ^= 0x80
    p = tmp_path / "utf8.safetensors"
    p.write_bytes(bytes(raw) + DATA)
    with pytest.raises(ValueError, match=r"utf8\.safetensors.*UTF-8"):
        pyfer.Engine(p)


def test_truncation_message_says_truncated(tmp_path):
    p = tmp_path / "cut.safetensors"
    p.write_bytes(RAW[:len(RAW) - 4])
    with pytest.raises(ValueError, match=r"cut\.safetensors.*truncated"):
        pyfer.Engine(p)


# -- header byte flips -----------------------------------------------------------------------
@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 8 + HLEN - 1), st.integers(1, 255)), min_size=1, max_size=8))
def test_flipped_header_bytes(tmp_path, flips):
    raw = bytearray(RAW[:8 + HLEN])
    for pos, x in flips:
        raw[pos] ^= x
    p = tmp_path / "flipped.safetensors"
    p.write_bytes(bytes(raw) + DATA)
    check(p)


@FUZZ
@given(pos=st.integers(8, 8 + HLEN - 1), x=st.integers(1, 255))
def test_single_header_flip(tmp_path, pos, x):
    raw = bytearray(RAW[:8 + HLEN])
    raw[pos] ^= x
    p = tmp_path / "flip1.safetensors"
    p.write_bytes(bytes(raw) + DATA)
    check(p)


# -- absurd header lengths and offsets -----------------------------------------------------------
ABSURD_HLEN = [0, 1, 2, 7, HLEN - 1, HLEN + 1, HLEN + 8, len(RAW) - 8, len(RAW) - 7, len(RAW), 1 << 31, 1 << 32,
               (1 << 32) + HLEN, 100 << 20, (100 << 20) + 1, 1 << 62, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


@pytest.mark.parametrize("hlen", ABSURD_HLEN)
def test_absurd_header_length(tmp_path, hlen):
    p = tmp_path / "hlen.safetensors"
    p.write_bytes(struct.pack("<Q", hlen) + RAW[8:])
    assert check(p) == "error"


big = st.one_of(st.integers(-(1 << 70), 1 << 70), st.sampled_from([0, 1, len(DATA), len(DATA) + 1, (1 << 63) - 1,
                                                                   1 << 63, (1 << 64) - 1, 1 << 64, -1]))
offset_value = st.one_of(big, st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3), st.none(),
                         st.booleans(), st.lists(st.integers(0, 10), max_size=2))


@FUZZ
@given(name=st.sampled_from(NAMES), offs=st.one_of(st.lists(offset_value, max_size=4),
                                                   st.tuples(big, big).map(list), offset_value))
def test_absurd_data_offsets(tmp_path, name, offs):
    h = dict(HEADER)
    h[name] = dict(h[name], data_offsets=offs)
    p = tmp_path / "offsets.safetensors"
    p.write_bytes(build(h))
    assert check(p) == "error"


@FUZZ
@given(name=st.sampled_from(NAMES), shift=st.integers(-64, 64).filter(bool))
def test_shifted_or_overlapping_offsets(tmp_path, name, shift):
    """A tensor moved within the data section (in bounds, but leaving a hole or an overlap) is
    refused: the tensors must tile the data section exactly, as the safetensors spec requires."""
    h = dict(HEADER)
    b, e = h[name]["data_offsets"]
    h[name] = dict(h[name], data_offsets=[b + shift, e + shift])
    p = tmp_path / "shifted.safetensors"
    p.write_bytes(build(h))
    assert check(p) == "error"


# -- wrong dtypes, shapes; missing / extra tensors ------------------------------------------------
DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
          "Q7", "", "f32", "float32", "F32 "]
dim = st.one_of(st.integers(-3, 1100), st.sampled_from([0, 1 << 31, 1 << 40, 1 << 62, -(1 << 62)]),
                st.floats(allow_nan=True), st.text(max_size=2))


@FUZZ
@given(name=st.sampled_from(NAMES), dtype=st.one_of(st.sampled_from(DTYPES), st.integers(), st.none()),
       shape=st.one_of(st.none(), st.lists(dim, max_size=5), st.integers()))
def test_wrong_dtype_and_shape(tmp_path, name, dtype, shape):
    t = dict(HEADER[name], dtype=dtype)
    if shape is not None:
        t["shape"] = shape
    if (t["dtype"], t["shape"]) == (HEADER[name]["dtype"], HEADER[name]["shape"]):
        t["dtype"] = "I32"
    h = dict(HEADER, **{name: t})
    p = tmp_path / "dtype.safetensors"
    p.write_bytes(build(h))
    assert check(p) == "error"


def repack(tensors: dict, meta: dict | None = None) -> bytes:
    """A well-formed file (contiguous data) from ``{name: (dtype, shape, bytes)}``."""
    h, blobs, at = {"__metadata__": meta or HEADER["__metadata__"]}, [], 0
    for name, (dtype, shape, blob) in tensors.items():
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    return build(h, b"".join(blobs))


def tensor_table() -> dict:
    out = {}
    for name in NAMES:
        b, e = HEADER[name]["data_offsets"]
        out[name] = (HEADER[name]["dtype"], HEADER[name]["shape"], DATA[b:e])
    return out


def test_repack_roundtrip(tmp_path):
    p = tmp_path / "repacked.safetensors"
    p.write_bytes(repack(tensor_table()))
    x = np.random.default_rng(0).standard_normal((2, 1, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(pyfer.Engine(p, threads=1).forward(x), pyfer.Engine(STUDENT, threads=1).forward(x))


@FUZZ
@given(name=st.sampled_from(NAMES), how=st.sampled_from(["drop", "rename", "drop_key", "not_object", "hole"]))
def test_missing_or_renamed_tensor(tmp_path, name, how):
    tt = tensor_table()
    p = tmp_path / "missing.safetensors"
    if how == "drop":  # a well-formed file that lacks one tensor
        del tt[name]
        p.write_bytes(repack(tt))
    elif how == "rename":
        tt[name + "x"] = tt.pop(name)
        p.write_bytes(repack(tt))
    else:
        h = dict(HEADER)
        if how == "hole":  # header entry removed, its bytes left in place
            del h[name]
        elif how == "drop_key":
            t = dict(h[name])
            del t[sorted(t)[len(name) % 3]]
            h[name] = t
        else:
            h[name] = [h[name]]
        p.write_bytes(build(h))
    with pytest.raises(ValueError) as ei:
        pyfer.Engine(p, threads=1)
    assert p.name in str(ei.value)
    if how in ("drop", "rename"):
        assert f"'{name}'" in str(ei.value)


def test_extra_tensor(tmp_path):
    tt = dict(tensor_table(), **{"zzz.extra": ("F32", [1], bytes(4))})
    p = tmp_path / "extra.safetensors"
    p.write_bytes(repack(tt))
    with pytest.raises(ValueError, match="unexpected tensor 'zzz.extra'"):
        pyfer.Engine(p)


# -- wrong architecture / metadata -----------------------------------------------------------
META_FIELDS = {
    "arch": st.sampled_from(["effresnet18", "shufflenetv2 ", "resnet50", "", "ShuffleNetV2"]) | st.integers(),
    "stem": st.sampled_from(["imagenet", "small ", "huge", ""]) | st.none(),
    "num_classes": st.integers(-5, 1 << 40) | st.floats() | st.sampled_from(["8", 7, 9, 100000, 100001]),
    "in_channels": st.sampled_from([0, 2, 3, 4, -1, 1.5, "1"]),
    "format_version": st.sampled_from([0, 2, 1.0, 1.5, "1", None]),
    "class_names": st.lists(st.text(max_size=4), max_size=10) | st.lists(st.integers(), min_size=8, max_size=8),
    "preprocess": st.fixed_dictionaries({"input_size": st.integers(-2, 2000) | st.floats() | st.just("64")}) |
    st.sampled_from([None, [], "x", {}]),
}


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(META_FIELDS)), st.just(None), min_size=1, max_size=3)
       .flatmap(lambda d: st.fixed_dictionaries({k: st.one_of(META_FIELDS[k], st.just(_DROP)) for k in d})))
def test_bad_metadata(tmp_path, changes):
    p = tmp_path / "meta.safetensors"
    p.write_bytes(build(with_meta(HEADER, **changes)))
    check(p)


@FUZZ
@given(size=st.integers(8, 96))
def test_other_input_sizes_run(tmp_path, size):
    """input_size in the metadata is free (fully convolutional + global pooling): tiny sizes take
    the blocks down to 1x1 maps, which must still run (and stay in bounds under ASan)."""
    m = dict(META, preprocess=dict(META["preprocess"], input_size=size))
    p = tmp_path / "size.safetensors"
    p.write_bytes(build(dict(HEADER, __metadata__={"pyfer": json.dumps(m)})))
    eng = pyfer.Engine(p, threads=1)
    x = np.random.default_rng(size).standard_normal((3, 1, size, size)).astype(np.float32)
    y = eng.forward(x)
    assert y.shape == (3, 8) and np.isfinite(y).all()
    np.testing.assert_allclose(eng.forward(x[1:2]), y[1:2], rtol=1e-4, atol=1e-4)


def test_wrong_architecture(tmp_path):
    """The real student labelled as the teacher's architecture, and the teacher labelled as a student."""
    # without a network description the architecture comes from "arch" + "stem"
    p = tmp_path / "student_as_teacher.safetensors"
    p.write_bytes(build(with_meta(HEADER, arch="effresnet18", network=_DROP)))
    with pytest.raises(ValueError, match=r"student_as_teacher\.safetensors.*stem.conv.weight.*wrong architecture"):
        pyfer.Engine(p)
    # with the student's description kept, the relabelled file is refused too, naming the file
    if "network" in META:
        p2 = tmp_path / "student_as_teacher_described.safetensors"
        p2.write_bytes(build(with_meta(HEADER, arch="effresnet18")))
        with pytest.raises(ValueError, match=r"student_as_teacher_described\.safetensors"):
            pyfer.Engine(p2)
    if not TEACHER.is_file():
        pytest.skip("teacher export not present")
    thlen, th, tdata, _ = split(TEACHER)
    tm = json.loads(th["__metadata__"]["pyfer"])
    for arch, stem in (("shufflenetv2", "small"), ("shufflenetv2", "imagenet"), ("effresnet18",
                                                                                 "imagenet" if tm["stem"] == "small"
                                                                                 else "small")):
        q = tmp_path / f"teacher_as_{arch}_{stem}.safetensors"
        h = dict(th, __metadata__={"pyfer": json.dumps(dict(tm, arch=arch, stem=stem))})
        q.write_bytes(build(h, tdata))
        with pytest.raises(ValueError, match=q.name):
            pyfer.Engine(q)
    # and the unmodified teacher still loads
    assert pyfer.Engine(TEACHER, threads=1).info()["architecture"] == "effresnet18"


def test_metadata_not_a_string_or_missing(tmp_path):
    cases = {"nometa": {k: v for k, v in HEADER.items() if k != "__metadata__"},
             "metalist": dict(HEADER, __metadata__=["pyfer"]),
             "metaint": dict(HEADER, __metadata__={"pyfer": 3}),
             "metajunk": dict(HEADER, __metadata__={"pyfer": "\x00\x01{"}),
             "metadeep": dict(HEADER, __metadata__={"pyfer": "[" * 100000}),
             "headerdeep": b"[" * 5000 + b"]" * 5000,
             "headernull": b"null",
             "headernul": b"{\x00}",
             "headerutf": '{"\ud800": 1}'.encode("utf-8", "surrogatepass")}
    for name, h in cases.items():
        p = tmp_path / f"{name}.safetensors"
        p.write_bytes(build(h))
        assert check(p) == "error", name


# -- random bytes ------------------------------------------------------------------------------
@FUZZ
@given(blob=st.binary(max_size=4096))
def test_random_file_bytes(tmp_path, blob):
    p = tmp_path / "random.safetensors"
    p.write_bytes(blob)
    assert check(p) == "error"


@FUZZ
@given(body=st.binary(max_size=2048), extra=st.integers(-4, 4))
def test_random_header_with_plausible_length(tmp_path, body, extra):
    p = tmp_path / "plausible.safetensors"
    p.write_bytes(struct.pack("<Q", max(0, len(body) + extra)) + body + bytes(16))
    assert check(p) == "error"


@FUZZ
@given(data=st.data())
def test_random_json_header(tmp_path, data):
    """Structurally valid JSON of the wrong shape anywhere in the header."""
    scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
    value = st.recursive(scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
                         max_leaves=12)
    h = dict(HEADER)
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(NAMES + ["__metadata__", "new"]))
        h[key] = data.draw(value)
    p = tmp_path / "json.safetensors"
    p.write_bytes(build(h))
    assert check(p) == "error"
