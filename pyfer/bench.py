"""Engine benchmark for performance work: per-block timings and GFLOP/s against the measured
fp32 FMA peak of this machine, for one kernel set or each of them (``--isa all``).

    python -m pyfer.bench [WEIGHTS] [--batch N] [--reps R] [--isa auto|avx512|avx2|portable|all] [--json]
    python -m pyfer.bench --isa avx512,avx2 --compare [--rounds 7]   # A/B of kernel sets, per block
    pyfer bench ...                      (the CLI forwards to main(argv))

Only the installed package is used (no torch, no training code), so this runs from a wheel. The
comparison against PyTorch, ONNX Runtime and OpenCV DNN needs the dev tree (training.export for
the ONNX file): ``python scripts/bench_compare.py`` there (BENCHMARKS.md).

``--input``: what the network sees. ``noise`` (default) is a fixed standard-normal array; an image
path uses the first face found in it, detected and framed as ``Recognizer.predict`` does, repeated
over the batch. The engine's time depends on the input: the
first 1x1 conv of every unit and conv5 skip the zero (post-ReLU) channels of each pixel.

``--compare`` times the kernel sets side by side in one process, in interleaved rounds (set A,
set B, set A, ...), so that a busy or drifting machine affects both alike: raw milliseconds from
two separate runs are not comparable on a shared VM. It prints each block's median (over rounds)
of its best-of-R time per set, and the ratio of each set to the first one named.

Without WEIGHTS the shipped student (pyfer/models/tsnet_student.safetensors) is used. Timings are
single-threaded, best of R runs, for one group of images (batch <= the engine's group size);
the end-to-end line also reports the median forward() latency at that batch.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name, with its family and model where /proc/cpuinfo gives them, and the
    AMD core generation they mean: a VM's "AMD EPYC" alone does not tell a Zen 3 (AVX2) from a
    Zen 4 or 5 (AVX-512), and every speed figure needs its CPU named."""
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return platform.machine()  # (not platform.processor(): it runs `uname -p` or `sysctl`)
    fields: dict = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
        if not line.strip():  # the first processor's block is enough
            break
    name = fields.get("model name") or platform.machine()
    family, model = fields.get("cpu family", ""), fields.get("model", "")
    if not (family.isdigit() and model.isdigit()):
        return name
    generation = _amd_generation(int(family), int(model)) if "AMD" in fields.get("vendor_id", name) else ""
    return f"{name} ({generation + ', ' if generation else ''}family {family} model {model})"


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): a busy machine slows every figure."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def load_text(load: float | None) -> str:
    return "load average " + ("unknown" if load is None else f"{load:.1f}")


def run_context(threads: int | str) -> str:
    """One line to print beside speed figures: the CPU, the kernel set ``auto`` picks here and why,
    the threads (a count, or the counts compared: "1,2") and the load average when measured."""
    from pyfer import _engine

    isa = _engine.build_info()["isa"]
    return (f"CPU: {cpu_name()}, {os.cpu_count()} cores | pyfer kernels: {isa['selected']} ({isa['why']}) | "
            f"{threads} thread{'s' if threads != 1 else ''} | {load_text(load_average())}")


def _amd_generation(family: int, model: int) -> str:
    """AMD's core generation of a CPU family and model, as Linux's arch/x86/kernel/cpu/amd.c
    tells them apart ("" where unsure: the family and model are printed anyway)."""
    if family == 23:
        return "Zen 2" if model >= 0x30 else "Zen"
    if family == 25:
        return "Zen 4" if 0x10 <= model <= 0x1F or 0x60 <= model <= 0xAF else "Zen 3"
    if family == 26 and (model <= 0x2F or 0x40 <= model <= 0x4F or 0x60 <= model <= 0x7F):
        return "Zen 5"
    return ""


def default_weights() -> Path:
    """The shipped student (the Recognizer's default weights)."""
    from pyfer.recognizer import default_weights_path

    return default_weights_path()


def available_isas() -> list:
    """The CPU kernel sets this build has and this CPU runs: "portable", then "avx2" and "avx512"
    where both allow."""
    from pyfer import _engine

    return list(_engine.build_info()["isa"]["runnable"])


