"""Engine benchmark for performance work: per-block timings and GFLOP/s against the measured
fp32 FMA peak of this machine.

    python -m pyfer.bench [WEIGHTS] [--batch N] [--reps R] [--isa auto|avx2|portable] [--json]
    python -m pyfer.bench [WEIGHTS] --compare [--batches 1,64] [--rounds 7]
    pyfer bench ...                      (the CLI forwards to main(argv))

``--input``: what the network sees. ``noise`` (default) is a fixed standard-normal array; an image
path uses the largest face the Haar detector finds in it (the whole image if none), preprocessed
as the Recognizer does, repeated over the batch. The engine's time depends on the input: the
first 1x1 conv of every unit and conv5 skip the zero (post-ReLU) channels of each pixel.

``--compare`` times the engine against PyTorch eager, ONNX Runtime and OpenCV DNN on the same
weights (ONNX via training.export.export_onnx; needs torch, onnxruntime, opencv), one thread each,
interleaved round-robin so background load hits every runtime alike; reports medians and ratios.

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
    return Path(__file__).resolve().parent / "models" / "tsnet_student.safetensors"


def make_input(source: str, batch: int, shape, preprocess: dict | None = None) -> np.ndarray:
    """(batch, C, H, W) float32 network input: ``"noise"`` or a face from an image file
    (``preprocess``: the export's preprocessing metadata, Engine.preprocess)."""
    c, h, w = shape
    if source == "noise":
        return np.random.default_rng(0).standard_normal((batch, c, h, w)).astype(np.float32)
    import cv2

    from pyfer.detect import HaarDetector, crop_face
    from pyfer.preprocess import PreprocessSpec, prepare_faces, to_gray

    image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"--input: cannot read an image from {source!r}")
    gray = to_gray(image)
    boxes = HaarDetector()(gray)
    crop = crop_face(gray, max(boxes, key=lambda b: b[2] * b[3])) if boxes else gray
    spec = PreprocessSpec.from_dict(preprocess) if preprocess else PreprocessSpec(input_size=h)
    x = prepare_faces([crop], spec)
    return np.ascontiguousarray(np.repeat(x, batch, axis=0))


def run(weights, batch: int = 1, reps: int = 20, isa: str = "auto", peak_seconds: float = 0.3,
        source: str = "noise") -> dict:
    from pyfer import _engine
    from pyfer.engine import Engine

    eng = Engine(weights, threads=1, isa=isa)
    info = eng.info()
    x = make_input(source, batch, eng.input_shape, eng.preprocess)
    eng.forward(x)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        eng.forward(x)
        ts.append(time.perf_counter() - t0)
    blocks = eng.profile(x[: min(batch, info.get("group", batch))], reps=reps)
    peak = _engine._testing.fma_peak(info["isa"] if info["isa"] in ("avx2", "portable") else "auto", peak_seconds)
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


