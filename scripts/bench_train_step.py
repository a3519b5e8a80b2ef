"""Time one training step (forward, backward, SGD step) of the teacher and the student, fp32 against
bfloat16 autocast (`training.train --amp`), side by side in one run.

Issue 13 asks whether bf16 makes CPU training cheaper on CPUs with AVX512-BF16. The step is the
one `training.train` runs: batch 128 of 64x64 gray faces, the recipe loss with a distillation
target. Medians of --rounds timed steps after --warmup untimed ones; the CPU's name and its bf16
support are printed with the figures.

    python scripts/bench_train_step.py --threads 1 --rounds 10
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from training.models import build_student, build_teacher
from training.train import cpu_has_bf16, recipe_loss


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "unknown CPU"
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in info.splitlines() if ":" in line)}
    name, family = fields.get("model name", "unknown CPU"), fields.get("cpu family", "?")
    return f"{name} (family {family}; bf16 in hardware: {'yes' if cpu_has_bf16() else 'no'})"


def time_steps(model: torch.nn.Module, amp: bool, batch: int, rounds: int, warmup: int) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 64, 64, generator=gen)
    target = F.softmax(torch.randn(batch, 8, generator=gen), 1)
    t_probs = F.softmax(torch.randn(batch, 8, generator=gen), 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model.train()
    times = []
    for i in range(warmup + rounds):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(x).float()
            loss = recipe_loss(logits, target, t_probs, 8.0, 0.4, 0.0, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if not torch.isfinite(loss):
        raise SystemExit(f"non-finite loss with amp={amp}")
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["teacher", "student"], choices=("teacher", "student"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()}, torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    builders = {"teacher": build_teacher, "student": build_student}
    results = {}
    for name in args.models:
        torch.manual_seed(0)
        model = builders[name]()
        fp32 = statistics.median(time_steps(model, False, args.batch, args.rounds, args.warmup))
        bf16 = statistics.median(time_steps(model, True, args.batch, args.rounds, args.warmup))
        results[name] = {"fp32_s": fp32, "bf16_s": bf16, "speedup": fp32 / bf16}
        print(f"{name:8s} fp32 {fp32 * 1e3:8.1f} ms/step   bf16 autocast {bf16 * 1e3:8.1f} ms/step   "
              f"ratio {fp32 / bf16:.2f}x", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
