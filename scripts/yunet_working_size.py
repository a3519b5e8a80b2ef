"""The measurements behind YuNet's working size in pyfer.yunet (docs/recognizer.md).

    python scripts/yunet_working_size.py            # all three tables (about 5 minutes on 2 busy cores)
    python scripts/yunet_working_size.py --only time

1. ``net``: detection rate against the face's width *in the network's input*: 60 frontal SFEW faces
   (scripts/group_photos.py's selection) pasted at 60 and 80 px on a 1920x1080 background, the
   frame scaled so that the face is N px; raw ``cv2.FaceDetectorYN`` at score 0.6, no second look.
2. ``crops``: tight face crops (every 2nd FERPlus valid image, all SFEW train), each enlarged or
   shrunk so that its long side, after an edge-replicated border of ``pad`` of the long side, is
   ``side`` px: is a face found at all?
3. ``time``: one ``detect`` call at each input size, one OpenCV thread, median of 25.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def net(threshold: float = 0.6) -> "cv2.FaceDetectorYN":  # noqa: F821
    import cv2

    from pyfer.yunet import default_model_path

    return cv2.FaceDetectorYN.create(str(default_model_path()), "", (320, 320), threshold, 0.3, 5000)


def detect(d, img):
    d.setInputSize((img.shape[1], img.shape[0]))
    return d.detect(img)[1]


def table_net() -> None:
    import cv2

    import group_photos as gp

    d = net()
    faces = gp.sfew_faces(60)
    print("\n| face width in the network input (px) | 20 | 24 | 27 | 30 | 33 | 36 | 40 | 48 |")
    print("|---|---|---|---|---|---|---|---|---|")
    scenes = []  # (frame, face box, face width), built once
    for i, (_, f) in enumerate(faces):
        bg = gp.background(1080, 1920, np.random.default_rng(i))
        for k, w in enumerate((60, 80)):
            frame = bg.copy()
            scenes.append((frame, gp.paste_tight(frame, f, 400 + (i % 4) * 300 + 150 * k, 500, w), w))
    rates = []
    for size in (20, 24, 27, 30, 33, 36, 40, 48):
        hits = 0
        for frame, truth, w in scenes:
            s = size / w
            out = detect(d, cv2.resize(frame, None, fx=s, fy=s, interpolation=cv2.INTER_AREA))
            found = [] if out is None else [tuple(o[:4] / s) for o in out]
            hits += gp.match([truth], found)[0][0]
        rates.append(f"{hits / len(scenes):.1%}")
        n = len(scenes)
    print(f"| SFEW faces found ({n}) | " + " | ".join(rates) + " |")


def table_crops() -> None:
    import cv2

    from training.data import ferplus_raw

    fer, _ = ferplus_raw(REPO.parent / "shared" / "data" / "ferplus", "valid")
    fer = fer[::2]
    root = REPO.parent / "shared" / "data" / "sfew_train"
    with open(root / "manifest.csv") as f:
        sfew = [cv2.imread(str(root / r["path"])) for r in csv.DictReader(f)]
    d = net()

    def found(img, pad, side):
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        p = int(round(pad * max(img.shape[:2])))
        im = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_REPLICATE)
        s = side / max(im.shape[:2])
        im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)),
                        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        return detect(d, im) is not None

    print(f"\n| border (of the long side) | long side in the network input | FERPlus valid ({len(fer)}) | "
          f"SFEW train ({len(sfew)}) |")
    print("|---|---|---|---|")
    for pad, side in ((0.0, 96), (0.0, 160), (0.0, 240), (0.0, 320), (0.1, 240), (0.25, 240), (0.25, 320)):
        rf = np.mean([found(x, pad, side) for x in fer])
        rs = np.mean([found(x, pad, side) for x in sfew])
        print(f"| {pad:.2f} | {side} | {rf:.1%} | {rs:.1%} |", flush=True)


def table_time() -> None:
    import cv2

    img = cv2.imread(str(REPO / "examples" / "astronaut.png"))
    d = net()
    print("\n| network input | 240x240 | 320x240 | 384x288 | 480x360 | 640x480 | 960x540 | 1152x648 |")
    print("|---|---|---|---|---|---|---|---|")
    cells = []
    for w, h in ((240, 240), (320, 240), (384, 288), (480, 360), (640, 480), (960, 540), (1152, 648)):
        x = cv2.resize(img, (w, h))
        ts = []
        for _ in range(25):
            t0 = time.perf_counter()
            detect(d, x)
            ts.append(time.perf_counter() - t0)
        cells.append(f"{np.median(ts[3:]) * 1e3:.1f}")
    print("| ms, median (1 thread) | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["net", "crops", "time"])
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    from eval_frontend import cpu_name

    print(f"CPU: {cpu_name()} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f}")
    for name, fn in (("net", table_net), ("crops", table_crops), ("time", table_time)):
        if args.only in (None, name):
            fn()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
