"""The per-op A/B timing of kernel sets: pyfer._checks.time_op (csrc/tests/checks.cpp, time_check)
and scripts/bench_ops.py, which times every op of the kernel table with it (BENCHMARKS.md, "AVX-512").
Structure and refusals only, on one or two rounds: the figures themselves need a quiet machine."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

_engine = pytest.importorskip("pyfer._engine")
T = pytest.importorskip("pyfer._checks", reason="the test-only module pyfer._checks is not built here (a wheel, "
                                                "or PYFER_BUILD_TESTS=OFF)")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import bench_ops  # noqa: E402

RUNNABLE = _engine.build_info()["isa"]["runnable"]
DW = (1, 8, 8, 58, 1)  # dw3x3's arguments after its isa: one image, 8x8, 58 channels, stride 1


def test_time_op_times_exactly_the_requested_sets():
    for isas in (RUNNABLE, RUNNABLE[::-1], RUNNABLE[-1:]):
        times = T.time_op("dw3x3", isas, *DW, reps=2, rounds=2)
        assert list(times) == isas and all(t > 0 for t in times.values()), times
    # keyword arguments reach the check: a Winograd conv, a zero-skipping conv with its pool epilogue
    assert list(T.time_op("conv", RUNNABLE[:1], 1, 8, 8, 16, 16, 3, 1, mode="wino_plain", reps=1, rounds=1)) \
        == RUNNABLE[:1]
    assert T.time_op("conv_skip0", RUNNABLE[:1], 1, 4, 4, 32, 64, zero_frac=0.5, mode="pool", reps=1,
                     rounds=1)[RUNNABLE[0]] > 0


def test_time_op_refuses_unknown_sets_and_checks():
    with pytest.raises(ValueError, match="sse9"):
        T.time_op("dw3x3", [RUNNABLE[0], "sse9"], *DW)
    with pytest.raises(ValueError, match="twice"):
        T.time_op("dw3x3", [RUNNABLE[0], RUNNABLE[0]], *DW)
    with pytest.raises(ValueError, match="no kernel set"):
        T.time_op("dw3x3", [], *DW)
    with pytest.raises(ValueError, match="no check named 'dw5x5'"):
        T.time_op("dw5x5", RUNNABLE[:1], *DW)


def table(out: str) -> list:
    return [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("|")]


def test_bench_ops_prints_one_row_per_shape_with_times_and_ratios(capsys):
    isas = RUNNABLE[::-1]
    bench_ops.main(["--ops", "dw3x3,linear", "--isas", ",".join(isas), "--reps", "2", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "| 1 thread |" in out and "load average" in out
    head, rule, *rows = table(out)
    assert head == (["op", "shape", "in the network"] + [f"{i} us" for i in isas]
                    + [f"{i} / {isas[0]}" for i in isas[1:]])
    assert set(rule) == {"---"} and len(rule) == len(head)
    # the student's shapes: depthwise convs of stride 1 and 2 in every stage, its classifier
    assert {r[0] for r in rows} == {"dw3x3", "linear"} and sum(r[0] == "dw3x3" for r in rows) >= 6
    assert ["linear", "1024->8", "fc"] == [r[:3] for r in rows if r[0] == "linear"][0]
    for r in rows:
        times = [float(x) for x in r[3:3 + len(isas)]]
        assert all(t > 0 for t in times), r
        for t, ratio in zip(times[1:], r[3 + len(isas):]):
            assert float(ratio) == pytest.approx(t / times[0], rel=0.02, abs=0.01), r


def test_bench_ops_covers_every_op_of_the_kernel_table():
    src = (REPO / "csrc" / "kernels" / "kernels.hpp").read_text()
    macro = re.search(r"#define PYFER_KERNEL_OPS\(X, NS\)(.*?)\n\n", src, re.S).group(1)
    table_ops = set(re.findall(r"X\(NS, (\w+)\)", macro)) - {"fma_peak"}  # a measurement itself
    rows = bench_ops.student_rows(bench_ops.default_weights()) + bench_ops.OTHER_ROWS
    assert {op for row in rows for op in row.ops} == table_ops


def test_bench_ops_refuses_a_set_the_cpu_lacks_and_unknown_ops(monkeypatch):
    with pytest.raises(SystemExit, match="sse9: not a kernel set of this build"):
        bench_ops.main(["--isas", "avx2,sse9"])
    info = {"isa": {"compiled": ["portable", "avx2", "avx512"], "runnable": ["portable", "avx2"], "detected": "avx2"}}
    monkeypatch.setattr(bench_ops, "build_info", lambda: info)
    with pytest.raises(SystemExit, match="avx512: this CPU cannot run it"):
        bench_ops.main(["--isas", "avx512,avx2"])
    with pytest.raises(SystemExit, match="no op dw5x5"):
        bench_ops.main(["--isas", "portable", "--ops", "dw5x5"])
