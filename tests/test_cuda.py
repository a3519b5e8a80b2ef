"""CUDA backend (csrc/cuda/, docs/cuda.md).

Three layers, so that most of it runs without a GPU:
- error handling: every build, any machine (CPU-only build -> ValueError; CUDA build without a
  usable GPU -> RuntimeError; no crash);
- the CUDA launch plan executed by the CPU emulator (pyfer._checks.cuda_emulate, in the test-only
  module): the weight layouts, descriptors and per-element index math of every kernel, vs
  PyTorch. Needs a CUDA-enabled dev build (PYFER_BUILD_TESTS), no GPU;
- GPU parity (marked ``gpu``): CUDA logits vs the CPU's within 1e-4 relative (the plain-loop
  reference ``isa="ref"`` up to 8 images, the CPU engine, itself checked against the reference on
  every commit, above), both architectures, batch 1 to 300, the shipped weights, random-weight
  exports and the odd networks of test_network.py (1x1 maps, one-channel depthwise convs, FFE at
  stride 1). No torch needed for the shipped weights. Skipped, with the reason, where no GPU is
  usable; under PYFER_REQUIRE_GPU=1 (scripts/gpu_check.sh, on the device machine) a missing GPU
  or module fails instead.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyfer._engine")

import pyfer  # noqa: E402
import pyfer.engine  # noqa: E402
from conftest import rel_err  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STUDENT = REPO / "pyfer" / "models" / "tsnet_student.safetensors"
TEACHER = REPO / "models" / "teacher_effresnet18_fp16.safetensors"
GPU_TOL = 1e-4  # fp32 without tensor cores: only the summation order differs from the CPU's
EMU_TOL = 1e-4
REQUIRE_GPU = os.environ.get("PYFER_REQUIRE_GPU") == "1"

CUDA_BUILD = bool(pyfer.build_info()["cuda"])
N_GPUS, WHY_NO_GPU = pyfer.engine.cuda_devices()

# the emulator is in the test-only module, which wheels and gpu_check.sh's build leave out
needs_emulator = pytest.mark.skipif(
    not CUDA_BUILD or importlib.util.find_spec("pyfer._checks") is None,
    reason="needs a CUDA build with the test-only module pyfer._checks (not in a CPU-only build, a "
           "wheel, or a PYFER_BUILD_TESTS=OFF build)")
needs_gpu = pytest.mark.skipif(
    N_GPUS == 0, reason=f"no usable CUDA GPU ({WHY_NO_GPU}); run scripts/gpu_check.sh on a GPU machine")


def inputs(n, size=64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, size, size)).astype(np.float32)


def require(module: str):
    """pytest.importorskip, except under PYFER_REQUIRE_GPU=1, where a missing module fails: a GPU
    check that skipped its parity tests would otherwise pass."""
    return importlib.import_module(module) if REQUIRE_GPU else pytest.importorskip(module)


def cpu_logits(path, x):
    """The CPU's answer: the plain-loop reference for up to 8 images (the teacher takes it 0.75 s
    an image), the CPU engine above."""
    return pyfer.Engine(path, isa="ref" if len(x) <= 8 else "auto").forward(x)


# ---- every build, every machine --------------------------------------------------------------
def test_build_info_reports_cuda():
    info = pyfer.build_info()
    assert isinstance(info["cuda"], bool)
    if info["cuda"]:
        assert "90" in info["cuda_archs"]  # Hopper is in the compiled list


@pytest.mark.skipif(N_GPUS > 0, reason="a GPU is usable here: the error path is not reachable")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu_raises_clearly(device):
    exc = RuntimeError if CUDA_BUILD else ValueError
    with pytest.raises(exc, match="device='cpu'"):
        pyfer.Engine(STUDENT, device=device)


@pytest.mark.parametrize("device", ["cuda:x", "cuda:", "gpu", "CUDA"])
def test_malformed_device(device):
    with pytest.raises(ValueError):
        pyfer.Engine(STUDENT, device=device)


def test_recognizer_passes_device_through():
    from pyfer.recognizer import Recognizer

    if N_GPUS:
        assert Recognizer(device="cuda").engine.info()["device"] == "cuda:0"
    else:
        with pytest.raises(RuntimeError if CUDA_BUILD else ValueError):
            Recognizer(device="cuda")


# ---- CUDA build: the launch plan on the CPU emulator ------------------------------------------
@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    require("torch")
    require("safetensors")
    from test_engine import make_export

    root = tmp_path_factory.mktemp("cuda_exports")
    cache = {}

    def get(arch, stem, size=64):
        key = (arch, stem, size)
        if key not in cache:
            cache[key] = make_export(root / f"{arch}_{stem}_{size}.safetensors", arch, stem, size, seed=size + 1)
        return cache[key]

    return get


def tiny_export(folder, which):
    require("torch")
    require("safetensors")
    from test_network import export_tiny  # imported here: test_network skips its module without torch

    return export_tiny(folder, which)


def cuda_emulate(path, x):
    from pyfer import _checks

    return _checks.cuda_emulate(str(path), x)


def torch_logits(path, x):
    import torch
    from training.export import from_safetensors

    with torch.no_grad():
        return from_safetensors(path)(torch.from_numpy(x)).numpy()


@needs_emulator
@pytest.mark.parametrize("arch,stem,size", [("shufflenetv2", "small", 64), ("shufflenetv2", "imagenet", 48),
                                            ("effresnet18", "small", 48), ("effresnet18", "imagenet", 64)])
def test_emulated_plan_matches_pytorch(exports, arch, stem, size):
    path = exports(arch, stem, size)
    x = inputs(2 if arch == "shufflenetv2" else 1, size, seed=1)
    got = cuda_emulate(path, x)
    err = rel_err(got, torch_logits(path, x))
    print(f"emulated CUDA plan {arch} {stem} {size}: max rel err {err:.2e}")
    assert err <= EMU_TOL


@needs_emulator
@pytest.mark.parametrize("which", ["shuffle", "res", "one-channel depthwise"])
def test_emulated_plan_on_odd_networks(tmp_path, which):
    """Networks the engine has no code for (test_network.py): 1x1 maps, one-channel depthwise
    convs, FFE at stride 1 with a shortcut, 5 classes."""
    torch = require("torch")
    path, model = tiny_export(tmp_path, which)
    x = inputs(3, 40, seed=3)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert rel_err(cuda_emulate(path, x), want) <= EMU_TOL


@needs_emulator
@pytest.mark.parametrize("weights", [STUDENT, TEACHER], ids=["student", "teacher"])
def test_emulated_plan_shipped_weights(weights):
    pytest.importorskip("torch")
    x = inputs(1, seed=2)
    assert rel_err(cuda_emulate(weights, x), torch_logits(weights, x)) <= EMU_TOL


# ---- GPU ------------------------------------------------------------------------------------
@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("weights", [STUDENT, TEACHER], ids=["student", "teacher"])
def test_gpu_parity_shipped(weights, batch):
    eng = pyfer.Engine(weights, device="cuda")
    x = inputs(batch, seed=batch)
    err = rel_err(eng.forward(x), cpu_logits(weights, x))
    print(f"GPU {weights.name} batch {batch}: max rel err {err:.2e} ({eng.info()['isa']})")
    assert err <= GPU_TOL


@pytest.mark.gpu
@needs_gpu
def test_gpu_teacher_batch_256():
    """The teacher's large GEMMs at a full chunk, where the 128x128 tile kernel runs."""
    x = inputs(256, seed=11)
    err = rel_err(pyfer.Engine(TEACHER, device="cuda").forward(x), cpu_logits(TEACHER, x))
    print(f"GPU teacher batch 256: max rel err {err:.2e}")
    assert err <= GPU_TOL


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("arch,stem,size", [("shufflenetv2", "small", 64), ("shufflenetv2", "imagenet", 48),
                                            ("effresnet18", "small", 64), ("effresnet18", "imagenet", 48)])
