"""Speed of Recognizer.predict on a 640x480 photo with one face, YuNet (default: run by pyfer's
engine) beside YuNet run by OpenCV's DNN (the path before) and Haar; and YuNet's network alone,
pyfer's engine against cv2.FaceDetectorYN, at the working sizes the search uses.

    pytest tests/test_recognizer_speed.py --benchmark-only -s                 # the benchmarks
    PYFER_SPEED_STRICT=1 pytest tests/test_recognizer_speed.py -s -k side     # side by side + the 10 ms check

One thread throughout: ``Recognizer(threads=1)`` for the engine and ``cv2.setNumThreads(1)`` for
OpenCV (decode, YuNet, Haar). The target (issue 12) is a median of at most 10 ms for the whole
``predict``; the shared 2-core dev VM is too noisy for an absolute check by default
(docs/recognizer.md, "Speed"), so it runs only with PYFER_SPEED_STRICT=1. What always runs:
results (one face, in place, the right label) and the relative comparisons, interleaved so that
all sides see the same load.
"""
from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

import pyfer
from conftest import ASTRONAUT, iou

STAGES = ("decode", "detect", "align", "engine")
TARGET_MS = 10.0


@pytest.fixture(scope="module")
def photo_640x480(tmp_path_factory):
    """The astronaut portrait at 480x480, centred on a 640x480 canvas, saved as JPEG; her face
    is about 100 px wide."""
    img = cv2.resize(cv2.imread(str(ASTRONAUT)), (480, 480), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((480, 640, 3), 60, np.uint8)
    canvas[:, 80:560] = img
    path = tmp_path_factory.mktemp("speed") / "astronaut_640x480.jpg"
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


FACE_640 = (80 + 109 * 1.5, 40 * 1.5, 64 * 1.5, 64 * 1.5)  # ASTRONAUT_FACE on the canvas


@pytest.fixture(scope="module")
def one_thread():
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    yield
    cv2.setNumThreads(before)


def check(faces, trained):
    assert len(faces) == 1, faces
    assert iou(faces[0].box, FACE_640) > 0.5, faces[0].box
    if trained:
        assert faces[0].label == "happiness"


def medians(runs: list[dict]) -> dict:
    return {k: float(np.median([r[k] for r in runs])) * 1e3 for k in STAGES}


def recognizer(weights_path, detector: str) -> pyfer.Recognizer:
    """'yunet' (the default: pyfer's engine), 'yunet-opencv' (cv2.FaceDetectorYN) or 'haar'."""
    if detector == "yunet-opencv":
        from pyfer.yunet import YuNetDetector

        return pyfer.Recognizer(weights_path, detector=YuNetDetector(backend="opencv"), threads=1)
    return pyfer.Recognizer(weights_path, detector=detector, threads=1)


@pytest.mark.parametrize("detector", ["yunet", "yunet-opencv", "haar"])
def test_predict_640x480(benchmark, engine_module, weights_path, trained, photo_640x480, one_thread, detector):
    rec = recognizer(weights_path, detector)
    runs: list[dict] = []

    def once():
        faces = rec.predict(photo_640x480)
        runs.append(dict(rec.last_timings))
        return faces

    faces = benchmark.pedantic(once, rounds=30, warmup_rounds=3, iterations=1)
    check(faces, trained)
    med = medians(runs)
    benchmark.extra_info.update({f"{k}_ms": round(v, 3) for k, v in med.items()})
    benchmark.extra_info["loadavg_1min"] = round(os.getloadavg()[0], 2)
    print(f"\n{detector}: predict 640x480, median ms: " + "  ".join(f"{k}={v:.2f}" for k, v in med.items())
          + f"  sum={sum(med.values()):.2f}")


def test_predict_side_by_side(engine_module, weights_path, trained, photo_640x480, one_thread):
    """The three recognizers, runs interleaved: YuNet in pyfer's engine (the default) beats YuNet
    through OpenCV's DNN (the path before) and Haar (and takes at most 10 ms with
    PYFER_SPEED_STRICT=1)."""
    recs = {d: recognizer(weights_path, d) for d in ("yunet", "yunet-opencv", "haar")}
    wall: dict[str, list[float]] = {d: [] for d in recs}
    stages: dict[str, list[dict]] = {d: [] for d in recs}
    for i in range(43):
        for d, rec in recs.items():
            t0 = time.perf_counter()
            rec.predict(photo_640x480)
            dt = time.perf_counter() - t0
            if i >= 3:  # warm-up
                wall[d].append(dt)
                stages[d].append(dict(rec.last_timings))
    for d in recs:
        check(recs[d].predict(photo_640x480), trained)
    med = {d: float(np.median(w)) * 1e3 for d, w in wall.items()}
    load = os.getloadavg()[0]
    for d in recs:
        s = medians(stages[d])
        print(f"\n{d}: predict median {med[d]:.2f} ms (" + "  ".join(f"{k}={v:.2f}" for k, v in s.items())
              + f"), load average {load:.1f} on {os.cpu_count()} cores")
    assert med["yunet"] < 0.6 * med["haar"], med
    assert med["yunet"] < med["yunet-opencv"], med
    if os.environ.get("PYFER_SPEED_STRICT") == "1":
        assert med["yunet"] <= TARGET_MS, (med, load)
    else:
        print(f"the {TARGET_MS} ms target is checked with PYFER_SPEED_STRICT=1")


# the network inputs the search gives YuNet: a 640x480 photo's main pass, a face crop's (enlarged
# to 240 px), a 1280x720 frame's and a 1920x1080 frame's
WORKING_SIZES = [(320, 240), (240, 240), (640, 360), (960, 540)]


def test_yunet_detect_side_by_side(one_thread):
    """One network run + decoding + NMS (YuNetDetector.detect_raw), pyfer's engine against
    cv2.FaceDetectorYN, interleaved, at each working size: the engine is faster at every size."""
    from pyfer.yunet import YuNetDetector

    img = cv2.imread(str(ASTRONAUT))
    dets = {"engine": YuNetDetector(backend="engine", threads=1), "opencv": YuNetDetector(backend="opencv")}
    rows = []
    for w, h in WORKING_SIZES:
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        times: dict[str, list[float]] = {b: [] for b in dets}
        reps = 40 if w * h <= 320 * 240 else 15
        for i in range(reps + 3):
            for b, det in dets.items():
                t0 = time.perf_counter()
                det.detect_raw(x)
                if i >= 3:
                    times[b].append(time.perf_counter() - t0)
        med = {b: float(np.median(t)) * 1e3 for b, t in times.items()}
        rows.append((w, h, med["engine"], med["opencv"]))
    print(f"\nYuNet detect, median ms, one thread (load average {os.getloadavg()[0]:.1f}):")
    for w, h, e, o in rows:
        print(f"  {w}x{h}: engine {e:.2f}  opencv {o:.2f}  ratio {e / o:.2f}")
    for w, h, e, o in rows:
        assert e < o, (w, h, e, o)


def test_yunet_threads_side_by_side():
    """YuNet's network (pyfer._engine.YuNet.forward) on one thread and on two (each step's rows
    in two bands), interleaved, at the working sizes and a 1920x1080 frame's full size: the same
    maps bit for bit (medians and ratios printed; docs/recognizer.md, "YuNet on several threads").
    Two threads faster over all sizes together is checked with PYFER_SPEED_STRICT=1 only: a job
    on the second core (CI's other steps) takes their gain away."""
    from pyfer import _engine
    from pyfer.yunet import default_model_path

    if _engine.build_info()["usable_cpus"] < 2:
        pytest.skip("needs two CPUs")
    model = str(default_model_path("engine"))
    nets = {t: _engine.YuNet(model, threads=t) for t in (1, 2)}
    img = cv2.imread(str(ASTRONAUT))
    rows = []
    for w, h in WORKING_SIZES + [(1920, 1080)]:
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        times: dict[int, list[float]] = {t: [] for t in nets}
        reps = 40 if w * h <= 320 * 240 else 10
        for i in range(reps + 3):
            outs = {}
            for t, net in nets.items():
                t0 = time.perf_counter()
                outs[t] = net.forward(x)
                if i >= 3:
                    times[t].append(time.perf_counter() - t0)
            if i == 0:
                for a, b in zip(outs[2], outs[1]):
                    np.testing.assert_array_equal(a, b)
        med = {t: float(np.median(v)) * 1e3 for t, v in times.items()}
        rows.append((w, h, med[1], med[2]))
    print(f"\nYuNet network, median ms (load average {os.getloadavg()[0]:.1f}):")
    for w, h, one, two in rows:
        print(f"  {w}x{h}: 1 thread {one:.2f}  2 threads {two:.2f}  ratio {two / one:.2f}")
    if os.environ.get("PYFER_SPEED_STRICT") == "1":
        assert sum(r[3] for r in rows) < sum(r[2] for r in rows), rows


# photo and frame sizes, odd sides among them, each at the detector's main-pass scale, and a
# 1080p frame's coarse pass (for faces larger than YuNet's range)
RESIZES = [(320, 320, None), (500, 375, None), (1279, 719, None), (1919, 1079, None), (1920, 1080, None),
           (1920, 1080, "coarse")]


def test_detector_resize_side_by_side(one_thread):
    """The detector's resize (pyfer.yunet._resized: halvings by area, then bilinear)
    against one cv2.resize with INTER_AREA (what it was until session 41: OpenCV's general,
    slow path for factors that are not whole numbers), interleaved: the size asked for (or 1 px
    short), and faster over all the sizes (medians printed)."""
    from pyfer.yunet import YuNetDetector, _resized

    det = YuNetDetector()
    img = cv2.imread(str(ASTRONAUT))
    rows = []
    for w, h, which in RESIZES:
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        scale = det.main_scale(h, w) if which is None else det.coarse_side / (max(h, w) * (1 + 2 * det.pad))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        ways = {"steps": lambda: _resized(x, scale)[0],
                "one INTER_AREA": lambda: cv2.resize(x, size, interpolation=cv2.INTER_AREA)}
        times: dict[str, list[float]] = {k: [] for k in ways}
        for i in range(23):
            for k, fn in ways.items():
                t0 = time.perf_counter()
                out = fn()
                if i >= 3:
                    times[k].append(time.perf_counter() - t0)
                assert all(0 <= a - g <= 1 for a, g in zip(size, out.shape[1::-1])), (k, out.shape, size)
        med = {k: float(np.median(t)) * 1e3 for k, t in times.items()}
        rows.append((w, h, scale, med["steps"], med["one INTER_AREA"]))
    print(f"\ndetector resize, median ms, one thread (load average {os.getloadavg()[0]:.1f}):")
    for w, h, s, a, b in rows:
        print(f"  {w}x{h} at {s:.3f}: steps {a:.2f}  one INTER_AREA {b:.2f}  ratio {a / b:.2f}")
    # all sizes together (at 1920x1080 by 0.5 both are one 2x area resize: a ratio of noise alone)
    assert sum(r[3] for r in rows) < 0.5 * sum(r[4] for r in rows), rows  # (4-8x here, Zen 3)
