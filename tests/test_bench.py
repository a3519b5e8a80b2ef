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
    widest = isas[-1]
    for x in rs:
        assert x["latency_ms_median"] > 0 and x["fma_peak_gflops"] > 0
        # %peak is of the CPU's peak (the widest set's, 112 GFLOP/s on Zen 4), also for the narrower
        # sets: portable's own (45) made its blocks look 2.5x closer to the machine's limit
        assert x["fma_peak_isa"] == widest and x["set_fma_peak_gflops"] > 0
        for b in x["blocks"]:
            assert b["peak_fraction"] == pytest.approx(b["gflops"] / x["fma_peak_gflops"]), b
        assert x["machine"]["load_average"] is None or x["machine"]["load_average"] >= 0
        assert [b["name"] for b in x["blocks"]][:2] == ["stem", "stage2.0"] and x["blocks"][-1]["name"] == "head"
        assert x["engine"]["gflops_per_image"] > 0


def test_every_speed_report_names_the_cpu_the_kernels_the_threads_and_the_load(capsys):
    from pyfer.bench import cpu_name, main, run_context

    line = run_context(threads=1)
    isa = _engine.build_info()["isa"]
    assert line.startswith(f"CPU: {cpu_name()}") and f"pyfer kernels: {isa['selected']} ({isa['why']})" in line
    assert "| 1 thread |" in line and "load average" in line
    main(["--reps", "1", "--isa", "portable"])
    head = capsys.readouterr().out.splitlines()[0]
    assert cpu_name() in head and "isa portable" in head and "load average" in head
    if isa["runnable"] != ["portable"]:
        assert f"1 core, {isa['runnable'][-1]}; portable's own: " in head


def test_compare_needs_two_kernel_sets(capsys):
    from pyfer.bench import main

    with pytest.raises(SystemExit):
        main(["--compare"])
    assert "two or more kernel sets" in capsys.readouterr().err


def test_compare_times_each_set_side_by_side(capsys):
    from pyfer.bench import main

    runnable = _engine.build_info()["isa"]["runnable"]
    if len(runnable) < 2:
        pytest.skip(f"this CPU runs one kernel set only ({runnable})")
    main(["--isa", "all", "--compare", "--rounds", "2", "--reps", "2", "--json"])
    c = json.loads(capsys.readouterr().out)
    assert c["isas"] == runnable and c["rounds"] == 2
    assert set(c["latency_ms_median"]) == set(runnable) and min(c["latency_ms_median"].values()) > 0
    assert [b["name"] for b in c["blocks"]][:2] == ["stem", "stage2.0"] and c["blocks"][-1]["name"] == "head"
    for b in c["blocks"]:
        assert set(b["ms"]) == set(runnable) and all(v > 0 for v in b["ms"].values())
    main(["--isa", ",".join(runnable), "--compare", "--rounds", "1", "--reps", "1"])
    table = capsys.readouterr().out
    assert "end to end" in table and all(f"{isa} ms" in table for isa in runnable)


def test_bench_refuses_what_it_cannot_time(capsys, tmp_path):
    from importlib.resources import files

    from pyfer.bench import main

    yunet = str(files("pyfer") / "models" / "yunet.safetensors")
    with pytest.raises(SystemExit):
        main([yunet])
    assert "yunet_speed.py" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--isa", "avx3"])
    assert "--isa" in capsys.readouterr().err
    missing = [i for i in ("avx2", "avx512") if i not in _engine.build_info()["isa"]["runnable"]]
    if missing:  # a set this CPU or build lacks is refused with a message, not a traceback
        with pytest.raises(SystemExit):
            main(["--isa", missing[0], "--reps", "1"])


@pytest.mark.parametrize("cpuinfo, name", [
    ("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n",
     "AMD EPYC (Zen 3, family 25 model 1)"),
    ("vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n",
     "AMD EPYC (Zen 4, family 25 model 17)"),
    ("vendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC 9R45\n",
     "AMD EPYC 9R45 (Zen 5, family 26 model 2)"),
    ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel Xeon\n\n"
     "processor\t: 1\nmodel name\t: another\n", "Intel Xeon (family 6 model 143)"),
])
def test_cpu_name_tells_the_core_generation(cpuinfo, name):
    """Speed figures name their CPU: a VM's "AMD EPYC" alone does not tell Zen 3 (AVX2 only) from
    Zen 4 or 5 (AVX-512)."""
    from pyfer.bench import cpu_name

    assert cpu_name(cpuinfo) == name
