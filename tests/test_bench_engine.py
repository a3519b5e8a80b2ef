"""Benchmarks (pytest-benchmark): pyfer engine vs PyTorch eager vs ONNX Runtime vs OpenCV DNN on
the same exported model and the same input, one thread each; batch-1 latency and batch-64
throughput, student and teacher (random weights, stem "small", input 64). Every benchmark also
asserts its logits match PyTorch, so CI runs this file with --benchmark-disable as a check:

    python -m pytest tests/test_bench_engine.py --benchmark-disable            # correctness only
    python -m pytest tests/test_bench_engine.py --benchmark-only --benchmark-group-by=group

(`python -m pyfer.bench WEIGHTS --compare` gives the interleaved side-by-side table of BENCHMARKS.md.)
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")
pytest.importorskip("pyfer._engine")

from test_engine import make_export  # noqa: E402

from pyfer.bench import make_runners  # noqa: E402

ARCHS = {"student": "shufflenetv2", "teacher": "effresnet18"}
_RUNNERS: dict = {}


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")

    def get(model: str, batch: int):
        key = (model, batch)
        if key not in _RUNNERS:
            w = root / f"{model}.safetensors"
            if not w.exists():
                make_export(w, ARCHS[model], "small", 64, seed=11)
            _RUNNERS[key] = make_runners(w, batch, threads=1, onnx_path=root / f"{model}.onnx")
        return _RUNNERS[key]

    return get


@pytest.mark.parametrize("runtime", ["pyfer", "onnxruntime", "pytorch", "opencv"])
@pytest.mark.parametrize("batch", [1, 64])
@pytest.mark.parametrize("model", ["student", "teacher"])
def test_bench(benchmark, runners, model, batch, runtime):
    rs = runners(model, batch)
    benchmark.group = f"{model} batch {batch}"
    benchmark.extra_info["images"] = batch
    rounds = 30 if batch == 1 else 3
    if model == "teacher":
        rounds = max(3, rounds // 3)
    out = np.asarray(benchmark.pedantic(rs[runtime], rounds=rounds, warmup_rounds=1, iterations=1))
    ref = rs["pytorch"]()
    assert out.shape == (batch, 8)
    err = float(np.max(np.abs(out - ref)) / max(1.0, float(np.max(np.abs(ref)))))
    assert err <= (1e-4 if runtime == "pyfer" else 1e-3), err
