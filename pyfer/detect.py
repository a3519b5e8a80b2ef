"""Face detectors, box checks, and the older Haar-era cropping helpers.

A detector is any callable ``detector(image) -> faces``, where ``image`` is a uint8 gray, BGR or
BGRA array and each face either an ``(x, y, w, h)`` box in that image's pixels or an object with
``box`` and optionally ``landmarks`` (5x2: right eye, left eye, nose tip, right and left mouth
corners) and ``score`` (``pyfer.yunet.Detection``). pyfer ships YuNet (``pyfer.yunet``, the
default: boxes, landmarks, scores), OpenCV's Haar cascade (boxes only) and a MediaPipe detector
(only if ``mediapipe`` is installed).

``crop_face``/``EyeAligner`` are the Haar-era framing (a square crop with a margin, eyes levelled
by a Haar eye search); the Recognizer now frames every face with ``pyfer.facenorm.normalize_face``,
and these stay for ``pyfer bench`` and for comparisons (docs/recognizer.md).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from pyfer.exit_gate import finishes_before_exit
from pyfer.preprocess import to_gray

Box = tuple[int, int, int, int]
Detector = Callable[[np.ndarray], Iterable[Union[Sequence[float], Any]]]

# Fraction of the box side added on each side when cropping. FER2013 frames are 1.03 Haar box sides
# (0.015 per side); on SFEW, accuracy through predict peaks at 0.05-0.10 (46.4% vs 45.4% at 0, 44.1%
# at 0.2; docs/recognizer.md), so 0.05 sits where both measurements agree.
DEFAULT_MARGIN = 0.05


def _box(values: Iterable[float]) -> Box:
    x, y, w, h = (int(round(v)) for v in values)
    return x, y, w, h


def face_order(box: Box, score: Optional[float], sure_score: Optional[float] = None) -> tuple:
    """Sort key of the order faces are given in: faces the detector is sure of (score at least its
    ``sure_score``, or no score; every face when it has no ``sure_score``) before doubtful ones,
    then largest first, then surest. So the main subject comes first, and a large doubtful face
    (a false face in a smooth, enlarged photo: 0.64-0.70 where the real one scored 0.94) does not
    push a sure one back."""
    doubtful = sure_score is not None and score is not None and score < sure_score
    return doubtful, -box[2] * box[3], -(score if score is not None else 0.0)


def _cascade(name: str):
    import cv2

    path = cv2.data.haarcascades + name  # type: ignore[attr-defined]  # not in OpenCV's stubs
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise RuntimeError(f"could not load the OpenCV cascade {path} (needs opencv-python(-headless) < 5)")
    return c


class _PerThreadCascade:
    """One ``cv2.CascadeClassifier`` per thread: OpenCV's cascade keeps per-image state in the
    object, so a cascade shared by threads fails (``getScaleData`` assertions, out-of-range
    vector access) or returns wrong boxes. A loaded cascade is ~20 ms, once per thread."""

    def __init__(self, name: str):
        self.name = name
        self._local = threading.local()
        self._local.c = _cascade(name)  # the constructing thread's; fails early on a bad install

    def get(self):
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = _cascade(self.name)
        return c


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, tuned for recall at a sensible speed.

    The image is shrunk so that the smallest face worth finding (``min_face`` of the shorter side,
    at least ``min_face_px``) lands near the cascade's native window (20 px): no time is spent on
    faces too small to classify, and huge images cost no more than ``max_side`` allows. If nothing
    is found, the image is searched once more with an edge-replicated border of ``fallback_pad``
    (of the shorter side) so that tight face crops, whose face touches the border, are found too.
    The ``alt2`` cascade with ``min_neighbors=2`` favours recall (SFEW detection rate 0.74, against
    0.70 for the ``default`` cascade at 3 and 0.63 at 5) and gives fewer false positives than
    ``default``; weak extra boxes are then dropped by ``min_relative_votes``.
    """

    # how its boxes frame a face: FER2013 frames are 1.03 Haar box sides; margin 0.05 measured best
    # on SFEW through predict (docs/recognizer.md). Used by the Recognizer for Haar's boxes.
    box_margin = DEFAULT_MARGIN

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 2, min_face: float = 0.1,
                 min_face_px: int = 32, max_side: int = 1024, fallback_pad: float = 0.3,
                 min_relative_votes: float = 0.3, cascade: str = "haarcascade_frontalface_alt2.xml"):
        if scale_factor <= 1.0:
            raise ValueError("scale_factor must be > 1")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face = min_face
        self.min_face_px = min_face_px
        self.max_side = max_side
        self.fallback_pad = fallback_pad
        self.min_relative_votes = min_relative_votes
        self.cascade = cascade
        self._cascades = _PerThreadCascade(cascade)
        self.window = int(min(self._cascades.get().getOriginalWindowSize()))  # 20 px for alt2

    def __repr__(self) -> str:  # its settings, the same in every process (Recognizer.info, --resume)
        return (f"HaarDetector(scale_factor={self.scale_factor}, min_neighbors={self.min_neighbors}, "
                f"min_face={self.min_face}, min_face_px={self.min_face_px}, max_side={self.max_side}, "
                f"fallback_pad={self.fallback_pad}, min_relative_votes={self.min_relative_votes}, "
                f"cascade={self.cascade!r})")

    @finishes_before_exit
    def __call__(self, image: np.ndarray) -> list[Box]:
        gray = to_gray(image)
        boxes = self._detect(gray)
        if not boxes and self.fallback_pad > 0:
            import cv2

            p = int(round(self.fallback_pad * min(gray.shape)))
            padded = cv2.copyMakeBorder(gray, p, p, p, p, cv2.BORDER_REPLICATE)
            boxes = [(x - p, y - p, w, h) for x, y, w, h in self._detect(padded)]
        return boxes

    def _detect(self, gray: np.ndarray) -> list[Box]:
        import cv2

        h, w = gray.shape
        min_face = max(self.min_face_px, self.min_face * min(h, w))
        scale = min(1.0, self.window / min_face, self.max_side / max(h, w))
        small = gray if scale >= 1.0 else cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        min_px = max(self.window, int(min_face * scale))
        if min(small.shape) < min_px:
            return []
        found, votes = self._cascades.get().detectMultiScale2(small, self.scale_factor, self.min_neighbors,
                                                       minSize=(min_px, min_px))
        votes = np.asarray(votes).reshape(-1)
        by_votes = np.argsort(-votes, kind="stable")  # most votes (surest) first
        # Weak detections next to a much surer face are nearly always false (on SFEW, single-face
        # images, secondary boxes below 1/5 of the best votes were; real faces score alike).
        kept = [i for i in by_votes if votes[i] >= self.min_relative_votes * votes[by_votes[0]]]
        found = np.asarray(found).reshape(-1, 4)[kept]
        return [_box(v / scale for v in b) for b in found]


