"""YuNet in pyfer's engine against cv2.FaceDetectorYN, and Recognizer.predict with each, one thread.

    python scripts/yunet_speed.py [--reps 100]
    python scripts/yunet_speed.py --isas avx512,avx2 [--reps 100]   # the network per kernel set

Runs are interleaved (engine, opencv, engine, ...) so that both see the same load, and each is
timed twice: wall clock (median) and the calling thread's CPU time (``time.thread_time``; median
and minimum). On a machine shared with other work the wall clock includes waiting for a core;
the thread's CPU time does not, and its minimum is the closest to a quiet machine's time.

1. ``YuNetDetector.detect_raw`` (network + decoding + NMS, as ``cv2.FaceDetectorYN.detect``) at
   the working sizes the search uses: a 640x480 photo's main pass (320x240), a face crop's
   (240x240), a 1280x720 frame's (640x360), a 1920x1080 frame's (960x540);
2. ``Recognizer.predict`` on the 640x480 one-face JPEG of tests/test_recognizer_speed.py, with
   YuNet in the engine (the default) and through OpenCV (the path before), per stage.

With ``--isas A,B,...`` it instead times YuNet's network alone (``pyfer._engine.YuNet.forward``)
in each named kernel set at the same working sizes, interleaved, with each set's ratio to the
first (thread CPU time, minimum and median).

With ``--threads 1,2`` it instead times, interleaved, with the engine (YuNet and the classifier)
on each number of threads: YuNet's network at the working sizes and a 1920x1080 frame's full
size, and ``Recognizer.predict`` on the 640x480 photo and on a 1920x1080 frame (the photo's
canvas enlarged: one face of about 300 px); wall-clock medians (the other threads' CPU time is
not the caller's) and each count's ratio to the first.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pyfer.bench import run_context

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "examples" / "astronaut.png"
WORKING_SIZES = [(320, 240), (240, 240), (640, 360), (960, 540)]


def interleaved(fns: dict, reps: int, warmup: int = 3) -> dict:
    """{name: (wall median, cpu median, cpu min)} in ms, the callables run in turn."""
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for i in range(reps + warmup):
        for k, f in fns.items():
            w0, c0 = time.perf_counter(), time.thread_time()
            f()
            c1, w1 = time.thread_time(), time.perf_counter()
            if i >= warmup:
                wall[k].append(w1 - w0)
                cpu[k].append(c1 - c0)
    return {k: (1e3 * np.median(wall[k]), 1e3 * np.median(cpu[k]), 1e3 * np.min(cpu[k])) for k in fns}


def photo_640x480(path: Path) -> Path:
    img = cv2.resize(cv2.imread(str(ASTRONAUT)), (480, 480), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((480, 640, 3), 60, np.uint8)
    canvas[:, 80:560] = img
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def compare_isas(isas: list, reps: int) -> None:
    from pyfer import _engine
    from pyfer.yunet import default_model_path

    model = str(default_model_path("engine"))
    try:
        nets = {isa: _engine.YuNet(model, isa, threads=1) for isa in isas}
    except ValueError as e:  # a set this build or CPU lacks
        raise SystemExit(f"--isas: {e}")
    img = cv2.imread(str(ASTRONAUT))
    ref = isas[0]
    print("\n| network input | " + " | ".join(f"{isa}: CPU min / median (ms)" for isa in isas) + " | "
          + " | ".join(f"{isa} / {ref} (CPU min)" for isa in isas[1:]) + " |")
    print("|---" * (2 * len(isas)) + "|")
    for w, h in WORKING_SIZES:
        x = np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        n = reps if w * h <= 320 * 240 else max(10, reps // 4)
        r = interleaved({isa: (lambda net=net: net.forward(x)) for isa, net in nets.items()}, n)
        print(f"| {w}x{h} | " + " | ".join(f"{r[isa][2]:.3f} / {r[isa][1]:.3f}" for isa in isas) + " | "
              + " | ".join(f"{r[isa][2] / r[ref][2]:.2f}" for isa in isas[1:]) + " |")


def compare_threads(counts: list, reps: int) -> None:
    import pyfer
    from pyfer import _engine
    from pyfer.yunet import default_model_path

    model = str(default_model_path("engine"))
    nets = {t: _engine.YuNet(model, threads=t) for t in counts}
    img = cv2.imread(str(ASTRONAUT))
    ref = counts[0]
    cols = " | ".join(f"{t} thread{'s' * (t > 1)}: wall median (ms)" for t in counts)
    ratios = " | ".join(f"{t} / {ref}" for t in counts[1:])
    print(f"\n| network input | {cols} | {ratios} |")
    print("|---" * (2 * len(counts)) + "|")
    for w, h in WORKING_SIZES + [(1920, 1080)]:
        x = np.ascontiguousarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA))
        n = reps if w * h <= 320 * 240 else max(10, reps // (4 if w * h <= 960 * 540 else 10))
        r = interleaved({t: (lambda net=net: net.forward(x)) for t, net in nets.items()}, n)
        print(f"| {w}x{h} | " + " | ".join(f"{r[t][0]:.2f}" for t in counts) + " | "
              + " | ".join(f"{r[t][0] / r[ref][0]:.2f}" for t in counts[1:]) + " |")
    recs = {t: pyfer.Recognizer(threads=t) for t in counts}
    with tempfile.TemporaryDirectory() as tmp:
        photo = photo_640x480(Path(tmp) / "astronaut_640x480.jpg")
        frame = cv2.resize(cv2.imread(str(photo)), (1920, 1080), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(Path(tmp) / "frame_1920x1080.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        print(f"\n| predict | {cols.replace('wall median (ms)', 'wall median / detect median (ms)')} | {ratios} |")
        print("|---" * (2 * len(counts)) + "|")
        for name, n in (("astronaut_640x480.jpg", reps), ("frame_1920x1080.jpg", max(10, reps // 4))):
            path = Path(tmp) / name
            stages = {t: [] for t in counts}

            def run(t, path=path):
                faces = recs[t].predict(path)
                assert len(faces) == 1, (name, t, faces)
                stages[t].append(recs[t].last_timings["detect"])

            r = interleaved({t: (lambda t=t: run(t)) for t in counts}, n)
            print(f"| {name} | " + " | ".join(f"{r[t][0]:.2f} / {1e3 * np.median(stages[t]):.2f}" for t in counts)
                  + " | " + " | ".join(f"{r[t][0] / r[ref][0]:.2f}" for t in counts[1:]) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--isas", metavar="A,B", help="time YuNet's network in these kernel sets instead")
    ap.add_argument("--threads", metavar="1,2", help="time YuNet and predict on these numbers of engine threads instead")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    if args.threads:
        try:
            counts = [int(t) for t in args.threads.split(",")]
        except ValueError:
            ap.error(f"--threads takes numbers such as 1,2, got {args.threads!r}")
        if len(counts) < 2 or min(counts) < 1:
            ap.error("--threads needs two or more thread counts >= 1, e.g. 1,2")
        print(run_context(threads=",".join(map(str, counts))) + "; OpenCV on one thread")
        compare_threads(counts, args.reps)
        return 0
    if args.isas:
        isas = args.isas.split(",")
        if len(isas) < 2:
            ap.error("--isas needs two or more kernel sets, e.g. avx512,avx2")
        print(run_context(threads=1))
        compare_isas(isas, args.reps)
        return 0
    import pyfer
    from pyfer.yunet import YuNetDetector

    print(run_context(threads=1))
    dets = {"engine": YuNetDetector(backend="engine", threads=1), "opencv": YuNetDetector(backend="opencv")}
    img = cv2.imread(str(ASTRONAUT))
    print("\n| network input | engine: wall median / CPU median / CPU min (ms) | opencv: same | engine / opencv (CPU min) |")
    print("|---|---|---|---|")
    for w, h in WORKING_SIZES:
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        reps = args.reps if w * h <= 320 * 240 else max(10, args.reps // 4)
        r = interleaved({b: (lambda d=d: d.detect_raw(x)) for b, d in dets.items()}, reps)
        e, o = r["engine"], r["opencv"]
        print(f"| {w}x{h} | {e[0]:.2f} / {e[1]:.2f} / {e[2]:.2f} | {o[0]:.2f} / {o[1]:.2f} / {o[2]:.2f} "
              f"| {e[2] / o[2]:.2f} |")

    with tempfile.TemporaryDirectory() as tmp:
        photo = photo_640x480(Path(tmp) / "astronaut_640x480.jpg")
        recs = {"engine": pyfer.Recognizer(threads=1),
                "opencv": pyfer.Recognizer(detector=YuNetDetector(backend="opencv"), threads=1)}
        stages = {k: [] for k in recs}

        def run(k):
            recs[k].predict(photo)
            stages[k].append(dict(recs[k].last_timings))

        r = interleaved({k: (lambda k=k: run(k)) for k in recs}, args.reps)
    print(f"\npredict, 640x480 JPEG, one face (load average {os.getloadavg()[0]:.1f}):")
    print("| YuNet | wall median | CPU median | CPU min | stages, median ms (wall) |")
    print("|---|---|---|---|---|")
    for k, (wm, cm, cmin) in r.items():
        st = {s: 1e3 * np.median([t[s] for t in stages[k]]) for s in stages[k][0]}
        print(f"| {k} | {wm:.2f} | {cm:.2f} | {cmin:.2f} | " + " / ".join(f"{s} {v:.2f}" for s, v in st.items()) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
