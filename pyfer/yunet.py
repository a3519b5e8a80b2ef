"""YuNet face detector (Wu, Peng, Yu 2023; MIT) through OpenCV's ``cv2.FaceDetectorYN``.

Each call gives faces with a box, five landmarks and a score, in the caller's image pixels.
The network was trained on faces of about 10 to 300 px in its input, so the image is first given
a border (``pad`` of its longer side, edge-replicated: a face that fills the frame or touches its
edge still has context around it) and then scaled so that its longer side is ``work_side`` px.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

MODEL_FILE = "face_detection_yunet_2023mar.onnx"


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # (x, y, w, h) in image pixels
    landmarks: np.ndarray  # (5, 2) float32: right eye, left eye, nose tip, right, left mouth corner
    score: float


def default_model_path() -> Path:
    from importlib.resources import files

    return Path(str(files("pyfer") / "models" / MODEL_FILE))


class YuNetDetector:
    """``detector(image) -> list[Detection]`` for a uint8 gray, BGR or BGRA image."""

    def __init__(self, model: Union[str, Path, None] = None, work_side: int = 320, pad: float = 0.25,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3, min_face: int = 0,
                 top_k: int = 5000):
        self.model = Path(model) if model is not None else default_model_path()
        if not self.model.is_file():
            raise FileNotFoundError(f"YuNet model not found: {self.model}")
        if work_side < 32:
            raise ValueError(f"work_side must be >= 32 px, got {work_side}")
        if not 0 <= pad <= 1:
            raise ValueError(f"pad must lie in [0, 1], got {pad}")
        if not 0 < score_threshold < 1:
            raise ValueError(f"score_threshold must lie in (0, 1), got {score_threshold}")
        self.work_side = int(work_side)
        self.pad = float(pad)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face = int(min_face)
        self.top_k = int(top_k)
        self._local = threading.local()  # cv2.FaceDetectorYN keeps per-call state: one per thread

    def _net(self, size: tuple[int, int]):
        import cv2

        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = cv2.FaceDetectorYN.create(
                str(self.model), "", size, self.score_threshold, self.nms_threshold, self.top_k)
        net.setInputSize(size)
        return net

    def __call__(self, image: np.ndarray) -> list[Detection]:
        import cv2

        if image.ndim == 2 or image.shape[2] == 1:
            bgr = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            bgr = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        else:
            bgr = image
        h, w = bgr.shape[:2]
        p = int(round(self.pad * max(h, w)))
        # scale first, then pad: the border costs nothing at full size. Small images are enlarged
        # too: YuNet misses a third of 48x48 faces at their own size (FERPlus valid).
        scale = self.work_side / (max(h, w) + 2 * p)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        small = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        sp = int(round(p * scale))
        padded = cv2.copyMakeBorder(small, sp, sp, sp, sp, cv2.BORDER_REPLICATE)
        sx = small.shape[1] / w  # exact per-axis factors of the rounded resize
        sy = small.shape[0] / h
        _, found = self._net((padded.shape[1], padded.shape[0])).detect(padded)
        if found is None:
            return []
        out = []
        for row in found:
            xy = row[:14].reshape(7, 2) - sp
            xy = xy / np.array([sx, sy], np.float32)
            x0, y0 = xy[0]
            bw, bh = row[2] / sx, row[3] / sy  # width and height: scaled, not shifted
            if min(bw, bh) < self.min_face:
                continue
            box = (int(round(x0)), int(round(y0)), int(round(bw)), int(round(bh)))
            out.append(Detection(box=box, landmarks=xy[2:].astype(np.float32), score=float(row[14])))
        return out
