"""Per-op A/B timing of the CPU kernel sets, on the shipped student's shapes at batch 1, one thread.

    taskset -c 1 python scripts/bench_ops.py [WEIGHTS] [--isas avx512,avx2] [--ops dw3x3,conv]
                                             [--reps 20] [--rounds 21]

Every op of the kernel table (csrc/kernels/kernels.hpp, PYFER_KERNEL_OPS) is timed through its
self-check in the test-only module pyfer._checks (``_checks.time_op``): the check prepares random
data at the op's shape and checks the op, then the op's call alone is timed in each set, in the
calling thread, the sets interleaved so that a busy machine slows them alike (per round, each set
in turn takes its best of --reps samples; a set's figure is the median of its per-round bests).
The table gives microseconds per call and each set's time over the first set's.

Shapes: the student's kernel calls, read from its network description (WEIGHTS, default the shipped
student; a ShuffleNetV2), each over a whole map (the engine calls the 1x1 and depthwise convs of a
unit in bands of a few rows); the zero-skipping 1x1 convs get inputs with half their values zero,
about the trained student's post-ReLU maps. Then the ops the student does not run, at the shapes of
the teacher and of YuNet. Needs a build with the test-only targets (an editable install has them).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from pyfer.bench import default_weights, run_context
from pyfer.engine import Engine, build_info

ZERO_FRAC = 0.5  # zeros in a zero-skipping conv's input: about the trained student's post-ReLU maps


@dataclass
class Row:
    ops: tuple  # the table's ops it times
    check: str  # the pyfer._checks check that prepares the data and makes the call
    args: tuple  # the check's arguments after its isa
    shape: str
    where: str  # the first call in the network
    kwargs: dict = field(default_factory=dict)
    calls: int = 1  # calls per image at this shape


def student_rows(weights) -> list:
    """The kernel calls of a ShuffleNetV2 student at batch 1, in network order, one row per shape."""
    eng = Engine(weights, threads=1)
    info, net = eng.info(), eng.metadata["network"]
    if info["architecture"] != "shufflenetv2":
        raise SystemExit(f"{weights}: a {info['architecture']} model; bench_ops.py times a ShuffleNetV2 student")
    rows: dict = {}

    def add(ops, check, args, shape, where, **kwargs):
        key = (check, args, tuple(sorted(kwargs.items())))
        if key in rows:
            rows[key].calls += 1
        else:
            rows[key] = Row(ops, check, args, shape, where, kwargs)

    size, cin, stem = info["input_size"], info["in_channels"], net["stem"]
    k, s, c = stem["k"], stem["stride"], stem["cout"]
    h = (size + 2 * (k // 2) - k) // s + 1
    # the direct small-cin conv, the planner's choice for a stem (the engine runs it in bands of
    # rows, each pooled at once: the two rows are the stem's two kernel calls)
    add(("conv_small",), "conv_small", (1, size, size, cin, c, k, s), f"{k}x{k}/{s} {cin}->{c}, {size}x{size}",
        "stem")
    add(("maxpool3s2",), "maxpool", (1, h, h, c), f"3x3/2 {c}, {h}x{h}", "stem")
    h = (h - 1) // 2 + 1
    for i, b in enumerate(net["blocks"]):
        name, half = b["name"], b["cout"] // 2

        def pw1(c_in: int, hw: int) -> None:
            # reads a block's post-ReLU output, zero-skipping, in every unit but the first, which
            # reads the stem's pooled map (csrc/blocks/plan.cpp, CpuNet::build)
            if i == 0:
                add(("conv",), "conv", (1, hw, hw, c_in, half, 1, 1), f"1x1 {c_in}->{half}, {hw}x{hw}", f"{name} pw1")
            else:
                add(("conv1x1_skip0",), "conv_skip0", (1, hw, hw, c_in, half), f"1x1 {c_in}->{half}, {hw}x{hw}",
                    f"{name} pw1", zero_frac=ZERO_FRAC)

        def dw(ch: int, hw: int, stride: int, role: str = "dw") -> None:
            add(("dw3x3",), "dw3x3", (1, hw, hw, ch, stride), f"3x3/{stride} depthwise {ch}, {hw}x{hw}",
                f"{name} {role}")

        def pw2(hw: int) -> None:  # the concat + channel shuffle is its store
            add(("conv",), "conv", (1, hw, hw, half, half, 1, 1), f"1x1 {half}->{half}, {hw}x{hw}, shuffle store",
                f"{name} pw2", mode="shuf")

        if b["kind"] == "shuffle_down":  # csrc/blocks/shuffle_unit.cpp
            ho = (h - 1) // 2 + 1
            dw(b["cin"], h, 2, "b1_dw")
            add(("conv",), "conv", (1, ho, ho, b["cin"], half, 1, 1), f"1x1 {b['cin']}->{half}, {ho}x{ho}",
                f"{name} b1_pw")
            pw1(b["cin"], h)
            dw(half, h, 2)
            pw2(ho)
            h = ho
        elif b["kind"] == "shuffle_basic":
            pw1(half, h)
            dw(half, h, 1)
            pw2(h)
        else:
            raise SystemExit(f"{weights}: block {name} is a {b['kind']}; bench_ops.py knows the ShuffleNet units")
        c = b["cout"]
    if net.get("conv5"):  # zero-skipping, the global average pool in its epilogue
        add(("conv1x1_skip0",), "conv_skip0", (1, h, h, c, net["conv5"]),
            f"1x1 {c}->{net['conv5']}, {h}x{h}, + avg pool", "conv5", zero_frac=ZERO_FRAC, mode="pool")
        c = net["conv5"]
    add(("linear",), "linear", (1, c, info["num_classes"]), f"{c}->{info['num_classes']}", "fc")
    return list(rows.values())


# The ops the student does not run, at the shapes of the networks that do: the teacher
# (models/teacher_s11_fp16.safetensors: EFF-ResNet18, 64x64, a stride-1 stem and max pool, layers
# at 32/16/8/4 pixels; a 3x3 stride-1 conv is Winograd where its map has >= 16 tiles; no conv5, so
# the head's average pool is an op) and YuNet at 320x240 (padded to 320x256: stage outputs at
# strides 8, 16, 32 of 64 channels).
OTHER_ROWS = [
    Row(("wino_in", "wino_out"), "conv", (1, 32, 32, 64, 64, 3, 1), "3x3 64->64, 32x32, Winograd (+ its 16 GEMMs)",
        "teacher layer1 convs", {"mode": "wino_plain"}),
    Row(("wino_in", "wino_out"), "conv", (1, 16, 16, 128, 128, 3, 1), "3x3 128->128, 16x16, Winograd (+ its 16 GEMMs)",
        "teacher layer2.1 convs", {"mode": "wino_plain"}),
    Row(("conv",), "conv", (1, 32, 32, 64, 128, 3, 2), "3x3/2 64->128, 32x32", "teacher layer2.0 conv1"),
    Row(("conv",), "conv", (1, 4, 4, 512, 512, 3, 1), "3x3 512->512, 4x4 (4 tiles: implicit GEMM)",
        "teacher layer4.0 conv2"),
    Row(("avgpool",), "avgpool", (1, 4, 4, 512), "4x4x512", "teacher head"),
    Row(("maxpool2s2",), "maxpool2s2", (1, 32, 40, 64), "2x2/2 64, 32x40", "YuNet stage 4 pool"),
    Row(("upsample2_add",), "upsample2_add", (1, 32, 40, 64), "x2 64, 16x20 -> 32x40", "YuNet stride-8 level"),
]
# fma_peak, the table's last op, is a measurement itself: `pyfer info` prints its two peaks.


def refuse_unrunnable(isas: list) -> None:
    isa = build_info()["isa"]
    for name in isas:
        if name not in isa["runnable"]:
            why = (f"this CPU cannot run it (it has {isa['detected']})" if name in isa["compiled"]
                   else f"not a kernel set of this build (it has {', '.join(isa['compiled'])})")
            raise SystemExit(f"--isas: {name}: {why}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="scripts/bench_ops.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", default=None, help="a ShuffleNetV2 student (default: the shipped one)")
    ap.add_argument("--isas", default=None,
                    help="comma-separated kernel sets, the first is the reference (default: every set this build "
                         "and CPU run, widest first)")
    ap.add_argument("--ops", default=None, help="comma-separated ops of the kernel table (default: all)")
    ap.add_argument("--reps", type=int, default=20, help="samples per set per round")
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args(argv)
    try:
        from pyfer import _checks
    except ImportError:
        raise SystemExit("bench_ops.py needs the test-only module pyfer._checks: build with PYFER_BUILD_TESTS "
                         "(an editable install does; wheels do not)")
    isas = args.isas.split(",") if args.isas else build_info()["isa"]["runnable"][::-1]
    refuse_unrunnable(isas)
    weights = args.weights or default_weights()
    student = student_rows(weights)
    wanted = set(args.ops.split(",")) if args.ops else set()
    known = {op for row in student + OTHER_ROWS for op in row.ops}
    if wanted - known:
        raise SystemExit(f"--ops: no op {', '.join(sorted(wanted - known))} (ops: {', '.join(sorted(known))})")

    first = isas[0]
    print(f"{run_context(threads=1)}\nKernel calls only, microseconds per call: median over {args.rounds} "
          f"rounds of each set's best of {args.reps} samples, sets interleaved")
    print(f"Shapes: {weights} at batch 1, then ops it does not run (teacher, YuNet)\n")
    head = ["op", "shape", "in the network"] + [f"{isa} us" for isa in isas] + [f"{isa} / {first}" for isa in isas[1:]]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")

    def time_row(row: Row) -> dict:
        times = _checks.time_op(row.check, isas, *row.args, reps=args.reps, rounds=args.rounds, **row.kwargs)
        where = row.where + (f" (x{row.calls})" if row.calls > 1 else "")
        cells = [" + ".join(row.ops), row.shape, where] + [f"{1e6 * times[isa]:.3f}" for isa in isas]
        cells += [f"{times[isa] / times[first]:.2f}" for isa in isas[1:]]
        print("| " + " | ".join(cells) + " |", flush=True)
        return times

    student_total = dict.fromkeys(isas, 0.0)
    for row in student:
        if not wanted or wanted & set(row.ops):
            times = time_row(row)
            for isa in isas:
                student_total[isa] += row.calls * times[isa]
    for row in OTHER_ROWS:
        if not wanted or wanted & set(row.ops):
            time_row(row)
    if not wanted:  # beside the network's own time (pyfer bench), what the per-op figures add up to
        print("\nThe student's rows weighted by their calls per image: "
              + ", ".join(f"{isa} {1e6 * student_total[isa]:.1f} us" for isa in isas)
              + "".join(f"; {isa} / {first} {student_total[isa] / student_total[first]:.2f}" for isa in isas[1:]))


if __name__ == "__main__":
    main()
