"""CUDA backend (csrc/cuda/, docs/cuda.md).

Three layers, so that most of it runs without a GPU:
- error handling: every build, any machine (CPU-only build -> ValueError; CUDA build without a
  usable GPU -> RuntimeError; no crash);
- the CUDA launch plan executed by the CPU emulator (pyfer._checks.cuda_emulate, in the test-only
  module): the weight layouts, descriptors and per-element index math of every kernel, vs
  PyTorch. Needs a CUDA-enabled dev build (PYFER_BUILD_TESTS), no GPU;
- GPU parity (marked ``gpu``): CUDA logits vs training.models.from_safetensors within 1e-3
  relative, both architectures, batch 1 and 64, the shipped weights and random-weight exports.
  Skipped, with the reason, where no GPU is usable. scripts/gpu_check.sh runs these on the
  device machine.
"""
from __future__ import annotations

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
GPU_TOL = 1e-3
EMU_TOL = 1e-4

CUDA_BUILD = bool(pyfer.build_info()["cuda"])
N_GPUS, WHY_NO_GPU = pyfer.engine.cuda_devices()

needs_cuda_build = pytest.mark.skipif(
    not CUDA_BUILD, reason="CPU-only build (pyfer.build_info()['cuda'] is False); build with "
                           "-DPYFER_WITH_CUDA=ON to test the CUDA launch plan")
needs_gpu = pytest.mark.skipif(
    N_GPUS == 0, reason=f"no usable CUDA GPU ({WHY_NO_GPU}); run scripts/gpu_check.sh on a GPU machine")


def inputs(n, size=64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, size, size)).astype(np.float32)


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
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from test_engine import make_export

    root = tmp_path_factory.mktemp("cuda_exports")
    cache = {}

    def get(arch, stem, size=64):
        key = (arch, stem, size)
        if key not in cache:
            cache[key] = make_export(root / f"{arch}_{stem}_{size}.safetensors", arch, stem, size, seed=size + 1)
        return cache[key]

    del torch
    return get


def cuda_emulate(path, x):
    checks = pytest.importorskip("pyfer._checks", reason="the test-only module pyfer._checks is not built here "
                                                        "(a wheel, or PYFER_BUILD_TESTS=OFF)")
    return checks.cuda_emulate(str(path), x)


def torch_logits(path, x):
    import torch
    from training.export import from_safetensors

    with torch.no_grad():
        return from_safetensors(path)(torch.from_numpy(x)).numpy()


@needs_cuda_build
@pytest.mark.parametrize("arch,stem,size", [("shufflenetv2", "small", 64), ("shufflenetv2", "imagenet", 48),
                                            ("effresnet18", "small", 48), ("effresnet18", "imagenet", 64)])
def test_emulated_plan_matches_pytorch(exports, arch, stem, size):
    path = exports(arch, stem, size)
    x = inputs(2 if arch == "shufflenetv2" else 1, size, seed=1)
    got = cuda_emulate(path, x)
    err = rel_err(got, torch_logits(path, x))
    print(f"emulated CUDA plan {arch} {stem} {size}: max rel err {err:.2e}")
    assert err <= EMU_TOL


@needs_cuda_build
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
    pytest.importorskip("torch")
    eng = pyfer.Engine(weights, device="cuda")
    x = inputs(batch, seed=batch)
    err = rel_err(eng.forward(x), torch_logits(weights, x))
    print(f"GPU {weights.name} batch {batch}: max rel err {err:.2e} ({eng.info()['isa']})")
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
    err = rel_err(eng.forward(x), torch_logits(path, x))
    print(f"GPU {arch} {stem} {size} batch {batch}: max rel err {err:.2e}")
    assert err <= GPU_TOL


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
def test_gpu_matches_cpu_engine():
    x = inputs(8, seed=8)
    cpu = pyfer.Engine(TEACHER).forward(x)
    gpu = pyfer.Engine(TEACHER, device="cuda").forward(x)
    assert rel_err(gpu, cpu) <= GPU_TOL


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


if os.environ.get("PYFER_REQUIRE_GPU") == "1":  # gpu_check.sh: a skip there is a failure
    def test_gpu_is_present():
        assert CUDA_BUILD, "this build has no CUDA backend"
        assert N_GPUS > 0, f"no usable CUDA GPU: {WHY_NO_GPU}"
