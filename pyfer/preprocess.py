"""The one preprocessing definition shared by training and inference.

A face crop (any size, gray or BGR/BGRA uint8) becomes a float32 ``(C, S, S)`` tensor:
grayscale -> resize to S x S (OpenCV bilinear with half-pixel centres when enlarging, area
averaging when shrinking) -> ``(x / 255 - mean) / std``. Training caches the resized uint8
images produced by :func:`resize_face` and normalises with :func:`normalize`, and the exported
weights carry the same numbers in their metadata (:class:`PreprocessSpec`), so the engine side
reads them back instead of assuming them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


@dataclass(frozen=True)
class PreprocessSpec:
    input_size: int = 64
    channels: int = 1
    mean: float = 0.5
    std: float = 0.5

    def __post_init__(self):
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 1024:
            raise ValueError(f"input_size must be an int in [8, 1024], got {self.input_size!r}")
        if self.channels != 1:
            raise ValueError("only grayscale (1-channel) models are supported")
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        return cls(int(d["input_size"]), int(d.get("channels", 1)), float(d["mean"]), float(d["std"]))


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA) -> uint8 HxW."""
    import cv2

    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")


def on_white(image: np.ndarray) -> np.ndarray:
    """A BGRA uint8 image composited on white, as a viewer shows it (BGR); other images as they
    are. What ``predict`` looks at and what ``draw_faces`` draws on: a fully transparent PNG
    whose hidden colour held a face was read as happiness 0.98 over a blank white picture."""
    if image.ndim != 3 or image.shape[2] != 4:
        return image
    if image[:, :, 3].min() == 255:  # opaque: the colour as it is
        return np.ascontiguousarray(image[:, :, :3])
    alpha = image[:, :, 3:].astype(np.float32) / 255.0
    return np.round(image[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def resize_face(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 gray crop to ``size x size``."""
    import cv2

    h, w = gray.shape[:2]
    if (h, w) == (size, size):
        return np.ascontiguousarray(gray)
    interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def normalize(batch_u8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (N, S, S) -> float32 (N, 1, S, S) normalised as the model was trained."""
    x = batch_u8.astype(np.float32)[:, None]
    x *= 1.0 / (255.0 * spec.std)
    x -= spec.mean / spec.std
    return x


def prepare_faces(crops, spec: PreprocessSpec) -> np.ndarray:
    """Face crops (uint8, any size, gray/BGR/BGRA) -> float32 (N, 1, S, S) model input."""
    resized = np.stack([resize_face(to_gray(c), spec.input_size) for c in crops])
    return normalize(resized, spec)