def make_input(source: str, batch: int, weights) -> np.ndarray:
    """(batch, C, H, W) float32 input for the network in ``weights``: ``"noise"``, or the first
    face found in an image file, detected and framed as ``Recognizer.predict`` does (YuNet, landmark
    alignment), so activations (and zero-skipping) are those of a real face."""
    from pyfer.engine import Engine

    c, h, w = Engine(str(weights), threads=1).input_shape
    if source == "noise":
        return np.random.default_rng(0).standard_normal((batch, c, h, w)).astype(np.float32)
    import cv2

    from pyfer.preprocess import PreprocessSpec, normalize
    from pyfer.recognizer import Recognizer

    if cv2.imread(str(source), cv2.IMREAD_UNCHANGED) is None:
        raise ValueError(f"--input: cannot read an image from {source!r}")
    rec = Recognizer(weights, threads=1)
    faces = rec.face_crops(source)
    if len(faces) == 0:
        raise ValueError(f"--input: no face found in {source!r}")
    x = normalize(faces[:1], PreprocessSpec.from_dict(rec.engine.preprocess))
    return np.ascontiguousarray(np.repeat(x, batch, axis=0))


WARM_UP_SECONDS = 0.3


def warm_up(eng, x) -> None:
    """Forwards until WARM_UP_SECONDS have passed (at least 3): one forward left the first timed ones
    slower (caches, the weights' first touch, the core's clock): a forward's median lay 9-27% above
    the sum of its blocks' bests (2 runs), and 4-8% once warmed like this (3 runs; Zen 4, session 46)."""
    t0, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - t0 < WARM_UP_SECONDS:
        eng.forward(x)
        n += 1


def run(weights, batch: int = 1, reps: int = 20, isa: str = "auto", peak_seconds: float = 0.3,
        source: str = "noise") -> dict:
    from pyfer import _engine
    from pyfer.engine import Engine

    eng = Engine(weights, threads=1, isa=isa)
    info = eng.info()
    x = make_input(source, batch, weights)
    warm_up(eng, x)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        eng.forward(x)
        ts.append(time.perf_counter() - t0)
    profiled = min(batch, info.get("group", batch))  # (the engine's group: a batch is run in groups)
    blocks = eng.profile(x[:profiled], reps=reps)
    # %peak is of the CPU's peak (its widest set's), so that a narrower set shows what it leaves;
    # the set's own peak is reported beside it
    runnable = available_isas()
    set_peak = _engine.fma_peak(info["isa"] if info["isa"] in runnable else "auto", peak_seconds)
    peak = set_peak if info["isa"] == runnable[-1] else max(set_peak, _engine.fma_peak(runnable[-1], peak_seconds))
    kinds: dict = {}
    for b in blocks:
        k = kinds.setdefault(b["kind"], {"seconds": 0.0, "flops": 0.0, "count": 0})
        k["seconds"] += b["seconds"]
        k["flops"] += b["flops"]
        k["count"] += 1
    for b in list(blocks) + list(kinds.values()):
        b["gflops"] = b["flops"] / b["seconds"] / 1e9 if b["seconds"] > 0 else 0.0
        b["peak_fraction"] = b["gflops"] / peak if peak > 0 else 0.0
    med = statistics.median(ts)
    return {
        "machine": {"cpu": cpu_name(), "python": platform.python_version(), "load_average": load_average()},
        "engine": info,
        "build": _engine.build_info(),
        "batch": batch,
        "profiled_batch": profiled,
        "reps": reps,
        "input": source,
        "fma_peak_gflops": peak,  # the CPU's: its widest kernel set's (runnable[-1])
        "fma_peak_isa": runnable[-1],
        "set_fma_peak_gflops": set_peak,
        "latency_ms_median": med * 1e3,
        "images_per_s": batch / med,
        "gflops_end_to_end": info["gflops_per_image"] * batch / med,
        "blocks": blocks,
        "kinds": kinds,
    }


