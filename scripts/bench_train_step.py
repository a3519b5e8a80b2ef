"""Time one training step (forward, backward, SGD step) of the teacher and the student, fp32 against
bfloat16 autocast (`training.train --amp`), side by side in one run.

Issue 13 asks whether bf16 makes CPU training cheaper on CPUs with AVX512-BF16. The step is the
one `training.train` runs: batch 128 of 64x64 gray faces, the recipe loss with a distillation
target. With --teacher-export, also the teacher's answers on one batch as consistent-teaching
distillation needs them: pyfer's engine (what `training.train distill` uses on CPU) against
PyTorch fp32 and bf16 autocast. With --extras, also the student's fp32 step with the training-only
extras that change its cost: MixStyle after every early stage (``--mixstyle 1``, its dearest
setting) and sharpness-aware minimization (``--sam``, a second pass), interleaved with the plain
step. Medians of --rounds timed steps after --warmup untimed ones; the CPU's name and its bf16
support are printed with the figures.

    python scripts/bench_train_step.py --threads 1 --rounds 10 \
        --teacher-export models/teacher_effresnet18_fp16.safetensors
    python scripts/bench_train_step.py --threads 2 --rounds 7 --models --extras
    python scripts/bench_train_step.py --threads 2 --rounds 7 --warmup 2 --layouts --compile

With --layouts: each model's fp32 and bf16 step with NCHW against channels_last tensors (and with
--compile also torch.compile'd), interleaved; why training runs channels_last on the CPU too.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from pyfer.bench import cpu_name
from training.mixstyle import MixStyle
from training.models import build_student, build_teacher
from training.sam import sharpness_probe
from training.train import cpu_has_bf16, recipe_loss


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


def time_student_extras(batch: int, rounds: int, warmup: int) -> dict:
    """Medians of the student's fp32 step: plain, with MixStyle on every batch, and with SAM."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 64, 64, generator=gen)
    target = F.softmax(torch.randn(batch, 8, generator=gen), 1)
    t_probs = F.softmax(torch.randn(batch, 8, generator=gen), 1)

    def stepper(mixstyle: bool, sam: float):
        torch.manual_seed(0)
        model = build_student().train()
        if mixstyle:
            MixStyle(1.0).attach(model, "shufflenetv2")
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def loss():
            return recipe_loss(model(x), target, t_probs, 8.0, 0.4, 0.0, None)

        def step():
            opt.zero_grad(set_to_none=True)
            loss().backward()
            if sam:
                with sharpness_probe(model, sam):
                    opt.zero_grad(set_to_none=True)
                    loss().backward()
            opt.step()
        return step

    steps = {"plain": stepper(False, 0.0), "mixstyle": stepper(True, 0.0), "sam": stepper(False, 0.05)}
    return interleaved_medians(steps, rounds, warmup)


def time_layouts(name: str, batch: int, rounds: int, warmup: int, compiled: bool) -> dict:
    """Medians of one model's fp32 and bf16 steps with NCHW (contiguous) against channels_last
    tensors, and with --compile also torch.compile'd channels_last, interleaved."""
    builders = {"teacher": build_teacher, "student": build_student}
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, 64, 64, generator=gen)
    target = F.softmax(torch.randn(batch, 8, generator=gen), 1)
    t_probs = F.softmax(torch.randn(batch, 8, generator=gen), 1)

    def stepper(channels_last: bool, amp: bool, compile_it: bool = False):
        torch.manual_seed(0)
        model = builders[name]().train()
        xx = x
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            xx = x.contiguous(memory_format=torch.channels_last)
        forward = torch.compile(model) if compile_it else model
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = recipe_loss(forward(xx).float(), target, t_probs, 8.0, 0.4, 0.0, None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    steps = {"nchw_fp32": stepper(False, False), "channels_last_fp32": stepper(True, False),
             "nchw_bf16": stepper(False, True), "channels_last_bf16": stepper(True, True)}
    if compiled:
        steps["compiled_channels_last_fp32"] = stepper(True, False, True)
    return interleaved_medians(steps, rounds, warmup)


def interleaved_medians(runners: dict, rounds: int, warmup: int) -> dict:
    """Median seconds of each runner, the runners taking turns so that background load hits all alike."""
    times = {name: [] for name in runners}
    for i in range(warmup + rounds):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def time_teacher_answers(export: str, threads: int, batch: int, rounds: int, warmup: int) -> dict:
    from pyfer.engine import Engine
    from training.predict import load_model

    x = torch.randn(batch, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    engine = Engine(export, threads=threads)
    model = load_model(export)[0].eval()

    def torch_forward(amp: bool):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            return model(x).float()

    runners = {"engine": lambda: engine.forward(x.numpy()), "torch_fp32": lambda: torch_forward(False),
               "torch_bf16": lambda: torch_forward(True)}
    medians = interleaved_medians(runners, rounds, warmup)
    ref = torch.from_numpy(engine.forward(x.numpy()))
    gap = (torch_forward(True) - ref).abs().max().item()
    return medians | {"bf16_max_logit_gap": gap}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", nargs="*", default=["teacher", "student"], choices=("teacher", "student"))
    ap.add_argument("--extras", action="store_true", help="also time the student's step with MixStyle and with SAM")
    ap.add_argument("--layouts", action="store_true",
                    help="time NCHW against channels_last tensors (fp32 and bf16) for each of --models")
    ap.add_argument("--compile", action="store_true", help="with --layouts, also a torch.compile'd channels_last step")
    ap.add_argument("--teacher-export", help="also time the teacher's answers per batch from this export")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{cpu_name()} (bf16 in hardware: {'yes' if cpu_has_bf16() else 'no'}), torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    builders = {"teacher": build_teacher, "student": build_student}
    results = {}
    if args.layouts:
        for name in args.models:
            layouts = time_layouts(name, args.batch, args.rounds, args.warmup, args.compile)
            results[f"{name}_layouts"] = layouts
            base = layouts["nchw_fp32"]
            print(f"{name} step: " + ", ".join(f"{k} {t * 1e3:.1f} ms ({base / t:.2f}x)" for k, t in layouts.items()),
                  flush=True)
        print(json.dumps(results))
        return
    for name in args.models:
        torch.manual_seed(0)
        model = builders[name]()
        fp32 = statistics.median(time_steps(model, False, args.batch, args.rounds, args.warmup))
        bf16 = statistics.median(time_steps(model, True, args.batch, args.rounds, args.warmup))
        results[name] = {"fp32_s": fp32, "bf16_s": bf16, "speedup": fp32 / bf16}
        print(f"{name:8s} fp32 {fp32 * 1e3:8.1f} ms/step   bf16 autocast {bf16 * 1e3:8.1f} ms/step   "
              f"ratio {fp32 / bf16:.2f}x", flush=True)
    if args.extras:
        extras = time_student_extras(args.batch, args.rounds, args.warmup)
        results["student_extras"] = extras
        print("student fp32 step: " + ", ".join(f"{name} {t * 1e3:.1f} ms ({t / extras['plain']:.2f}x)"
                                              for name, t in extras.items()), flush=True)
    if args.teacher_export:
        answers = time_teacher_answers(args.teacher_export, args.threads, args.batch, args.rounds, args.warmup)
        results["teacher_answers"] = answers
        print(f"teacher answers per batch: engine {answers['engine'] * 1e3:.1f} ms, PyTorch fp32 "
              f"{answers['torch_fp32'] * 1e3:.1f} ms, bf16 {answers['torch_bf16'] * 1e3:.1f} ms "
              f"(bf16 logits within {answers['bf16_max_logit_gap']:.3f} of the engine's)", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
