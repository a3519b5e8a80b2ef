"""pyfer.Engine vs the PyTorch reference (training.models.from_safetensors, eval mode), plus the
engine's error handling. Random-weight exports with randomised BN statistics (non-trivial folding)
for both architectures, both stems, input sizes 48 and 64, batches 1 and 8, both ISA paths.
"""
from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("pyfer._engine")

import pyfer  # noqa: E402
from conftest import rel_err  # noqa: E402
from pyfer.preprocess import PreprocessSpec  # noqa: E402
from training.export import export_model  # noqa: E402
from training.export import from_safetensors  # noqa: E402
from training.models import ModelSpec, randomize_batchnorm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4
ISAS = pyfer.build_info()["isa"]["runnable"]  # the CPU kernel sets this build and CPU run


def make_export(path, arch="shufflenetv2", stem="small", size=64, seed=0, num_classes=8, half=False):
    torch.manual_seed(seed)
    spec = ModelSpec(arch, num_classes, 1, stem)
    model = randomize_batchnorm(spec.build(), seed=seed, fc_scale=20.0)
    names = pyfer.EMOTIONS if num_classes == 8 else [f"c{i}" for i in range(num_classes)]
    return export_model(model, spec, PreprocessSpec(size), path, class_names=names, half=half)


_CACHE: dict = {}


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")

    def get(arch, stem, size):
        key = (arch, stem, size)
        if key not in _CACHE:
            _CACHE[key] = make_export(root / f"{arch}_{stem}_{size}.safetensors", arch, stem, size, seed=size)
        return _CACHE[key]

    return get


