"""Time breakdown of Recognizer.predict on a 640x480 photo with one face (pytest-benchmark).

    pytest tests/test_recognizer_speed.py --benchmark-only -s
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT

STAGES = ("decode", "detect", "align", "engine")


@pytest.fixture(scope="module")
def photo_640x480(tmp_path_factory):
    """The astronaut portrait at 480x480, centred on a 640x480 canvas, saved as JPEG."""
    img = cv2.resize(cv2.imread(str(ASTRONAUT)), (480, 480), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((480, 640, 3), 60, np.uint8)
    canvas[:, 80:560] = img
    path = tmp_path_factory.mktemp("speed") / "astronaut_640x480.jpg"
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def test_predict_breakdown(benchmark, recognizer, photo_640x480):
    runs: list[dict] = []

    def once():
        faces = recognizer.predict(photo_640x480)
        runs.append(dict(recognizer.last_timings))
        return faces

    faces = benchmark.pedantic(once, rounds=20, warmup_rounds=2, iterations=1)
    assert len(faces) == 1
    med = {k: float(np.median([r[k] for r in runs])) * 1e3 for k in STAGES}
    total = sum(med.values())
    benchmark.extra_info.update({f"{k}_ms": round(v, 3) for k, v in med.items()})
    print("\npredict 640x480, median ms: " + "  ".join(f"{k}={v:.2f}" for k, v in med.items())
          + f"  total={total:.2f}")
    # Haar dominates on a loaded 2-core VM whatever we do; what the tuning must deliver is a large
    # saving over a naive full-resolution search (same cascade, min size 30 px), measured alongside
    gray = cv2.imread(str(photo_640x480), cv2.IMREAD_GRAYSCALE)
    cascade = recognizer.detector._cascades.get()
    naive = []
    for _ in range(5):
        t0 = time.perf_counter()
        cascade.detectMultiScale(gray, 1.1, 2, minSize=(30, 30))
        naive.append(time.perf_counter() - t0)
    naive_ms = float(np.median(naive)) * 1e3
    benchmark.extra_info["naive_detect_ms"] = round(naive_ms, 3)
    print(f"naive full-resolution Haar: {naive_ms:.2f} ms")
    assert med["detect"] < 0.6 * naive_ms
    assert med["engine"] < 0.5 * total  # the engine is a small part
