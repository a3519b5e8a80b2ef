"""pyfer CUDA backend vs PyTorch CUDA, for BENCHMARKS.md (run by scripts/gpu_check.sh).

    python3 scripts/cuda_bench.py --out OUT.md [--json OUT.json] [--quick]

Models: the shipped student (pyfer/models/tsnet_student.safetensors) and the fp16-stored teacher
(models/teacher_effresnet18_fp16.safetensors, run in fp32), both rebuilt in PyTorch with
training.models.from_safetensors. Batches 1 and 256.

- pyfer CUDA: Engine(path, device="cuda").forward(numpy) -- host input to host logits, so it
  includes the upload and download (through pinned buffers, one CUDA graph per batch size).
- PyTorch eager fp32: TF32 off (bit-for-bit comparable fp32), cudnn.benchmark on; input already
  on the GPU, and "+H2D" the same with the host->device copy and the logits' .cpu() included.
- PyTorch fp32 with cuDNN TF32 (PyTorch's default for convolutions), input on the GPU.
- PyTorch channels_last fp16 (model.half(), channels_last input), input on the GPU.
Times: median of timed calls after warm-up, synchronised; latency in ms per call, throughput in
images/s.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import pyfer  # noqa: E402
from pyfer.atomic import write_file  # noqa: E402
from training.export import from_safetensors  # noqa: E402

MODELS = {"student": REPO / "pyfer" / "models" / "tsnet_student.safetensors",
          "teacher": REPO / "models" / "teacher_effresnet18_fp16.safetensors"}


def timeit(fn, reps, warm):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def bench_model(name, path, batches, quick):
    rows = []
    eng = pyfer.Engine(path, device="cuda")
    c, h, w = eng.input_shape
    ref = from_safetensors(path).eval()
    for n in batches:
        reps, warm = ((50, 10) if quick else (300, 30)) if n == 1 else ((10, 3) if quick else (40, 8))
        x = np.random.default_rng(n).standard_normal((n, c, h, w)).astype(np.float32)
        res = {"model": name, "batch": n}
        res["pyfer_cuda"] = timeit(lambda: eng.forward(x), reps, warm)

        with torch.no_grad():
            torch.backends.cudnn.benchmark = True
            m32 = ref.to("cuda").float()
            xg = torch.from_numpy(x).cuda()
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            res["torch_fp32"] = timeit(lambda: m32(xg), reps, warm)
            res["torch_fp32_h2d"] = timeit(lambda: m32(torch.from_numpy(x).cuda()).cpu(), reps, warm)
            want = m32(xg).cpu().numpy()
            torch.backends.cudnn.allow_tf32 = True
            res["torch_fp32_tf32"] = timeit(lambda: m32(xg), reps, warm)
            m16 = from_safetensors(path).eval().to("cuda").half().to(memory_format=torch.channels_last)
            x16 = xg.half().contiguous(memory_format=torch.channels_last)
            res["torch_fp16_cl"] = timeit(lambda: m16(x16), reps, warm)
            del m16, x16
            torch.backends.cudnn.allow_tf32 = False
        got = eng.forward(x)
        res["max_rel_err_vs_torch_fp32"] = float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))
        print(json.dumps(res), flush=True)
        rows.append(res)
    return rows


def fmt(rows, gpu, date):
    cols = [("pyfer_cuda", "pyfer CUDA (host→host)"), ("torch_fp32", "PyTorch fp32"),
            ("torch_fp32_h2d", "PyTorch fp32 +H2D/D2H"), ("torch_fp32_tf32", "PyTorch fp32, TF32 conv"),
            ("torch_fp16_cl", "PyTorch fp16 channels_last")]
    out = [f"### CUDA backend on {gpu} ({date})", "",
           f"torch {torch.__version__}, CUDA {torch.version.cuda}; pyfer {pyfer.build_info().get('version')} "
           f"built for {pyfer.build_info().get('cuda_archs')}. `scripts/cuda_bench.py` (median of timed calls "
           "after warm-up; PyTorch inputs already on the GPU unless marked +H2D/D2H).", ""]
    out.append("| model | batch | " + " | ".join(c[1] for c in cols) + " | pyfer vs PyTorch fp32 | max rel err |")
    out.append("|---|---:|" + "---:|" * len(cols) + "---:|---:|")
    for r in rows:
        n = r["batch"]
        if n == 1:
            cells = [f"{r[k] * 1e3:.3f} ms" for k, _ in cols]
            ratio = f"{r['pyfer_cuda'] / r['torch_fp32']:.2f}x latency"
        else:
            cells = [f"{n / r[k]:,.0f} img/s" for k, _ in cols]
            ratio = f"{r['torch_fp32'] / r['pyfer_cuda']:.2f}x throughput"
        out.append(f"| {r['model']} | {n} | " + " | ".join(cells) + f" | {ratio} | {r['max_rel_err_vs_torch_fp32']:.1e} |")
    st = {(r["model"], r["batch"]): r for r in rows}
    out.append("")
    if ("student", 1) in st:
        r = st[("student", 1)]
        ok = r["pyfer_cuda"] <= 0.5 * r["torch_fp32"]
        out.append(f"- Target student batch-1 latency <= 0.5x PyTorch eager fp32: "
                   f"{r['pyfer_cuda'] / r['torch_fp32']:.2f}x -> {'met' if ok else 'NOT met'}.")
    if ("student", 256) in st:
        r = st[("student", 256)]
        ok = r["pyfer_cuda"] <= r["torch_fp32"]
        out.append(f"- Target student batch-256 throughput >= 1.0x PyTorch fp32: "
                   f"{r['torch_fp32'] / r['pyfer_cuda']:.2f}x -> {'met' if ok else 'NOT met'}.")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--models", default="student,teacher")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("cuda_bench: PyTorch sees no CUDA GPU")
    gpu = torch.cuda.get_device_name(0)
    date = dt.date.today().isoformat()
    batches = [int(b) for b in a.batches.split(",")]
    rows = []
    for name in a.models.split(","):
        try:
            rows += bench_model(name, MODELS[name], batches, a.quick)
        except Exception as e:  # keep what was measured
            print(f"cuda_bench: {name} failed: {type(e).__name__}: {e}", flush=True)
        write_file(Path(a.out), fmt(rows, gpu, date))
    if a.json:
        write_file(Path(a.json), json.dumps({"gpu": gpu, "date": date, "rows": rows}, indent=1))
    print(Path(a.out).read_text())


if __name__ == "__main__":
    main()
