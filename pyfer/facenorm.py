"""The one face normalization: a detection (box, five landmarks) -> the model's square input crop.

Training and inference both call :func:`normalize_face`, so a face is framed alike in both. Its
parameters (:class:`FaceFraming`) travel in the weights' metadata under ``"framing"``.

Two modes:

- ``"align"``: the similarity transform (rotation, uniform scale, shift; least squares, Umeyama
  1991) that maps the five detected landmarks onto ``template`` (positions in the unit output
  square). Eyes come out level and at a fixed distance, whatever the head roll and the box.
- ``"box"``: a square of ``box_scale`` box sides around the box centre shifted by ``box_shift``
  (in box sides), no rotation. Used for detectors without landmarks.

The default template and box numbers are the medians of YuNet's landmarks and boxes on the
FERPlus valid images (``python -m training.calibrate_framing``), so a FERPlus image maps back
onto (nearly) its own frame, and real photos are framed like the training images.

A crop much smaller than the face it comes from (more than 2x) is first shrunk with area
averaging, so that a large face is not aliased; pixels outside the image repeat its edge.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from pyfer.preprocess import to_gray

MODES = ("align", "box")


@dataclass(frozen=True)
class FaceFraming:
    mode: str = "align"
    # right eye, left eye, nose tip, right and left mouth corner, in [0, 1] output coordinates
    # (the FERPlus valid medians, mirrored to be left-right symmetric so that a flipped crop is the
    # crop of the flipped face: flip averaging relies on it)
    template: tuple[tuple[float, float], ...] = ((0.3150, 0.3789), (0.6850, 0.3789), (0.5, 0.5951),
                                                 (0.3493, 0.7596), (0.6507, 0.7596))
    box_scale: float = 0.96
    box_shift: tuple[float, float] = (0.0, 0.01)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"framing mode must be one of {MODES}, got {self.mode!r}")
        t = np.asarray(self.template, dtype=np.float64)
        if t.shape != (5, 2) or not np.isfinite(t).all():
            raise ValueError(f"framing template must be 5 (x, y) points, got {self.template!r}")
        if not (np.isfinite(self.box_scale) and 0.2 <= self.box_scale <= 5):
            raise ValueError(f"box_scale must lie in [0.2, 5], got {self.box_scale!r}")
        if np.shape(self.box_shift) != (2,) or not np.isfinite(self.box_shift).all():
            raise ValueError(f"box_shift must be one (x, y) pair, got {self.box_shift!r}")

    def to_dict(self) -> dict:
        return {"mode": self.mode, "template": [list(map(float, p)) for p in self.template],
                "box_scale": float(self.box_scale), "box_shift": list(map(float, self.box_shift))}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "FaceFraming":
        if not d:
            return cls()
        return cls(mode=str(d.get("mode", "align")),
                   template=tuple(_pair(p, "template") for p in d.get("template", cls.template)),
                   box_scale=float(d.get("box_scale", cls.box_scale)),
                   box_shift=_pair(d.get("box_shift", cls.box_shift), "box_shift"))


def _pair(values, what: str) -> tuple[float, float]:
    """An (x, y) pair read from a weights file's metadata."""
    xy = tuple(float(v) for v in values)
    if len(xy) != 2:
        raise ValueError(f"framing {what} must be (x, y) pairs, got {values!r}")
    return xy[0], xy[1]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 similarity (rotation, uniform scale, shift; no reflection) mapping points
    ``src`` onto ``dst``: Umeyama's solution, in its closed 2-D form. With the centred points as
    complex numbers s_i, d_i, the map is d = c * s with c = sum(conj(s_i) d_i) / sum(|s_i|^2), so
    no SVD is needed (the same matrix to about 1e-12). Plain floats: for five points, numpy's
    per-call overhead would be most of the time."""
    ps = np.asarray(src, np.float64).reshape(-1, 2).tolist()
    pd = np.asarray(dst, np.float64).reshape(-1, 2).tolist()
    n = len(ps)
    sx, sy = sum(p[0] for p in ps) / n, sum(p[1] for p in ps) / n
    dx, dy = sum(p[0] for p in pd) / n, sum(p[1] for p in pd) / n
    norm = re = im = 0.0
    for (x, y), (u, v) in zip(ps, pd):
        x, y, u, v = x - sx, y - sy, u - dx, v - dy
        norm += x * x + y * y
        re += x * u + y * v
        im += x * v - y * u
    if not norm >= 1e-12 * n:
        raise ValueError("landmarks coincide: no transform")
    a, b = re / norm, im / norm  # scale * cos(angle), scale * sin(angle)
    return np.array([[a, -b, dx - (a * sx - b * sy)], [b, a, dy - (b * sx + a * sy)]])


def framing_transform(size: int, box: Sequence[float], landmarks: Optional[np.ndarray],
                      framing: FaceFraming) -> np.ndarray:
    """The 2x3 map from image pixels to the ``size x size`` crop's pixels."""
    if framing.mode == "align" and landmarks is not None:
        lm = np.asarray(landmarks, np.float64).reshape(5, 2)
        if np.isfinite(lm).all():
            return similarity_transform(lm, np.asarray(framing.template) * size)
    x, y, w, h = (float(v) for v in box)
    side = framing.box_scale * max(w, h)
    if not side > 0:
        raise ValueError(f"empty face box {tuple(box)}")
    cx = x + w / 2 + framing.box_shift[0] * w
    cy = y + h / 2 + framing.box_shift[1] * h
    k = size / side
    return np.array([[k, 0.0, size / 2 - k * cx], [0.0, k, size / 2 - k * cy]])


def normalize_face(image: np.ndarray, size: int, box: Sequence[float], landmarks: Optional[np.ndarray] = None,
                   framing: FaceFraming = FaceFraming()) -> np.ndarray:
    """uint8 HxW gray, HxWx3 BGR or HxWx4 BGRA image + one detection -> uint8 ``size x size`` gray
    crop framed as the model expects.

    Only the region the crop reads (its square mapped back, 2 px wider, clipped to the image) is
    converted to gray and warped: the result is that of converting the whole image first (the
    conversion is per pixel, the region holds every pixel the bilinear warp reads, and at the
    image's edges it ends where the image does, so the repeated border is the same), at a fraction
    of the cost for a small face in a large photo."""
    import cv2

    m = framing_transform(size, box, landmarks, framing)
    inv = cv2.invertAffineTransform(m)  # crop pixel -> image point
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(0)).astype(int) - 2
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if not (cx1 > cx0 and cy1 > cy0):  # the square misses the image: its edge, repeated
        return cv2.warpAffine(to_gray(image), m, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    region = to_gray(image[cy0:cy1, cx0:cx1])
    scale = abs(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]) ** 0.5
    if scale < 0.5:  # shrink the region first (area averaging), then warp at about 1:1
        rw, rh = max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale))
        small = cv2.resize(region, (rw, rh), interpolation=cv2.INTER_AREA)
        fx, fy = rw / region.shape[1], rh / region.shape[0]
        # crop pixels = m @ (image point); image point = (cx0, cy0) + region point / (fx, fy)
        m = np.column_stack([m[:, 0] / fx, m[:, 1] / fy, m[:, :2] @ np.array([cx0, cy0]) + m[:, 2]])
        return cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # the inverse map shifted by the region's corner: an exact integer shift of every source
    # coordinate, so the warp's fixed-point weights are those of the whole-image warp
    inv[:, 2] -= (cx0, cy0)
    return cv2.warpAffine(region, inv, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)
