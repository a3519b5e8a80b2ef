"""``pyfer.Recognizer``: images in, faces with expression scores out.

Pipeline per image: decode/validate -> detect faces (Haar by default) -> square crop with the
training framing, eyes levelled when found -> ``pyfer.preprocess`` (the definition shared with
training, parameters read from the weights' metadata) -> compiled engine -> softmax.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from pyfer.detect import DEFAULT_MARGIN, Box, Detector, EyeAligner, check_box, clip_box, crop_face, get_detector
from pyfer.preprocess import PreprocessSpec, normalize, resize_face, to_gray

ImageLike = Union[str, os.PathLike, np.ndarray]
WEIGHTS_FILE = "tsnet_student.safetensors"


@dataclass(frozen=True)
class Face:
    box: Box  # (x, y, w, h) in image pixels, clipped to the image
    label: str
    scores: dict[str, float]  # probabilities over the classes, summing to 1
    confidence: float  # = scores[label]

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "confidence": round(self.confidence, 6),
                "scores": {k: round(v, 6) for k, v in self.scores.items()}}


def default_weights_path() -> Path:
    """The distilled student shipped inside the package (no download)."""
    from importlib.resources import files

    path = Path(str(files("pyfer") / "models" / WEIGHTS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"the pyfer default weights are not installed (expected {path}); "
                                "reinstall pyfer or pass weights=PATH to a .safetensors file")
    return path


def load_image(image: ImageLike) -> np.ndarray:
    """A path or an array -> uint8 HxW, HxWx3 (BGR) or HxWx4 (BGRA). Raises ValueError/TypeError
    with a clear message for anything else; never hands OpenCV something it could crash on."""
    if isinstance(image, (str, os.PathLike)):
        import cv2

        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"no such image file: {path}")
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode: also non-ASCII paths
        if data.size == 0:
            raise ValueError(f"empty file: {path}")
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if img is None:
            raise ValueError(f"cannot decode {path} as an image")
        if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha PNG
            img = img[:, :, 0]
        return as_uint8_image(img)
    if isinstance(image, np.ndarray):
        return as_uint8_image(image)
    raise TypeError(f"expected an image path or a numpy array, got {type(image).__name__}")


def as_uint8_image(a: np.ndarray) -> np.ndarray:
    if a.dtype == bool or a.dtype == object or not (np.issubdtype(a.dtype, np.integer)
                                                   or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"unsupported image dtype {a.dtype}: use uint8 (or another int/float type)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"expected an HxW gray, HxWx3 BGR or HxWx4 BGRA image, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"empty image (shape {a.shape})")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:  # 16-bit PNG/TIFF
        return (a >> 8).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("image has NaN or infinite values")
        hi = float(a.max())
        a = a * 255.0 if hi <= 1.0 else a  # floats in [0, 1] (skimage style) or [0, 255]
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"image values must lie in [0, 255] (or [0, 1] for floats), got [{lo}, {hi}]")
    return np.ascontiguousarray(np.rint(a).astype(np.uint8))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Recognizer:
    """Facial expression recognizer.

    ``weights``: a .safetensors file from ``training.export`` (None: the shipped student).
    ``detector``: 'haar' (default), 'mediapipe', any callable ``image -> [(x, y, w, h), ...]``, or
    None to treat each whole image as one face. ``align``: level the eyes before cropping.
    ``margin``: extra context around each box, as a fraction of its side.
    ``flip``: average the logits of each face and its mirror image (test-time augmentation; on
    FERPlus valid it lifts the shipped student from 85.80% to 86.68%, see RESULTS.md).
    """

    def __init__(self, weights: Union[str, os.PathLike, None] = None, device: str = "cpu",
                 detector: Union[str, Detector, None] = "haar", threads: Optional[int] = None,
                 align: bool = False, margin: float = DEFAULT_MARGIN, flip: bool = True):
        from pyfer.engine import Engine

        self.weights_path = Path(weights) if weights is not None else default_weights_path()
        self.engine = Engine(str(self.weights_path), device=device, threads=threads)
        self.spec = PreprocessSpec.from_dict(self.engine.preprocess)
        self.class_names: tuple[str, ...] = tuple(self.engine.class_names)
        self.detector = get_detector(detector)
        self.aligner = EyeAligner() if align else None
        self.margin = float(margin)
        self.flip = bool(flip)
        # seconds spent per stage by the last predict/predict_batch call (benchmarks, `pyfer predict -v`)
        self.last_timings: dict[str, float] = {}

    # -- public API -------------------------------------------------------------------------
    def predict(self, image: ImageLike, boxes: Optional[Iterable[Sequence[float]]] = None) -> list[Face]:
        """Faces in one image (largest first). ``boxes`` skips detection."""
        return self._predict_many([image], None if boxes is None else [boxes])[0]

    def predict_batch(self, images: Sequence[ImageLike]) -> list[list[Face]]:
        """One list of faces per image; all faces go through the engine in one call."""
        return self._predict_many(list(images), None)

    def classify(self, crops: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
        """Already-cropped faces ((N, H, W) uint8 or a list of any-size images) -> (N, C) probabilities."""
        if isinstance(crops, np.ndarray):
            if crops.ndim == 2:
                raise ValueError("classify expects a batch (N, H, W); wrap a single face as crops[None]")
            if crops.ndim not in (3, 4):
                raise ValueError(f"classify expects (N, H, W) or (N, H, W, C) arrays, got shape {crops.shape}")
        items = [as_uint8_image(np.asarray(c)) if isinstance(c, np.ndarray) else load_image(c) for c in crops]
        if not items:
            return np.zeros((0, len(self.class_names)), np.float32)
        return self._infer([to_gray(c) for c in items])

    # -- internals ---------------------------------------------------------------------------
    def _predict_many(self, images: list, boxes_per_image: Optional[list]) -> list[list[Face]]:
        t = {"decode": 0.0, "detect": 0.0, "align": 0.0, "engine": 0.0}
        crops: list[np.ndarray] = []
        owners: list[tuple[int, Box]] = []
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            img = load_image(image)
            t1 = time.perf_counter()
            gray = to_gray(img)
            if boxes_per_image is not None and boxes_per_image[i] is not None:
                boxes = [check_box(b, gray.shape) for b in boxes_per_image[i]]
            elif self.detector is None:
                boxes = None
            else:
                boxes = [check_box(b, gray.shape) for b in self.detector(img)]
            t2 = time.perf_counter()
            if boxes is None:  # whole image is the face: no margin, no alignment
                crops.append(gray)
                owners.append((i, (0, 0, gray.shape[1], gray.shape[0])))
            else:
                for b in boxes:
                    angle = self.aligner.angle(gray, b) if self.aligner else 0.0
                    crops.append(resize_face(crop_face(gray, b, self.margin, angle), self.spec.input_size))
                    owners.append((i, clip_box(b, gray.shape)))
            t3 = time.perf_counter()
            t["decode"] += t1 - t0
            t["detect"] += t2 - t1
            t["align"] += t3 - t2
        t4 = time.perf_counter()
        probs = self._infer(crops) if crops else np.zeros((0, len(self.class_names)))
        t["engine"] = time.perf_counter() - t4
        self.last_timings = t
        out: list[list[Face]] = [[] for _ in images]
        for (i, box), p in zip(owners, probs):
            k = int(np.argmax(p))
            scores = {name: float(v) for name, v in zip(self.class_names, p)}
            out[i].append(Face(box=box, label=self.class_names[k], scores=scores, confidence=float(p[k])))
        return out

    def _infer(self, grays: list[np.ndarray]) -> np.ndarray:
        size = self.spec.input_size
        x = normalize(np.stack([resize_face(g, size) for g in grays]), self.spec)
        if not self.flip:
            return softmax(self.engine.forward(x))
        # one engine call for the faces and their mirrors
        logits = self.engine.forward(np.concatenate([x, np.ascontiguousarray(x[..., ::-1])]))
        n = len(grays)
        return softmax((logits[:n] + logits[n:]) / 2)

    def info(self) -> dict:
        return {"weights": str(self.weights_path), "classes": list(self.class_names),
                "preprocess": self.spec.to_dict(), "detector": repr(self.detector),
                "align": self.aligner is not None, "margin": self.margin, "flip": self.flip}
