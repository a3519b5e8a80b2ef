"""Two cases the group photos do not cover, measured through ``Recognizer.predict``:

- **tilted heads**: 48 SFEW film faces (100 px wide), tilted in the image plane by +-0, 15, 30 and
  45 degrees, eight to a 1920x1080 photo (``group_photos.background``); a face counts as found when
  a returned box has its centre within 45 px of the face's centre; the default detector beside
  ``detector="yunet-tilted"``;
- **close-ups**: 40 SFEW faces enlarged until the face fills a 800-3000 px wide image (YuNet
  sees at most ~350 px faces, so the search combines passes); the count of faces returned per
  image should be one;
- the 640x480 photo of the speed test through ``predict`` with each detector.

    python scripts/hard_faces.py                  # needs ../shared/data/sfew_train
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import group_photos  # noqa: E402


def turned(img: np.ndarray, angle: float) -> np.ndarray:
    """``img`` turned by ``angle`` degrees inside a canvas that holds all of it."""
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    cw, ch = int(h * s + w * c), int(h * c + w * s)
    m[0, 2] += cw / 2 - w / 2
    m[1, 2] += ch / 2 - h / 2
    return cv2.warpAffine(img, m, (cw, ch), borderMode=cv2.BORDER_REPLICATE)


def sfew(n: int, seed: int) -> list[np.ndarray]:
    import cv2

    root = group_photos.DATA / "sfew_train"
    with open(root / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    pick = np.random.default_rng(seed).permutation(len(rows))[:n]
    return [cv2.imread(str(root / rows[i]["path"])) for i in pick]


def tilted(rec, faces: list[np.ndarray], rng: np.random.Generator) -> None:
    import cv2

    print("tilt (degrees) | faces found | median ms per 1920x1080 photo")
    for angle in (0, 15, 30, 45):
        found, total, times = 0, 0, []
        for k in range(0, len(faces), 8):
            img = group_photos.background(1080, 1920, rng)
            centres = []
            for j, face in enumerate(faces[k:k + 8]):
                patch = turned(cv2.resize(face, (100, 127)), angle if j % 2 else -angle)
                cx, cy = 200 + (j % 4) * 450, 300 + (j // 4) * 450
                group_photos.paste_tight(img, patch, cx, cy, patch.shape[1])
                centres.append((cx, cy))
            t0 = time.perf_counter()
            got = rec.predict(img)
            times.append(time.perf_counter() - t0)
            for cx, cy in centres:
                total += 1
                found += any(np.hypot(f.box[0] + f.box[2] / 2 - cx, f.box[1] + f.box[3] / 2 - cy) < 45 for f in got)
        print(f"{angle:>5} | {found}/{total} | {1e3 * np.median(times):.0f}")


def close_ups(rec, faces: list[np.ndarray]) -> None:
    import cv2

    print("image width (px) | images by number of faces returned (0, 1, 2, ...)")
    for width in (800, 1500, 2000, 3000):
        counts = [len(rec.predict(cv2.resize(f, (width, width * f.shape[0] // f.shape[1]),
                                             interpolation=cv2.INTER_CUBIC))) for f in faces]
        print(f"{width:>5} | {np.bincount(counts).tolist()}")


def speed_640x480() -> None:
    """The 640x480 photo of tests/test_recognizer_speed.py through predict, each detector, runs
    interleaved (the canvas is made in memory: no decode)."""
    import cv2

    import pyfer

    cv2.setNumThreads(1)
    face = cv2.resize(cv2.imread(str(group_photos.ASTRONAUT)), (480, 480), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((480, 640, 3), 60, np.uint8)
    canvas[:, 80:560] = face
    recs = {d: pyfer.Recognizer(detector=d, threads=1) for d in ("yunet", "yunet-tilted")}
    times: dict[str, list[float]] = {d: [] for d in recs}
    for i in range(43):
        for d, rec in recs.items():
            t0 = time.perf_counter()
            rec.predict(canvas)
            if i >= 3:
                times[d].append(time.perf_counter() - t0)
    med = {d: 1e3 * float(np.median(t)) for d, t in times.items()}
    print("640x480 predict, median ms: " + "  ".join(f"{d} {m:.2f}" for d, m in med.items())
          + f"  ratio {med['yunet-tilted'] / med['yunet']:.2f}")


def main(argv=None) -> int:
    import argparse

    import pyfer

    argparse.ArgumentParser(description="Tilted heads and close-ups through Recognizer.predict, with "
                            "each detector (about 30 s; needs ../shared/data/sfew_train).").parse_args(argv)
    if not (group_photos.DATA / "sfew_train").is_dir():
        print(f"needs {group_photos.DATA / 'sfew_train'}", file=sys.stderr)
        return 2
    for detector in ("yunet", "yunet-tilted"):
        print(f"detector={detector!r}")
        tilted(pyfer.Recognizer(threads=1, detector=detector), sfew(48, seed=11), np.random.default_rng(11))
    close_ups(pyfer.Recognizer(threads=1), sfew(40, seed=3))
    speed_640x480()
    return 0


if __name__ == "__main__":
    sys.exit(main())
