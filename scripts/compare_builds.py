"""Before/after for a kernel change: this checkout's build against a saved copy of an older one.

    # before changing csrc/: keep the current build (the pyfer package and its extension modules)
    python scripts/compare_builds.py --save /tmp/pyfer_before
    # ... change the kernels, rebuild (pip install -e .) ...
    taskset -c 1 python scripts/compare_builds.py --before /tmp/pyfer_before --rounds 10

Each round runs one process per build, alternately (before, after, before, ...), so that both see
the same machine: on a shared VM whose speed changes from minute to minute, runs far apart in time
are not comparable. Each process times, on one thread:
  - YuNet's network alone (``YuNetEngine.forward``, thread CPU time: minimum and median) on the
    astronaut image at 320x240 (a 640x480 photo's main pass) and 640x360 (a 1280x720 frame's);
  - the shipped student's network (``Engine``, thread CPU time: minimum and median) at batch 1 and
    64 (the same face 64 times) on the astronaut's face, framed as ``predict`` frames it, so its
    zero-skipping convs see a real face's activations;
  - ``Recognizer.predict`` on the 640x480 one-face JPEG of tests/test_recognizer_speed.py (wall
    median of 60, and the median of each stage), interleaved with the same predict through
    OpenCV's DNN run of YuNet (the reference: mostly code a kernel change does not touch). Their
    ratio is steadier than either time when the machine's speed changes during a run.
Printed: every round, then per build the minimum of the minima and the median of the medians.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def thread_times(fn, x, warmup: int, reps: int) -> list:
    """Seconds of the calling thread's CPU time of each of ``reps`` calls fn(x), after ``warmup``."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(reps):
        c0 = time.thread_time()
        fn(x)
        times.append(time.thread_time() - c0)
    return times


def measure() -> dict:
    """Run inside a child process: the timings of whichever pyfer it imports."""
    import cv2
    import numpy as np

    cv2.setNumThreads(1)
    import pyfer
    from pyfer.yunet import YuNetDetector

    from yunet_speed import ASTRONAUT, photo_640x480  # scripts/ is on the path (child_command)

    from pyfer.engine import build_info

    isa = build_info()["isa"]  # a build from before AVX-512 would time avx2 against avx512 unseen
    out = {"package": str(Path(pyfer.__file__).parent), "kernels": f"{isa['selected']} (of {', '.join(isa['compiled'])})"}
    try:  # one thread: the calling thread's CPU time is the whole network's
        det = YuNetDetector(backend="engine", threads=1)
    except TypeError:  # a build from before YuNet took threads: it ran on one
        det = YuNetDetector(backend="engine")
    img = cv2.imread(str(ASTRONAUT))
    for w, h in [(320, 240), (640, 360)]:
        x = np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        t = thread_times(det._engine.forward, x, warmup=5, reps=200 if w == 320 else 50)
        out[f"yunet {w}x{h} cpu min"] = 1e3 * min(t)
        out[f"yunet {w}x{h} cpu median"] = 1e3 * float(np.median(t))
    # the shipped student's network on the astronaut's face (pyfer bench's --input), thread CPU time
    from pyfer.bench import make_input
    from pyfer.engine import Engine

    weights = Path(pyfer.__file__).parent / "models" / "tsnet_student.safetensors"
    engine = Engine(str(weights), threads=1)
    for batch, reps in [(1, 400), (64, 20)]:
        t = thread_times(engine.forward, make_input(str(ASTRONAUT), batch, weights), warmup=3, reps=reps)
        out[f"student batch {batch} cpu min"] = 1e3 * min(t)
        out[f"student batch {batch} cpu median"] = 1e3 * float(np.median(t))
    photo = str(photo_640x480(Path(tempfile.mkdtemp()) / "astronaut_640x480.jpg"))
    rec = pyfer.Recognizer(threads=1)
    ref = pyfer.Recognizer(detector=YuNetDetector(backend="opencv"), threads=1)
    for _ in range(5):
        rec.predict(photo)
        ref.predict(photo)
    wall, ref_wall, stages = [], [], []
    for _ in range(60):  # interleaved with the reference, so both see the same machine
        t0 = time.perf_counter()
        rec.predict(photo)
        t1 = time.perf_counter()
        ref.predict(photo)
        ref_wall.append(time.perf_counter() - t1)
        wall.append(t1 - t0)
        stages.append(dict(rec.last_timings))
    out["predict wall median"] = 1e3 * float(np.median(wall))
    for k in stages[0]:
        out[f"predict {k} median"] = 1e3 * float(np.median([s[k] for s in stages]))
    out["reference (YuNet through OpenCV) predict wall median"] = 1e3 * float(np.median(ref_wall))
    out["predict / reference, ratio of medians"] = float(np.median(wall) / np.median(ref_wall))
    return out


