"""`pyfer bench`: the engine's own benchmark runs from the installed package alone (no torch, no
training code, no test-only module), for each kernel set. The comparison with other runtimes is
scripts/bench_compare.py (tests/test_bench_engine.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

_engine = pytest.importorskip("pyfer._engine")

CODE = """
import json, sys
from pyfer.bench import main
main(["--reps", "2", "--isa", "all", "--json"])
bad = sorted(m for m in sys.modules if m.split('.')[0] in ("torch", "training", "onnxruntime", "safetensors")
             or m == "pyfer._engine_testing")
print(json.dumps(bad))
"""


def test_bench_runs_without_dev_tree(tmp_path):
    # run from an empty directory: the repository root (with training/) is not on sys.path
    r = subprocess.run([sys.executable, "-P", "-c", CODE] if sys.version_info >= (3, 11) else
                       [sys.executable, "-c", CODE], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    *report, bad = r.stdout.strip().splitlines()
    assert json.loads(bad) == []
    rs = json.loads("\n".join(report))
    isas = [x["engine"]["isa"] for x in rs]
    assert isas == _engine.build_info()["isa"]["runnable"]
    assert len({x["engine"]["gflops_per_image"] for x in rs}) == 1
    for x in rs:
        assert x["latency_ms_median"] > 0 and x["fma_peak_gflops"] > 0
        assert [b["name"] for b in x["blocks"]][:2] == ["stem", "stage2.0"] and x["blocks"][-1]["name"] == "head"
        assert x["engine"]["gflops_per_image"] > 0


def test_bench_cli_rejects_compare():
    from pyfer.bench import main

    with pytest.raises(SystemExit):
        main(["--compare"])