def make_runners(weights, batch: int, threads: int = 1, onnx_path=None, isas=(), source: str = "noise") -> dict:
    """name -> zero-arg callable running one forward pass of ``batch`` images (same input).

    ``isas``: extra engine kernel sets to time as well (e.g. ("portable",)), as "pyfer[ISA]"."""
    import tempfile

    import cv2
    import onnxruntime as ort
    import torch

    from pyfer.engine import Engine
    from training.export import export_onnx
    from training.models import from_safetensors

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    eng = Engine(weights, threads=threads)
    c, h, w = eng.input_shape
    x = make_input(source, batch, eng.input_shape, eng.preprocess)
    if onnx_path is None:
        onnx_path = Path(tempfile.mkdtemp(prefix="pyfer_bench_")) / (Path(weights).stem + ".onnx")
    if not Path(onnx_path).exists():
        export_onnx(weights, onnx_path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    # OpenCV DNN mis-infers shapes of the channel-shuffle reshape/transpose with a dynamic batch
    # axis; give it a static-batch export of the same folded model.
    model = from_safetensors(weights)
    cv_onnx = Path(onnx_path).with_name(Path(onnx_path).stem + f".static{batch}.onnx")
    torch.onnx.export(model, (torch.zeros(batch, c, h, w),), str(cv_onnx), input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False)
    net = cv2.dnn.readNetFromONNX(str(cv_onnx))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    xt = torch.from_numpy(x)

    def torch_run():
        with torch.inference_mode():
            return model(xt).numpy()

    def cv_run():
        net.setInput(x)
        return net.forward()

    extra = {f"pyfer[{i}]": (lambda e: lambda: e.forward(x))(Engine(weights, threads=threads, isa=i)) for i in isas}
    return {
        "pyfer": lambda: eng.forward(x),
        **extra,
        "onnxruntime": lambda: sess.run(None, {"input": x})[0],
        "pytorch": torch_run,
        "opencv": cv_run,
    }


def compare(weights, batches=(1, 64), rounds: int = 7, min_time: float = 0.2, isas=(), source: str = "noise") -> list:
    """Interleaved timing of every runtime; returns rows (batch, runtime, median ms, images/s, cpu_ms).

    Each sample records wall time and the calling thread's CPU time (``time.thread_time``): every
    runtime here computes in the calling thread at one thread, so on a shared, oversubscribed
    machine the CPU time leaves out the time the process was descheduled (the wall ratios then
    mostly measure the scheduler)."""
    rows = []
    for batch in batches:
        runners = make_runners(weights, batch, isas=isas, source=source)
        ref = runners["pytorch"]()
        for name, f in runners.items():  # warm up and check agreement
            out = np.asarray(f())
            err = float(np.max(np.abs(out - ref)) / max(1.0, float(np.max(np.abs(ref)))))
            if err > 1e-3:
                raise AssertionError(f"{name} disagrees with PyTorch: {err}")
        inner = {}
        for name, f in runners.items():  # calls per sample so that a sample lasts >= min_time
            t0 = time.perf_counter()
            f()
            inner[name] = max(1, int(min_time / max(1e-6, time.perf_counter() - t0)))
        samples: dict = {k: [] for k in runners}
        cpu: dict = {k: [] for k in runners}
        for _ in range(rounds):
            for name, f in runners.items():
                t0, c0 = time.perf_counter(), time.thread_time()
                for _ in range(inner[name]):
                    f()
                samples[name].append((time.perf_counter() - t0) / inner[name])
                cpu[name].append((time.thread_time() - c0) / inner[name])
        for name, s in samples.items():
            med = statistics.median(s)
            rows.append({"batch": batch, "runtime": name, "ms": med * 1e3, "images_per_s": batch / med,
                         "cpu_ms": statistics.median(cpu[name]) * 1e3})
    return rows


def format_compare(rows: list, clock: str = "wall") -> str:
    """clock: which median the "vs ORT" ratio uses, "wall" or "cpu" (thread CPU time)."""
    key = "cpu_ms" if clock == "cpu" else "ms"
    out = [f"{'batch':>5} {'runtime':<15} {'median ms':>10} {'images/s':>10} {'cpu ms':>10} {'vs ORT':>8}"]
    for batch in sorted({r["batch"] for r in rows}):
        rs = [r for r in rows if r["batch"] == batch]
        ort_ms = next(r[key] for r in rs if r["runtime"] == "onnxruntime")
        for r in rs:
            out.append(f"{batch:>5} {r['runtime']:<15} {r['ms']:10.3f} {r['images_per_s']:10.1f} "
                       f"{r.get('cpu_ms', float('nan')):10.3f} {r[key] / ort_ms:7.2f}x")
    out.append(f"(vs ORT: ratio of {'thread CPU time' if key == 'cpu_ms' else 'wall time'} medians; "
               "lower is faster)")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pyfer bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", help="a pyfer .safetensors export (default: the shipped student)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--isa", default="auto", choices=["auto", "avx2", "portable"])
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON")
    ap.add_argument("--compare", action="store_true", help="engine vs PyTorch / ONNX Runtime / OpenCV DNN")
    ap.add_argument("--batches", default="1,64", help="batch sizes for --compare (comma separated)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds for --compare")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="--compare: ratio of wall-time or thread-CPU-time medians (cpu on a busy machine)")
    ap.add_argument("--input", default="noise", metavar="noise|IMAGE",
                    help="network input: a fixed noise array, or the largest face found in IMAGE")
    ap.add_argument("--isas", default="", help="--compare: also time the engine with these kernel sets "
                    "(comma separated, e.g. portable), as pyfer[ISA]")
    args = ap.parse_args(argv)
    weights = Path(args.weights) if args.weights else default_weights()
    if not weights.is_file():
        ap.error(f"no weights at {weights}; pass a .safetensors export")
    if args.batch < 1 or args.reps < 1:
        ap.error("--batch and --reps must be >= 1")
    if args.compare:
        isas = tuple(i for i in args.isas.split(",") if i)
        rows = compare(weights, tuple(int(b) for b in args.batches.split(",")), args.rounds, isas=isas,
                       source=args.input)
        print(json.dumps(rows, indent=2) if args.json else format_compare(rows, args.clock))
        return 0
    if args.input != "noise" and not Path(args.input).is_file():
        ap.error(f"--input: no image at {args.input}")
    r = run(weights, args.batch, args.reps, args.isa, source=args.input)
    print(json.dumps(r, indent=2, default=str) if args.json else format_report(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