def torch_logits(path, x):
    with torch.no_grad():
        return from_safetensors(path)(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("arch", ["shufflenetv2", "effresnet18"])
@pytest.mark.parametrize("stem", ["small", "imagenet"])
@pytest.mark.parametrize("size", [48, 64])
def test_matches_pytorch(exports, arch, stem, size):
    path = exports(arch, stem, size)
    rng = np.random.default_rng(size)
    for batch in (1, 8):
        x = rng.standard_normal((batch, 1, size, size)).astype(np.float32)
        want = torch_logits(path, x)
        for isa in ISAS:
            eng = pyfer.Engine(path, threads=1, isa=isa)
            got = eng.forward(x)
            assert got.shape == (batch, 8) and got.dtype == np.float32
            err = rel_err(got, want)
            print(f"{arch} {stem} {size} batch {batch} {isa}: max rel err {err:.2e}")
            assert err <= TOL, (arch, stem, size, batch, isa, err)


def test_reference_path_matches_pytorch(exports):
    path = exports("shufflenetv2", "imagenet", 48)
    x = np.random.default_rng(0).standard_normal((2, 1, 48, 48)).astype(np.float32)
    got = pyfer.Engine(path, isa="ref").forward(x)
    assert rel_err(got, torch_logits(path, x)) <= TOL


def test_force_portable_env(exports):
    path = exports("shufflenetv2", "small", 64)
    code = (
        "import numpy as np, pyfer, sys\n"
        f"e = pyfer.Engine({str(path)!r}, threads=1)\n"
        "x = np.random.default_rng(5).standard_normal((3, 1, 64, 64)).astype(np.float32)\n"
        "np.save(sys.argv[1], e.forward(x)); print(e.info()['isa'], pyfer.build_info()['isa']['selected'])\n"
    )
    out = Path(path).with_suffix(".portable.npy")
    env = dict(os.environ, PYFER_FORCE_PORTABLE="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["portable", "portable"]
    x = np.random.default_rng(5).standard_normal((3, 1, 64, 64)).astype(np.float32)
    assert rel_err(np.load(out), torch_logits(path, x)) <= TOL


def test_threads_match_single_thread(exports):
    for arch in ("shufflenetv2", "effresnet18"):
        path = exports(arch, "small", 48)
        x = np.random.default_rng(1).standard_normal((11, 1, 48, 48)).astype(np.float32)
        one = pyfer.Engine(path, threads=1).forward(x)
        two = pyfer.Engine(path, threads=2).forward(x)
        three = pyfer.Engine(path, threads=3).forward(x)
        np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)
        np.testing.assert_allclose(three, one, rtol=0, atol=1e-6)


def test_concurrent_python_threads(exports):
    path = exports("shufflenetv2", "small", 48)
    eng = pyfer.Engine(path, threads=1)
    x = np.random.default_rng(2).standard_normal((4, 1, 48, 48)).astype(np.float32)
    want = eng.forward(x)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(eng.forward(x))
        except Exception as e:  # pragma: no cover
            errors.append(e)

    ts = [threading.Thread(target=work) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and len(results) == 15
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_metadata_and_info(exports):
    path = exports("shufflenetv2", "small", 64)
    eng = pyfer.Engine(path)
    assert eng.input_shape == (1, 64, 64)
    assert eng.num_classes == 8
    assert eng.class_names == list(pyfer.EMOTIONS)
    assert eng.preprocess == {"input_size": 64, "channels": 1, "mean": 0.5, "std": 0.5}
    info = eng.info()
    assert info["architecture"] == "shufflenetv2" and info["input_size"] == 64 and info["stem"] == "small"
    assert info["isa"] == pyfer.build_info()["isa"]["selected"] and info["threads"] >= 1
    assert "Engine(" in repr(eng)
    assert pyfer.Engine(path, threads=3).info()["threads"] == 3


ISA_ENV_CODE = """
import pyfer
rec = pyfer.Recognizer(threads=1)
isa = pyfer.build_info()["isa"]
print(rec.engine.info()["isa"], rec.detector._engine.info()["isa"], isa["selected"], isa["why"].replace(" ", "_"))
"""


@pytest.mark.parametrize("value", ["portable", "avx2", "avx512", "avx3", "auto"])
def test_pyfer_isa_picks_the_kernel_set_of_every_engine_in_the_process(value):
    """``PYFER_ISA`` sets what "auto" means, so that ``predict`` (the classifier and YuNet) and the
    CLI can be timed with each set on one machine; a set this build or CPU lacks is refused by name."""
    env = {k: v for k, v in os.environ.items() if k != "PYFER_FORCE_PORTABLE"}
    env.update(PYFER_ISA=value, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", ISA_ENV_CODE], env=env, capture_output=True, text=True, timeout=120)
    runnable = pyfer.build_info()["isa"]["runnable"]
    if value == "auto":  # the rule's own choice, for both engines (the parent's, unless its env forces one)
        assert r.returncode == 0, r.stderr[-2000:]
        got = r.stdout.split()
        assert got[0] == got[1] == got[2] in runnable and got[3] != "PYFER_ISA_is_set", got
        if os.environ.get("PYFER_ISA", "auto") in ("", "auto") and not os.environ.get("PYFER_FORCE_PORTABLE"):
            assert got[0] == pyfer.build_info()["isa"]["selected"], got
    elif value in runnable:
        assert r.returncode == 0 and r.stdout.split() == [value] * 3 + ["PYFER_ISA_is_set"], r.stderr[-2000:]
    else:
        assert r.returncode != 0 and f"PYFER_ISA={value}: " in r.stderr, r.stderr[-2000:]


def test_build_info():
    bi = pyfer.build_info()
    assert bi["version"] == pyfer.__version__
    assert isinstance(bi["cuda"], bool)
    isa = bi["isa"]
    assert isa["compiled"][0] == "portable" and set(isa["runnable"]) <= set(isa["compiled"])
    assert isa["detected"] in ("avx512", "avx2", "portable") and isa["selected"] in isa["runnable"] and isa["why"]
    if (isa["detected"] == "avx512" and "avx512" in isa["compiled"] and not os.environ.get("PYFER_FORCE_PORTABLE")
            and os.environ.get("PYFER_ISA", "auto") in ("", "auto")):
        # the measured rule: the FMA unit width from the two peaks, and the set it implies
        assert re.fullmatch(r"AVX-512 on (256|512)-bit FMA units \(zmm \d+ vs ymm \d+ GFLOP/s\).*", isa["why"]), isa
        assert isa["selected"] == "avx512", isa


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_a_forced_isa_the_cpu_or_build_lacks_is_refused(exports, isa):
    path = exports("shufflenetv2", "small", 48)
    if isa in pyfer.build_info()["isa"]["runnable"]:
        assert pyfer.Engine(path, isa=isa).info()["isa"] == isa
    else:
        with pytest.raises(ValueError, match=isa.upper().replace("AVX512", "AVX-512")):
            pyfer.Engine(path, isa=isa)
    with pytest.raises(ValueError, match="unknown isa"):
        pyfer.Engine(path, isa="avx1024")


def test_cuda_device_is_a_clear_error(exports):
    path = exports("shufflenetv2", "small", 48)
    if pyfer.build_info()["cuda"]:
        pytest.skip("CUDA build")
    with pytest.raises(ValueError, match="CUDA"):
        pyfer.Engine(path, device="cuda")
    with pytest.raises(ValueError, match="device"):
        pyfer.Engine(path, device="tpu")


def test_fp16_weights(tmp_path):
    """A half export stores every tensor as F16 (half the file) and runs as its fp32 twin does."""
    import json
    import struct

    path = make_export(tmp_path / "half.safetensors", "shufflenetv2", "small", 48, seed=3, half=True)
    x = np.random.default_rng(3).standard_normal((2, 1, 48, 48)).astype(np.float32)
    assert rel_err(pyfer.Engine(path).forward(x), torch_logits(path, x)) <= TOL
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert {v["dtype"] for k, v in header.items() if k != "__metadata__"} == {"F16"}


def test_other_num_classes(tmp_path):
    path = make_export(tmp_path / "c5.safetensors", "effresnet18", "imagenet", 48, seed=4, num_classes=5)
    x = np.random.default_rng(4).standard_normal((2, 1, 48, 48)).astype(np.float32)
    got = pyfer.Engine(path).forward(x)
    assert got.shape == (2, 5) and rel_err(got, torch_logits(path, x)) <= TOL


# ---------------------------------------------------------------------------------------------
# input handling
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student(tmp_path_factory):
    path = make_export(tmp_path_factory.mktemp("s") / "s.safetensors", "shufflenetv2", "small", 48, seed=7)
    return path, pyfer.Engine(path, threads=1)


def test_dtype_conversion(student):
    path, eng = student
    x = np.random.default_rng(0).standard_normal((2, 1, 48, 48))
    want = eng.forward(x.astype(np.float32))
    np.testing.assert_allclose(eng.forward(x), want, atol=1e-6)  # float64
    xi = (x * 10).astype(np.int32)
    np.testing.assert_allclose(eng.forward(xi), eng.forward(xi.astype(np.float32)), atol=1e-6)
    np.testing.assert_allclose(eng.forward(x.astype(np.float16)), eng.forward(x.astype(np.float16).astype(np.float32)))
    np.testing.assert_allclose(eng.forward(torch.from_numpy(x.astype(np.float32))), want)


@pytest.mark.parametrize("dtype", [bool, object, np.complex64])
def test_refused_dtypes(student, dtype):
    _, eng = student
    with pytest.raises(TypeError, match="float32"):
        eng.forward(np.zeros((1, 1, 48, 48), dtype=dtype))


def test_non_contiguous_is_copied(student):
    _, eng = student
    x = np.random.default_rng(1).standard_normal((3, 1, 48, 96)).astype(np.float32)
    view = x[:, :, :, ::2]
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(eng.forward(view), eng.forward(np.ascontiguousarray(view)))
    xt = np.ascontiguousarray(np.random.default_rng(2).standard_normal((48, 48, 1, 2)).astype(np.float32))
    np.testing.assert_array_equal(eng.forward(xt.T), eng.forward(np.ascontiguousarray(xt.T)))
    be = x[:, :, :, :48].astype(">f4")
    np.testing.assert_array_equal(eng.forward(be), eng.forward(x[:, :, :, :48].copy()))


def test_raw_binding_refuses_bad_arrays(student):
    _, eng = student
    impl = eng._impl
    with pytest.raises(TypeError):
        impl.forward(np.zeros((1, 1, 48, 48), dtype=np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        impl.forward(np.zeros((1, 1, 48, 96), dtype=np.float32)[:, :, :, ::2])
    with pytest.raises(ValueError):
        impl.forward(np.zeros((1, 48, 48), dtype=np.float32))


@pytest.mark.parametrize("shape", [(48, 48), (1, 48, 48), (1, 1, 1, 48, 48), (1, 3, 48, 48), (1, 1, 64, 64),
                                   (1, 1, 48, 47), (0, 1, 48, 48)])
def test_bad_shapes(student, shape):
    _, eng = student
    with pytest.raises(ValueError):
        eng.forward(np.zeros(shape, dtype=np.float32))


def test_nan_propagates(student):
    _, eng = student
    x = np.zeros((2, 1, 48, 48), dtype=np.float32)
    x[0, 0, 10, 10] = np.nan
    y = eng.forward(x)
    assert np.isnan(y[0]).any() and np.isfinite(y[1]).all()


def test_bad_threads(student):
    path, _ = student
    for t in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            pyfer.Engine(path, threads=t)


# ---------------------------------------------------------------------------------------------
# weight files
# ---------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        pyfer.Engine(tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError):
        pyfer._engine.Engine(str(tmp_path / "nope.safetensors"))


def _write_raw(path, header: dict, data: bytes = b"", hlen=None):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if hlen is None else hlen) + h + data)
    return path


@pytest.mark.parametrize("case", ["empty", "short", "garbage", "huge_hlen", "bad_json", "not_object",
                                  "no_meta", "bad_meta_json", "wrong_arch", "bad_stem", "bad_offsets",
                                  "bad_dtype", "size_mismatch"])
def test_corrupt_headers(tmp_path, case):
    p = tmp_path / f"{case}.safetensors"
    meta = {"pyfer": json.dumps({"format_version": 1, "arch": "shufflenetv2", "num_classes": 8, "in_channels": 1,
                                 "stem": "small", "preprocess": {"input_size": 64}})}
    t = {"fc.bias": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}
    if case == "empty":
        p.write_bytes(b"")
    elif case == "short":
        p.write_bytes(b"\x01\x02\x03")
    elif case == "garbage":
        p.write_bytes(os.urandom(4096))
    elif case == "huge_hlen":
        _write_raw(p, {"__metadata__": meta}, hlen=1 << 40)
    elif case == "bad_json":
        body = b'{"a": [1, 2'
        p.write_bytes(struct.pack("<Q", len(body)) + body)
    elif case == "not_object":
        _write_raw(p, [1, 2, 3])
    elif case == "no_meta":
        _write_raw(p, t, bytes(32))
    elif case == "bad_meta_json":
        _write_raw(p, {"__metadata__": {"pyfer": "{not json"}, **t}, bytes(32))
    elif case == "wrong_arch":
        m = {"pyfer": json.dumps({"arch": "resnet50", "num_classes": 8, "in_channels": 1, "stem": "small",
                                  "preprocess": {"input_size": 64}})}
        _write_raw(p, {"__metadata__": m, **t}, bytes(32))
    elif case == "bad_stem":
        m = {"pyfer": json.dumps({"arch": "shufflenetv2", "num_classes": 8, "in_channels": 1, "stem": "huge",
                                  "preprocess": {"input_size": 64}})}
        _write_raw(p, {"__metadata__": m, **t}, bytes(32))
    elif case == "bad_offsets":
        _write_raw(p, {"__metadata__": meta, "fc.bias": {"dtype": "F32", "shape": [8], "data_offsets": [0, 4000]}},
                   bytes(32))
    elif case == "bad_dtype":
        _write_raw(p, {"__metadata__": meta, "fc.bias": {"dtype": "Q7", "shape": [8], "data_offsets": [0, 32]}},
                   bytes(32))
    elif case == "size_mismatch":
        _write_raw(p, {"__metadata__": meta, "fc.bias": {"dtype": "F32", "shape": [9], "data_offsets": [0, 32]}},
                   bytes(32))
    with pytest.raises(ValueError) as ei:
        pyfer.Engine(p)
    assert p.name in str(ei.value), str(ei.value)


def test_truncated_file(student, tmp_path):
    path, _ = student
    data = Path(path).read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 100, 9):
        p = tmp_path / f"trunc{cut}.safetensors"
        p.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="trunc"):
            pyfer.Engine(p)


def test_wrong_architecture_tensors(tmp_path, exports):
    """A teacher's tensors labelled as a student (and vice versa) are refused, naming the file."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    for src_arch, claimed in (("effresnet18", "shufflenetv2"), ("shufflenetv2", "effresnet18")):
        src = exports(src_arch, "small", 48)
        with safe_open(str(src), framework="numpy") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = json.loads(f.metadata()["pyfer"])
        meta["arch"] = claimed
        p = tmp_path / f"{src_arch}_as_{claimed}.safetensors"
        save_file(tensors, str(p), metadata={"pyfer": json.dumps(meta)})
        with pytest.raises(ValueError, match=p.name):
            pyfer.Engine(p)


def test_wrong_shape_and_extra_tensor(tmp_path, student):
    from safetensors import safe_open

    from pyfer.weights_file import save_checked

    path, _ = student
    with safe_open(str(path), framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    bad = dict(tensors, **{"conv5.conv.bias": np.zeros(1000, np.float32)})
    save_checked(bad, tmp_path / "shape.safetensors", meta)
    with pytest.raises(ValueError, match="conv5.conv.bias"):
        pyfer.Engine(tmp_path / "shape.safetensors")
    extra = dict(tensors, **{"extra.weight": np.zeros(3, np.float32)})
    save_checked(extra, tmp_path / "extra.safetensors", meta)
    with pytest.raises(ValueError, match="extra.weight"):
        pyfer.Engine(tmp_path / "extra.safetensors")
    m = json.loads(meta["pyfer"])
    m["num_classes"] = 7
    save_checked(tensors, tmp_path / "classes.safetensors", {"pyfer": json.dumps(m)})
    with pytest.raises(ValueError, match="classes"):
        pyfer.Engine(tmp_path / "classes.safetensors")
    i64 = dict(tensors, **{"fc.bias": np.zeros(8, np.int64)})
    save_checked(i64, tmp_path / "i64.safetensors", meta)
    with pytest.raises(ValueError, match="dtype"):
        pyfer.Engine(tmp_path / "i64.safetensors")


def test_directory_is_not_a_weights_file(tmp_path):
    with pytest.raises(ValueError):
        pyfer.Engine(tmp_path)



def test_softmax_is_finite_for_large_logits():
    """Logits far above exp's range (a shifted or scaled model's) still give probabilities, not
    NaN: the maximum is taken out first."""
    from pyfer.engine import softmax

    p = softmax(np.array([[1000.0, 0.0], [-1000.0, -999.0]], np.float32))
    assert np.isfinite(p).all() and np.allclose(p, [[1.0, 0.0], [1 / (1 + np.e), np.e / (1 + np.e)]], atol=1e-6)
    assert softmax(np.zeros((2, 3))).dtype == np.float64 and softmax(np.zeros((2, 3), np.int64)).dtype == np.float64


def test_file_sha256_hashes_the_whole_file(tmp_path):
    import hashlib

    from pyfer.engine import file_sha256

    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "w.bin").write_bytes(data)
    assert file_sha256(tmp_path / "w.bin") == hashlib.sha256(data).hexdigest()