MEDIAPIPE_PIN = "mediapipe<0.10.30"  # the last releases with mp.solutions


class MediaPipeDetector:
    """MediaPipe's BlazeFace detector (``pip install 'mediapipe<0.10.30'``; model 1 = full range, 0 = within 2 m).

    Its boxes are framed a little differently from Haar's; the default margin was measured for Haar.
    """

    def __init__(self, min_confidence: float = 0.5, model_selection: int = 1, min_face: float = 0):
        self.min_face = float(min_face)
        self.min_confidence, self.model_selection = float(min_confidence), int(model_selection)
        try:
            import mediapipe as mp
        except ImportError as e:
            raise ImportError(f"detector='mediapipe' needs the mediapipe package: pip install '{MEDIAPIPE_PIN}'") from e
        solutions = getattr(mp, "solutions", None)
        if solutions is None:  # mediapipe 0.10.30 removed the legacy solutions API this detector uses
            raise ImportError(f"detector='mediapipe' needs MediaPipe's legacy 'solutions' API, which mediapipe "
                              f"{getattr(mp, '__version__', '?')} lacks: pip install '{MEDIAPIPE_PIN}'")
        self._fd = solutions.face_detection.FaceDetection(model_selection=model_selection,
                                                          min_detection_confidence=min_confidence)

    def __repr__(self) -> str:
        return (f"MediaPipeDetector(min_confidence={self.min_confidence}, model_selection={self.model_selection}, "
                f"min_face={self.min_face})")

    @finishes_before_exit
    def __call__(self, image: np.ndarray) -> list[_ScoredBox]:
        import cv2

        rgb = cv2.cvtColor(to_gray(image), cv2.COLOR_GRAY2RGB) if image.ndim == 2 or image.shape[2] == 1 else \
            cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        res = self._fd.process(rgb)
        out = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            box = (int(b.xmin * w), int(b.ymin * h), int(b.width * w), int(b.height * h))
            if max(box[2], box[3]) >= self.min_face:
                out.append(_ScoredBox(box, float(d.score[0]) if d.score else None))
        return out


@dataclass(frozen=True)
class _ScoredBox:
    box: Box
    score: Optional[float]
    landmarks = None