def compare_isas(weights, isas: list, batch: int = 1, reps: int = 20, rounds: int = 7,
                 source: str = "noise") -> dict:
    """Per-block and end-to-end times of each kernel set, interleaved round by round."""
    from pyfer.engine import Engine

    engines = {isa: Engine(weights, threads=1, isa=isa) for isa in isas}
    x = make_input(source, batch, weights)
    group = x[: min(batch, engines[isas[0]].info().get("group", batch))]
    blocks: dict = {isa: [] for isa in isas}
    latency: dict = {isa: [] for isa in isas}
    for eng in engines.values():
        warm_up(eng, x)
    for _ in range(rounds):
        for isa, eng in engines.items():
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                eng.forward(x)
                ts.append(time.perf_counter() - t0)
            latency[isa].append(statistics.median(ts))
            blocks[isa].append(eng.profile(group, reps=reps))
    first = blocks[isas[0]][0]
    rows = [{"name": b["name"], "kind": b["kind"],
             "ms": {isa: 1e3 * statistics.median(r[i]["seconds"] for r in blocks[isa]) for isa in isas}}
            for i, b in enumerate(first)]
    return {"machine": {"cpu": cpu_name(), "load_average": load_average()}, "isas": isas, "batch": batch,
            "profiled_batch": len(group),
            "input": source, "rounds": rounds,
            "reps": reps, "latency_ms_median": {isa: 1e3 * statistics.median(v) for isa, v in latency.items()},
            "blocks": rows}


def format_comparison(c: dict) -> str:
    isas, ref = c["isas"], c["isas"][0]
    out = [f"machine: {c['machine']['cpu']}, {load_text(c['machine'].get('load_average'))}  |  "
           f"batch {c['batch']}, 1 thread, input {c['input']}  |  "
           f"{c['rounds']} interleaved rounds of {c['reps']} forwards and {c['reps']} profiled ones"]
    out.append("end to end (ms, median of each round's median forward): " + ", ".join(
        f"{isa} {c['latency_ms_median'][isa]:.3f}" + ("" if isa == ref else f" ({c['latency_ms_median'][isa] / c['latency_ms_median'][ref]:.2f}x {ref})")
        for isa in isas))
    out.append(f"blocks (ms, batch {c['profiled_batch']}, median of each round's best of {c['reps']}: their sum is "
               "below a forward's median: each block's best is taken on its own):")
    head = f"{'block':<12} {'kind':<24} " + " ".join(f"{isa + ' ms':>12}" for isa in isas)
    head += "".join(f" {isa + '/' + ref:>16}" for isa in isas[1:])
    out.append(head)
    for r in c["blocks"]:
        line = f"{r['name']:<12} {r['kind']:<24} " + " ".join(f"{r['ms'][isa]:12.4f}" for isa in isas)
        line += "".join(f" {r['ms'][isa] / r['ms'][ref]:16.2f}" if r['ms'][ref] > 0 else f" {'-':>16}"
                        for isa in isas[1:])
        out.append(line)
    return "\n".join(out)


