"""Training crops made by the same face normalization as inference (``pyfer.facenorm``).

Each image is run through pyfer's YuNet detector once (the result is cached beside the decoded
images); its surest face is mapped to the model's input by :func:`pyfer.facenorm.normalize_face`.
Where YuNet finds no face (3% of FERPlus frames) the whole image is the face, as before.

    python -m training.framing --data ferplus:../shared/data/ferplus   # warm the caches
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

from pyfer.atomic import atomic_write
from pyfer.facenorm import FaceFraming, normalize_face
from pyfer.preprocess import PreprocessSpec, resize_face, to_gray
from training.cli import reported_errors, run_tool
from training.data import FaceSet, cache_dir, ferplus_raw, load_dataset

# A low threshold: these images hold one face each, and the surest box is taken
DETECT_THRESHOLD = 0.3


def detect_faces(images: list[np.ndarray], names: list[str], desc: str):
    """Surest YuNet face per image -> (boxes (N, 4), landmarks (N, 5, 2), scores (N,)); score 0 = none.
    Cached under a key of the image names and the detector's settings, so a changed detector
    detects again rather than reusing boxes it would not find."""
    from tqdm import tqdm

    from pyfer.yunet import YuNetDetector

    det = YuNetDetector(score_threshold=DETECT_THRESHOLD)
    key = hashlib.sha1(("\n".join(names) + json.dumps(det.config(), sort_keys=True)).encode()).hexdigest()[:12]
    path = cache_dir() / f"yunet_{key}.npz"
    if path.is_file():
        z = np.load(path)
        if len(z["scores"]) == len(images):
            return z["boxes"], z["landmarks"], z["scores"]
    boxes = np.zeros((len(images), 4), np.float32)
    lms = np.zeros((len(images), 5, 2), np.float32)
    scores = np.zeros(len(images), np.float32)
    # disable=None: no bar when stderr is not a terminal (a nohup log would fill with \r lines), so
    # a log gets one line instead: this pass takes about a minute on FERPlus train
    if not sys.stderr.isatty():
        print(f"{desc}: YuNet on {len(images)} images, once (cached in {path})", file=sys.stderr, flush=True)
    for i, img in enumerate(tqdm(images, desc=desc, mininterval=2.0, disable=None)):
        found = det(img)
        if found:
            best = max(found, key=lambda d: d.score)
            boxes[i], lms[i], scores[i] = best.box, best.landmarks, best.score
    with atomic_write(path, binary=True) as f:  # (two processes may detect at once: pytest -n)
        np.savez(f, boxes=boxes, landmarks=lms, scores=scores)
    return boxes, lms, scores


def frame_images(images: list[np.ndarray], size: int, framing: FaceFraming, names: list[str],
                 desc: str) -> np.ndarray:
    """Gray uint8 images of any size -> (N, size, size) crops framed by ``normalize_face``."""
    boxes, lms, scores = detect_faces(images, names, desc)
    out = np.empty((len(images), size, size), np.uint8)
    for i, img in enumerate(images):
        gray = to_gray(img)
        if scores[i] > 0:
            out[i] = normalize_face(gray, size, boxes[i], lms[i], framing)
        else:
            out[i] = resize_face(gray, size)
    return out


def load_framed(source: str, prep: PreprocessSpec, split: str, framing: FaceFraming,
                protocol: str = "majority") -> FaceSet:
    """``load_dataset`` with every face re-framed from its source image by ``normalize_face``."""
    kind, _, path = source.partition(":")
    if kind == "ferplus" and path:
        raw, (labels, shares, names) = ferplus_raw(path, split, protocol)
        images = list(raw)
        base = FaceSet(np.zeros((len(raw), 1, 1), np.uint8), labels, shares, names)
    else:  # a manifest: decode at full size (load_dataset resizes to the input size)
        import cv2

        base = load_dataset(source, PreprocessSpec(), split)
        images = [cv2.imdecode(np.fromfile(n, np.uint8), cv2.IMREAD_COLOR) for n in base.names]
    # a manifest's files by their real paths: `../shared/x.csv` and `/work/shared/x.csv` share a cache
    key_names = list(base.names) if kind == "ferplus" and path else [os.path.realpath(n) for n in base.names]
    framed = frame_images(images, prep.input_size, framing, key_names, f"YuNet {source.rsplit('/', 1)[-1]} {split}")
    return FaceSet(framed, base.labels, base.targets, base.names)


def main(argv=None) -> None:
    from training.data import DEFAULT_DATA

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--splits", default="train,valid")
    args = ap.parse_args(argv)
    for split in args.splits.split(","):
        with reported_errors():  # bad data, and caches that cannot be written: one line
            s = load_framed(args.data, PreprocessSpec(), split, FaceFraming())
        print(f"{split}: {len(s)} faces framed")


if __name__ == "__main__":
    run_tool(main)