def get_detector(detector: Union[str, Detector, None], min_face: Optional[float] = None,
                 score_threshold: Optional[float] = None, threads: Optional[int] = None) -> Detector | None:
    """'yunet' | 'yunet-tilted' | 'haar' | 'mediapipe' | a callable | None (whole image is the face).
    'yunet-tilted' also searches each image turned by +-30 degrees (tilted heads; about 3x the detection time).

    ``min_face`` (px, longer box side) and ``score_threshold`` configure the named detectors'
    search; for a callable they are applied by the Recognizer to what it returns. Haar gives no
    scores, so a score threshold with 'haar' is an error rather than silently ignored; None
    detects nothing, so both are errors with None. ``threads``: YuNet's, on pyfer's engine (None:
    every CPU this process may use); the other detectors run on their libraries' own threads."""
    if detector is None:
        given = [n for n, v in (("min_face", min_face), ("score_threshold", score_threshold)) if v is not None]
        if given:
            raise ValueError(f"without a detector (detector=None; --detector none) each whole image is one face: "
                             f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply")
        return None
    if callable(detector):
        return detector
    if detector in ("yunet", "yunet-tilted"):
        from pyfer.yunet import YuNetDetector, default_backend

        tilted = detector == "yunet-tilted"
        # YuNet through OpenCV (PYFER_YUNET_BACKEND=opencv) runs on OpenCV's own threads
        threads = threads if default_backend() == "engine" else None
        if score_threshold is None:
            return YuNetDetector(min_face=min_face, tilted=tilted, threads=threads)
        return YuNetDetector(min_face=min_face, tilted=tilted, score_threshold=score_threshold, threads=threads)
    if detector == "haar":
        if score_threshold is not None:
            raise ValueError("the Haar detector gives no scores: score_threshold applies to 'yunet' and 'mediapipe'")
        # Haar's own default searches from 10% of the shorter side; a min_face in px replaces it
        return HaarDetector() if min_face is None else HaarDetector(min_face=0.0, min_face_px=max(20, int(min_face)))
    if detector == "mediapipe":
        return MediaPipeDetector(min_confidence=0.5 if score_threshold is None else score_threshold,
                                 min_face=min_face or 0)
    raise ValueError(f"unknown detector {detector!r}: use 'yunet', 'yunet-tilted', 'haar', 'mediapipe', "
                     "a callable or None")


def check_box(box, image_shape: tuple[int, ...]) -> Box:
    """Validate one ``(x, y, w, h)``: finite numbers, positive size, overlapping the image."""
    try:
        vals = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ValueError(f"a box must be 4 numbers (x, y, w, h), got {box!r}") from None
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"a box must be 4 finite numbers (x, y, w, h), got {box!r}")
    x, y, w, h = (int(round(v)) for v in vals)
    if w <= 0 or h <= 0:
        raise ValueError(f"box {box!r} has a non-positive width or height")
    ih, iw = image_shape[:2]
    if x >= iw or y >= ih or x + w <= 0 or y + h <= 0:
        raise ValueError(f"box {box!r} lies outside the {iw}x{ih} image")
    if max(w, h) > 2 * max(iw, ih):  # also keeps the crop's memory bounded
        raise ValueError(f"box {box!r} is far larger than the {iw}x{ih} image")
    return x, y, w, h


def clip_box(box: Box, image_shape: tuple[int, ...]) -> Box:
    ih, iw = image_shape[:2]
    x, y, w, h = box
    x0, y0, x1, y1 = max(0, x), max(0, y), min(iw, x + w), min(ih, y + h)
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


@dataclass
class EyeAligner:
    """Finds both eyes inside a face box (Haar eye cascade) and returns the roll angle that levels
    them, or 0 when the eyes are not found plausibly (graceful fallback: plain crop)."""

    max_angle: float = 30.0  # degrees; steeper "eye pairs" are almost always false detections
    work_px: int = 96  # the upper face is resized to this width before the eye search

    def __post_init__(self):
        self._cascades = _PerThreadCascade("haarcascade_eye.xml")

    def angle(self, gray: np.ndarray, box: Box) -> float:
        import cv2

        x, y, w, h = clip_box(box, gray.shape)
        upper = gray[y:y + int(h * 0.6), x:x + w]
        if upper.size == 0 or min(upper.shape) < 12:
            return 0.0
        s = self.work_px / upper.shape[1]
        upper = cv2.resize(upper, (self.work_px, max(1, round(upper.shape[0] * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        eyes = self._cascades.get().detectMultiScale(upper, 1.1, 3, minSize=(int(self.work_px * 0.12),) * 2,
                                              maxSize=(int(self.work_px * 0.45),) * 2)
        centres = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in np.asarray(eyes).reshape(-1, 4)]
        half = self.work_px / 2
        left = [c for c in centres if c[0] < half]   # image-left eye
        right = [c for c in centres if c[0] >= half]
        if not left or not right:
            return 0.0
        # the pair closest to level and to a typical eye distance wins
        best = min(((a, b) for a in left for b in right),
                   key=lambda p: abs(p[1][1] - p[0][1]) + abs((p[1][0] - p[0][0]) - 0.4 * self.work_px))
        (lx, ly), (rx, ry) = best
        if rx - lx < 0.2 * self.work_px:
            return 0.0
        ang = math.degrees(math.atan2(ry - ly, rx - lx))
        return ang if abs(ang) <= self.max_angle else 0.0


def crop_face(gray: np.ndarray, box: Box, margin: float = DEFAULT_MARGIN, angle: float = 0.0) -> np.ndarray:
    """Square crop around ``box`` enlarged by ``margin`` per side, rotated by ``angle`` degrees
    (counter-clockwise, about the box centre) to level the eyes. Parts outside the image are filled
    by edge replication, as the padded training crops were."""
    import cv2

    x, y, w, h = box
    side = max(1, int(round(max(w, h) * (1 + 2 * margin))))
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    ih, iw = gray.shape[:2]
    if angle == 0.0 and x0 >= 0 and y0 >= 0 and x0 + side <= iw and y0 + side <= ih:
        return gray[y0:y0 + side, x0:x0 + side]  # fast path: a plain slice
    m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    m[0, 2] += side / 2 - cx
    m[1, 2] += side / 2 - cy
    return cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