def child_command(package_parent: Path | None) -> list:
    # a saved build is imported from its folder: drop the editable install's finder, which would
    # otherwise resolve `pyfer` to this checkout
    prelude = ""
    if package_parent is not None:
        prelude = (f"import sys; sys.path.insert(0, {str(package_parent)!r}); "
                   "sys.meta_path[:] = [f for f in sys.meta_path if not any(s in type(f).__module__.lower() "
                   "for s in ('editable', 'scikit'))]; ")
    return [sys.executable, "-c", prelude + f"import sys; sys.path.insert(0, {str(ROOT / 'scripts')!r}); "
            "import json, compare_builds; print(json.dumps(compare_builds.measure()))"]


def run_child(package_parent: Path | None) -> dict:
    res = subprocess.run(child_command(package_parent), capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def imported_from_this_checkout(package: Path, what: str) -> None:
    """A venv's editable install can point at another checkout; then both sides would time one build."""
    if not package.resolve().is_relative_to(ROOT.resolve()):
        raise SystemExit(f"{what} imports pyfer from {package}, not from this checkout ({ROOT}): "
                         f"install this checkout into the venv (pip install -e {ROOT}) or run the "
                         "script from the checkout that is installed")


def save(dest: Path) -> None:
    import pyfer

    src = Path(pyfer.__file__).parent
    imported_from_this_checkout(src, "--save")
    if dest.exists():
        raise SystemExit(f"{dest} exists: choose a new folder")
    shutil.copytree(src, dest / "pyfer", ignore=shutil.ignore_patterns("__pycache__"))
    # an editable install keeps its extension modules outside the source tree
    for mod in ("_engine", "_checks"):
        try:
            m = __import__(f"pyfer.{mod}", fromlist=["x"])
        except ImportError:
            continue
        shutil.copy2(m.__file__, dest / "pyfer" / Path(m.__file__).name)
    print(f"saved {src} and its extension modules to {dest / 'pyfer'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path, metavar="DIR", help="copy the current build to DIR and stop")
    g.add_argument("--before", type=Path, metavar="DIR", help="a folder written by --save")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    if args.save:
        save(args.save)
        return 0
    if not (args.before / "pyfer").is_dir():
        raise SystemExit(f"{args.before} holds no saved build (make one with --save)")
    from pyfer.bench import run_context

    print(run_context(threads=1))
    results = {"before": [], "after": []}
    for i in range(args.rounds):
        for name, parent in (("before", args.before), ("after", None)):
            r = run_child(parent)
            results[name].append(r)
            if i == 0:
                print(f"{name}: pyfer from {r['package']}, kernels {r.get('kernels', '?')}", flush=True)
                if name == "after":
                    imported_from_this_checkout(Path(r["package"]), "the after side")
                    if Path(r["package"]).resolve() == (args.before / "pyfer").resolve():
                        raise SystemExit("before and after import the same folder")
            print(f"round {i + 1} {name:6s} yunet 320x240 min {r['yunet 320x240 cpu min']:.2f} ms, "
                  f"student batch 1 min {r['student batch 1 cpu min']:.3f} ms, "
                  f"predict {r['predict wall median']:.2f} ms", flush=True)
    kernels = {name: rs[0]["kernels"] for name, rs in results.items()}
    if kernels["before"] != kernels["after"]:
        print(f"note: the builds run different kernel sets (before {kernels['before']}, after {kernels['after']})")
    keys = [k for k in results["after"][0] if k not in ("package", "kernels")]
    print("\n| measure (ms) | before | after | after / before |\n|---|---|---|---|")
    for k in keys:
        agg = min if k.endswith("min") else statistics.median
        b, a = agg(r[k] for r in results["before"]), agg(r[k] for r in results["after"])
        label = k + (" (min of runs)" if k.endswith("min") else " (median of runs)")
        print(f"| {label} | {b:.3f} | {a:.3f} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
