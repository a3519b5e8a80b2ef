"""pyfer's engine against PyTorch eager, ONNX Runtime and OpenCV DNN on the same weights (dev tree).

    taskset -c 1 python scripts/bench_compare.py [WEIGHTS] [--batches 1,64] [--rounds 7] [--clock wall|cpu]
                                                 [--input noise|IMAGE] [--isas portable] [--json]

Needs the dev install (torch, onnxruntime, opencv and the ``training`` package of this repository:
ONNX via training.export.export_onnx, the PyTorch reference via training.models.from_safetensors),
so it lives here and not in the installed package; ``pyfer bench`` times the engine alone.

Every runtime runs one thread, interleaved round-robin so background load hits them alike; the
report gives medians and ratios against ONNX Runtime, after a line naming the CPU, the kernel set,
the threads and the load; ``--json`` prints {"context": that line, "rows": [...]}. Without WEIGHTS
the shipped student is used.
``--input``: a fixed noise array or the largest face in IMAGE, detected and framed as Recognizer.predict does (pyfer.bench.make_input).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the training package of this checkout
    sys.path.insert(0, str(REPO))

from pyfer.bench import default_weights, make_input, run_context  # noqa: E402


def make_runners(weights, batch: int, threads: int = 1, onnx_path=None, isas=(), source: str = "noise") -> dict:
    """name -> zero-arg callable running one forward pass of ``batch`` images (same input).

    ``isas``: extra engine kernel sets to time as well (e.g. ("portable",)), as "pyfer[ISA]"."""
    import tempfile

    import cv2
    import onnxruntime as ort
    import torch

    from pyfer.engine import Engine
    from training.export import export_onnx
    from training.export import from_safetensors

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    eng = Engine(weights, threads=threads)
    c, h, w = eng.input_shape
    x = make_input(source, batch, weights)
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
    ap = argparse.ArgumentParser(prog="scripts/bench_compare.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", help="a pyfer .safetensors export (default: the shipped student)")
    ap.add_argument("--batches", default="1,64", help="batch sizes (comma separated)")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="ratio of wall-time or thread-CPU-time medians (cpu on a busy machine)")
    ap.add_argument("--input", default="noise", metavar="noise|IMAGE",
                    help="network input: a fixed noise array, or the largest face found in IMAGE")
    ap.add_argument("--isas", default="", help="also time the engine with these kernel sets "
                    "(comma separated, e.g. portable), as pyfer[ISA]")
    ap.add_argument("--json", action="store_true", help="print the raw rows as JSON")
    args = ap.parse_args(argv)
    weights = Path(args.weights) if args.weights else default_weights()
    if not weights.is_file():
        ap.error(f"no weights at {weights}; pass a .safetensors export")
    if args.input != "noise" and not Path(args.input).is_file():
        ap.error(f"--input: no image at {args.input}")
    isas = tuple(i for i in args.isas.split(",") if i)
    context = run_context(threads=1)  # (before the runs: the load they meet, not the load they make)
    rows = compare(weights, tuple(int(b) for b in args.batches.split(",")), args.rounds, isas=isas,
                   source=args.input)
    if args.json:
        print(json.dumps({"context": context, "rows": rows}, indent=2))
    else:
        print(context + "\n" + format_compare(rows, args.clock))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
