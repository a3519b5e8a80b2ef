"""Engine benchmark for performance work: per-block timings and GFLOP/s against the measured
fp32 FMA peak of this machine, for one kernel set or each of them (``--isa all``).

    python -m pyfer.bench [WEIGHTS] [--batch N] [--reps R] [--isa auto|avx2|portable|all] [--json]
    pyfer bench ...                      (the CLI forwards to main(argv))

Only the installed package is used (no torch, no training code), so this runs from a wheel. The
comparison against PyTorch, ONNX Runtime and OpenCV DNN needs the dev tree (training.export for
the ONNX file): ``python scripts/bench_compare.py`` there (BENCHMARKS.md).

``--input``: what the network sees. ``noise`` (default) is a fixed standard-normal array; an image
path uses the largest face the Haar detector finds in it (the whole image if none), preprocessed
as the Recognizer does, repeated over the batch. The engine's time depends on the input: the
first 1x1 conv of every unit and conv5 skip the zero (post-ReLU) channels of each pixel.

Without WEIGHTS the shipped student (pyfer/models/tsnet_student.safetensors) is used. Timings are
single-threaded, best of R runs, for one group of images (batch <= the engine's group size);
the end-to-end line also reports the median forward() latency at that batch.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    """(batch, C, H, W) float32 input for the network in ``weights``: ``"noise"``, or the largest
    face in an image file, detected and framed as ``Recognizer.predict`` does (YuNet, landmark
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


def run(weights, batch: int = 1, reps: int = 20, isa: str = "auto", peak_seconds: float = 0.3,
        source: str = "noise") -> dict:
    from pyfer import _engine
    from pyfer.engine import Engine

    eng = Engine(weights, threads=1, isa=isa)
    info = eng.info()
    x = make_input(source, batch, weights)
    eng.forward(x)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        eng.forward(x)
        ts.append(time.perf_counter() - t0)
    blocks = eng.profile(x[: min(batch, info.get("group", batch))], reps=reps)
    peak = _engine.fma_peak(info["isa"] if info["isa"] in available_isas() else "auto", peak_seconds)
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
        "machine": {"cpu": cpu_name(), "python": platform.python_version()},
        "engine": info,
        "build": _engine.build_info(),
        "batch": batch,
        "input": source,
        "fma_peak_gflops": peak,
        "latency_ms_median": med * 1e3,
        "images_per_s": batch / med,
        "gflops_end_to_end": info["gflops_per_image"] * batch / med,
        "blocks": blocks,
        "kinds": kinds,
    }


def format_report(r: dict) -> str:
    out = []
    e = r["engine"]
    out.append(f"machine: {r['machine']['cpu']}  |  isa {e['isa']}  |  measured FMA peak "
               f"{r['fma_peak_gflops']:.1f} GFLOP/s (1 core)")
    out.append(f"model: {e['architecture']} stem={e['stem']} input={e['input_shape']} "
               f"{e['gflops_per_image'] * 1e3:.1f} MFLOP/image  |  batch {r['batch']}, 1 thread  |  "
               f"input {r.get('input', 'noise')}")
    out.append("(GFLOP/s count the dense FLOPs of each layer: where the zero-skipping 1x1 convs skip "
               "work, the rate is an effective one and can exceed the FMA peak)")
    out.append(f"end to end: {r['latency_ms_median']:.3f} ms median, {r['images_per_s']:.1f} images/s, "
               f"{r['gflops_end_to_end']:.1f} GFLOP/s ({r['gflops_end_to_end'] / r['fma_peak_gflops']:.0%} of peak)")
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
    ap.add_argument("--isa", default="auto", choices=["auto", "avx512", "avx2", "portable", "all"],
                    help="kernel set; all: each one this build and CPU have, one report each")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--input", default="noise", metavar="noise|IMAGE",
                    help="network input: a fixed noise array, or the largest face found in IMAGE")
    args = ap.parse_args(argv)
    weights = Path(args.weights) if args.weights else default_weights()
    if not weights.is_file():
        ap.error(f"no weights at {weights}; pass a .safetensors export")
    if args.batch < 1 or args.reps < 1:
        ap.error("--batch and --reps must be >= 1")
    if args.input != "noise" and not Path(args.input).is_file():
        ap.error(f"--input: no image at {args.input}")
    isas = available_isas() if args.isa == "all" else [args.isa]
    rs = [run(weights, args.batch, args.reps, isa, source=args.input) for isa in isas]
    if args.json:
        print(json.dumps(rs if args.isa == "all" else rs[0], indent=2, default=str))
    else:
        print("\n\n".join(format_report(r) for r in rs))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