def format_report(r: dict) -> str:
    out = []
    e = r["engine"]
    peak = (f"measured FMA peak {r['fma_peak_gflops']:.1f} GFLOP/s (1 core, {r.get('fma_peak_isa', e['isa'])}"
            + (f"; {e['isa']}'s own: {r['set_fma_peak_gflops']:.1f}" if r.get("fma_peak_isa", e["isa"]) != e["isa"]
               else "") + ")")
    out.append(f"machine: {r['machine']['cpu']}  |  isa {e['isa']}  |  {peak}  |  "
               f"{load_text(r['machine'].get('load_average'))}")
    out.append(f"model: {e['architecture']} stem={e['stem']} input={e['input_shape']} "
               f"{e['gflops_per_image'] * 1e3:.1f} MFLOP/image  |  batch {r['batch']}, 1 thread  |  "
               f"input {r.get('input', 'noise')}")
    out.append("(GFLOP/s count the dense FLOPs of each layer: where the zero-skipping 1x1 convs skip "
               "work, the rate is an effective one and can exceed the FMA peak)")
    out.append(f"end to end: {r['latency_ms_median']:.3f} ms median of {r.get('reps', '?')} forwards, "
               f"{r['images_per_s']:.1f} images/s, {r['gflops_end_to_end']:.1f} GFLOP/s "
               f"({r['gflops_end_to_end'] / r['fma_peak_gflops']:.0%} of peak)")
    profiled = r.get("profiled_batch", r["batch"])
    out.append(f"blocks: each one's best of {r.get('reps', '?')} profiled forwards of batch {profiled} (their sum: "
               f"{sum(b['seconds'] for b in r['blocks']) * 1e3:.3f} ms, "
               + ("below the median forward: each block's best is taken on its own, while one profiled forward's "
                  "blocks sum to its time within 1%)" if profiled == r["batch"]
                  else f"a group of {profiled}: the engine runs a batch of {r['batch']} in such groups)"))
    out.append("")
    out.append(f"{'block':<12} {'kind':<24} {'ms':>8} {'MFLOP':>8} {'GFLOP/s':>8} {'%peak':>6}")
    for b in r["blocks"]:
        out.append(f"{b['name']:<12} {b['kind']:<24} {b['seconds'] * 1e3:8.3f} {b['flops'] / 1e6:8.2f} "
                   f"{b['gflops']:8.1f} {b['peak_fraction']:6.0%}")
    out.append("")
    out.append(f"{'kind':<32} {'n':>3} {'ms':>8} {'GFLOP/s':>8} {'%peak':>6}")
    for k, v in r["kinds"].items():
        out.append(f"{k:<32} {v['count']:>3} {v['seconds'] * 1e3:8.3f} {v['gflops']:8.1f} {v['peak_fraction']:6.0%}")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pyfer bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", help="a pyfer .safetensors export (default: the shipped student)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--isa", default="auto", metavar="auto|avx512|avx2|portable|all|A,B",
                    help="kernel set; all: each one this build and CPU have, one report each; "
                         "a comma list names several")
    ap.add_argument("--compare", action="store_true",
                    help="time the named kernel sets side by side, interleaved, with ratios to the first")
    ap.add_argument("--rounds", type=int, default=7, help="with --compare: interleaved rounds")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--input", default="noise", metavar="noise|IMAGE",
                    help="network input: a fixed noise array, or the first face found in IMAGE (as predict orders them)")
    args = ap.parse_args(argv)
    weights = Path(args.weights) if args.weights else default_weights()
    if not weights.is_file():
        ap.error(f"no weights at {weights}; pass a .safetensors export")
    if args.batch < 1 or args.reps < 1:
        ap.error("--batch and --reps must be >= 1")
    if args.input != "noise" and not Path(args.input).is_file():
        ap.error(f"--input: no image at {args.input}")
    from pyfer.engine import Engine

    try:
        Engine(str(weights), threads=1)
    except ValueError as e:  # e.g. the YuNet detector's weights, which are not a classifier export
        ap.error(f"{e} (YuNet's network is timed by scripts/yunet_speed.py --isas)")
    known = ["auto", "avx512", "avx2", "portable"]
    isas = available_isas() if args.isa == "all" else args.isa.split(",")
    if any(isa not in known for isa in isas):
        ap.error(f"--isa: choose from {known + ['all']} or a comma list of them, got {args.isa!r}")
    if args.compare:
        if len(isas) < 2 or args.rounds < 1:
            ap.error("--compare needs two or more kernel sets (--isa all or --isa A,B) and --rounds >= 1")
        try:
            c = compare_isas(weights, isas, args.batch, args.reps, args.rounds, args.input)
        except ValueError as e:  # a set this build or CPU lacks; an image without a face
            ap.error(str(e))
        print(json.dumps(c, indent=2) if args.json else format_comparison(c))
        return 0
    try:
        rs = [run(weights, args.batch, args.reps, isa, source=args.input) for isa in isas]
    except ValueError as e:
        ap.error(str(e))
    if args.json:
        several = args.isa == "all" or "," in args.isa  # a list whatever this CPU runs
        print(json.dumps(rs if several else rs[0], indent=2, default=str))
    else:
        print("\n\n".join(format_report(r) for r in rs))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