def test_gpu_parity_random_exports(exports, arch, stem, size, batch):
    path = exports(arch, stem, size)
    eng = pyfer.Engine(path, device="cuda")
    x = inputs(batch, size, seed=batch + 7)
    err = rel_err(eng.forward(x), cpu_logits(path, x))
    print(f"GPU {arch} {stem} {size} batch {batch}: max rel err {err:.2e}")
    assert err <= GPU_TOL


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("which", ["shuffle", "res", "one-channel depthwise"])
def test_gpu_odd_networks(tmp_path, which):
    path, _ = tiny_export(tmp_path, which)
    eng = pyfer.Engine(path, device="cuda")
    x = inputs(3, 40, seed=4)
    got = eng.forward(x)
    assert rel_err(got, cpu_logits(path, x)) <= GPU_TOL
    np.testing.assert_allclose(eng.forward(x[:1])[0], got[0], rtol=0, atol=1e-5)  # batch independence


@pytest.mark.gpu
@needs_gpu
def test_gpu_batch_sizes_and_chunks():
    """Graphs per batch size, arena growth, batches above the 256-image chunk: all agree."""
    eng = pyfer.Engine(STUDENT, device="cuda")
    x = inputs(300, seed=5)
    full = eng.forward(x)
    for a, b in [(0, 1), (0, 3), (0, 64), (0, 1), (10, 267), (299, 300)]:
        np.testing.assert_allclose(eng.forward(x[a:b]), full[a:b], rtol=0, atol=1e-4)
    assert eng.info()["device"] == "cuda:0"


@pytest.mark.gpu
@needs_gpu
def test_gpu_without_graphs_matches(monkeypatch):
    x = inputs(5, seed=6)
    want = pyfer.Engine(STUDENT, device="cuda").forward(x)
    monkeypatch.setenv("PYFER_CUDA_GRAPHS", "0")
    got = pyfer.Engine(STUDENT, device="cuda").forward(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.gpu
@needs_gpu
def test_gpu_threads_share_one_engine():
    import threading

    eng = pyfer.Engine(STUDENT, device="cuda")
    xs = [inputs(n, seed=n) for n in (1, 2, 7, 1)]
    want = [eng.forward(x) for x in xs]
    out = [None] * len(xs)

    def work(i):
        for _ in range(5):
            out[i] = eng.forward(xs[i])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for o, w in zip(out, want):
        np.testing.assert_allclose(o, w, rtol=0, atol=1e-6)


if REQUIRE_GPU:  # gpu_check.sh: a skip there is a failure
    def test_gpu_is_present():
        assert CUDA_BUILD, "this build has no CUDA backend"
        assert N_GPUS > 0, f"no usable CUDA GPU: {WHY_NO_GPU}"
