"""YuNet face detector (Wu, Peng, Yu 2023; MIT), run by pyfer's C++ engine or by OpenCV.

Each call gives faces with a box, five landmarks and a score, in the caller's image pixels:
sure faces (``SURE_SCORE``) first, then doubtful ones, each group largest first. The model ships
in the package (``pyfer/models/``, licence text beside it) twice: as OpenCV Zoo's ONNX file, and
as ``yunet.safetensors`` (the same weights, converted by ``scripts/yunet_to_safetensors.py``) for
the engine.

Backends (``YuNetDetector(backend=...)``; default ``"engine"``, or the ``PYFER_YUNET_BACKEND``
environment variable):

- ``"engine"``: the network runs in pyfer's C++ engine (``pyfer._engine.YuNet``: the raw head maps
  of strides 8, 16 and 32), and this module decodes them as OpenCV's ``FaceDetectorYN`` does
  (``decode_heads``: score = sqrt(cls * obj), box centre (col + dx, row + dy) * stride, size
  exp(dw, dh) * stride, landmarks (col + lx, row + ly) * stride) and applies OpenCV's NMS
  (``nms_like_opencv``: integer boxes, stable sort by score, top_k). It takes about 0.6x the
  time of OpenCV's DNN on one thread, with the same detections (docs/recognizer.md;
  tests/test_yunet_engine.py).
- ``"opencv"``: ``cv2.FaceDetectorYN`` on the ONNX file.

How an image is searched (numbers measured in docs/recognizer.md, "YuNet, and how its working
size was chosen"; ``scripts/yunet_working_size.py``):

1. **Main pass** on a scaled copy. YuNet finds frontal faces from about ``NET_FACE`` (30) px in
   its input (96% of frontal SFEW faces there, 89% at 24 px, 99% at 48 px) up to about 350 px. The
   scale is the largest of
   - ``NET_FACE / min_face``: every face of ``min_face`` px or more is searched for (default
     ``DEFAULT_MIN_FACE`` = 60 px, scale 0.5: a 1920x1080 frame is searched at 960x540, where
     80 px faces are 40 px; a 640x480 photo at 320x240);
   - ``sqrt(work_area / image area)`` (at most 1): a photo smaller than 640x480 is searched at
     about ``work_area`` pixels (320x240), finding its smaller faces too at the same cost;
   - ``min_side / long side``: tiny images (a 48x48 face crop) are enlarged to 240 px, where YuNet
     finds the face that fills them (98.6% of FERPlus valid, against 96.6% at 96 px),
   capped so that the long side stays within ``max_side``, or for images longer than 16:9
   (panoramas) the pixels within those of a 16:9 frame ``max_side`` wide.
2. **Second look**: a face the main pass scores below ``score_threshold`` but above
   ``CANDIDATE_SCORE`` (0.3), and small there (< 64 px), is searched for again in the square of
   three box sides around it, enlarged so that the face is 96 px. It is kept if it passes the
   threshold there. Dark or blurred small faces score low when small (a 60 px film face on a
   1080p frame: 0.41 at the main scale, 0.87 at full size); in a photo without such doubtful
   faces this costs nothing.
3. **Coarse pass** (only when needed): the image with an edge-replicated border of ``pad`` of its
   long side, scaled to a long side of ``coarse_side``. It finds faces too big for the main pass
   (a close-up whose face exceeds ~350 px at the main scale) and faces cut by the image border.
   It runs when the main pass finds nothing, or when the main pass's image is large enough to
   hold a face beyond YuNet's range; its faces are merged with the main pass's (NMS).
4. **Turned pass** (only for small images, searched at most 400 px, where no face scored 0.75
   or more: face crops): the main pass on the image turned by 45, -45, 90, -90, 135, -135 and 180
   degrees (``rotations``), each in a canvas that holds all of it; the surest face wins. YuNet
   misses heads rolled far in the frame (FERPlus has faces lying sideways) and its landmarks are
   only right on a face within about 25 degrees of upright, so the turn that brings the face
   closest to upright, which scores highest, is the one kept; its landmarks are mapped back
   exactly, so the aligned framing levels the face. Where the best face scored 0.75-0.9, only
   the quarter turns (90, -90) run: a face lying on its side can score that much upright, with
   wrong landmarks. A turned find replaces an upright one only when it scores 0.05 more.
   With ``tilted=True`` (``detector="yunet-tilted"``) every image is also searched turned by
   ``TILT_TURNS`` (+-30 degrees): heads tilted 30-45 degrees in a group photo are found (45/48
   and 44/48 instead of 33/48 and 22/48), at about three times the detection time.
5. **Nested faces** (one lies mostly, ``NESTED_COVER``, inside the other of at least
   ``NESTED_AREA`` times its area; NMS keeps both, their IoU being small): the main pass finds an
   eye and a cheek of a close-up beyond its range as faces of their own (scores 0.6-0.75), and a
   turned pass can box a face with its surroundings. An inner face scoring below 0.8 and below its
   container is dropped, and so is a container that an inner face outscores by 0.15; sure faces
   inside a larger one (a video-call inset) stay.

Threads: one ``YuNetDetector`` may be shared by threads. The engine runs a call on ``threads``
threads (default: every CPU this process may use, within its CPU quota, as ``pyfer.Engine``), each
step of the network cut into bands of rows, with the same results on any number; a call made
while another is running on them runs on its caller's thread alone (one workspace per concurrent
call). ``cv2.FaceDetectorYN`` keeps per-call state, so with the OpenCV backend each thread gets
its own instance; OpenCV runs each network call on its own thread pool (``cv2.setNumThreads``, a
process-wide setting that pyfer does not change); with many threads of your own calling the
detector, ``cv2.setNumThreads(1)`` avoids oversubscription.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from pyfer.detect import face_order
from pyfer.exit_gate import finishes_before_exit

MODEL_FILE = "face_detection_yunet_2023mar.onnx"  # the OpenCV backend's model
ENGINE_MODEL_FILE = "yunet.safetensors"  # the same weights for the engine (scripts/yunet_to_safetensors.py)
BACKENDS = ("engine", "opencv")
NET_FACE = 30  # px: the smallest face size, in the network's input, that a search is sized for
NET_MAX_FACE = 350  # px: beyond about this, YuNet starts to miss faces (docs/recognizer.md)
DEFAULT_MIN_FACE = 60  # px in the image: the search floor when min_face is not given
CANDIDATE_SCORE = 0.3  # faces scoring from here to the threshold, small in the main pass, are rechecked
RECHECK_BELOW = 64  # px in the main pass's input: smaller doubtful faces get a second look
RECHECK_FACE = 96  # px: the size a doubtful face is enlarged to for its second look
RECHECK_MAX_ZOOM = 3.0
RECHECK_MAX = 8  # second looks per image at most
TURN_MAX_SIDE = 400  # px: the turned pass is for images searched at most this big (face crops)
TURN_BELOW_SCORE = 0.75  # ... where no face scores at least this much: every turn
TURN_QUARTER_BELOW = 0.9  # ... or none this much: the quarter turns only (a face lying on its side
# can score 0.77-0.88 upright, with wrong landmarks; an upright face scores 0.9+ nine times in ten)
TURN_MARGIN = 0.05  # a turned find replaces an upright one only when it scores this much more
# Faces scoring less come after the sure ones (pyfer.detect.face_order): false faces of smooth,
# enlarged photos scored 0.64-0.70 (the astronaut at 3000-6000 px, session 35), and an upright real
# face scores 0.9+ nine times in ten.
SURE_SCORE = 0.8
TILT_TURNS = (30.0, -30.0)  # degrees: the extra passes of ``tilted=True`` (heads tilted 20-50 degrees)


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # (x, y, w, h) in image pixels
    landmarks: np.ndarray  # (5, 2) float32: right eye, left eye, nose tip, right, left mouth corner
    score: float


def default_backend() -> str:
    """The backend a detector gets when none is named: ``PYFER_YUNET_BACKEND``, else the engine."""
    return os.environ.get("PYFER_YUNET_BACKEND") or "engine"


def default_model_path(backend: str = "opencv") -> Path:
    """The shipped model file of a backend: the ONNX file (opencv) or its conversion (engine)."""
    from importlib.resources import files

    return Path(str(files("pyfer") / "models" / (ENGINE_MODEL_FILE if backend == "engine" else MODEL_FILE)))


# The heads decode_heads reads: (channels, sigmoid applied in the network). A YuNet file may
# describe others: they are ignored.
DECODED_HEADS = {"cls": (1, True), "obj": (1, True), "bbox": (4, False), "kps": (10, False)}


def check_heads(heads: list, model) -> None:
    """RuntimeError unless ``heads`` ((name, channels, sigmoid) of a loaded YuNet file) has each of
    DECODED_HEADS once, with its channels and sigmoid: the engine's loader takes any heads."""
    def describe(channels: int, sigmoid: bool) -> str:
        return f"{channels} channel{'s' if channels > 1 else ''}{', sigmoid' if sigmoid else ''}"

    names = [name for name, _, _ in heads]
    twice = sorted({n for n in names if names.count(n) > 1})
    have = {name: (int(channels), bool(sigmoid)) for name, channels, sigmoid in heads}
    wrong = [f"{name} ({describe(*want)})" for name, want in DECODED_HEADS.items() if have.get(name) != want]
    if twice or wrong:
        raise RuntimeError(
            f"the YuNet model {model} cannot be decoded: "
            + (f"heads named twice: {', '.join(twice)}; " if twice else "")
            + (f"it needs the heads {'; '.join(wrong)}; " if wrong else "")
            + f"it has {'; '.join(f'{n} ({describe(int(c), bool(sg))})' for n, c, sg in heads)}")


def decode_heads(maps: list, strides: list, heads: list, score_threshold: float) -> np.ndarray:
    """YuNet's raw head maps -> rows (x, y, w, h, 10 landmark coordinates, score) in the network
    input's pixels, for every position scoring at least ``score_threshold``, as OpenCV's
    FaceDetectorYN decodes them (float32 throughout). ``maps[i]``: (rows, cols, channels) at
    ``strides[i]``, the channels being ``heads`` ((name, channels, sigmoid applied) in order:
    cls, obj, bbox, kps). Rows with a value that is not finite are left out, without numpy's
    warnings (OpenCV would pass them on; a foreign YuNet file's maps can hold such values)."""
    at, c0 = {}, 0
    for name, channels, _ in heads:
        at[name] = slice(c0, c0 + channels)
        c0 += channels
    out = []
    for m, stride in zip(maps, strides):
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite rows are dropped below
            rows = _decode_level(m, stride, at, score_threshold)
        if rows is not None:
            out.append(rows[np.isfinite(rows).all(1)])  # (a foreign file's maps: NaN or inf)
    return np.concatenate(out) if out else np.zeros((0, 15), np.float32)


def _decode_level(m: np.ndarray, stride: int, at: dict, score_threshold: float) -> Optional[np.ndarray]:
    """decode_heads for one level's map; None where no position scores enough."""
    cls = np.clip(m[:, :, at["cls"]][:, :, 0], 0, 1)
    obj = np.clip(m[:, :, at["obj"]][:, :, 0], 0, 1)
    score = np.sqrt(cls * obj)
    r, c = np.nonzero(score >= np.float32(score_threshold))  # row-major: OpenCV's order
    if len(r) == 0:
        return None
    s = np.float32(stride)
    rf, cf = r.astype(np.float32), c.astype(np.float32)
    box = m[r, c, at["bbox"]]
    kps = m[r, c, at["kps"]]
    w = np.exp(box[:, 2]) * s
    h = np.exp(box[:, 3]) * s
    rows = np.empty((len(r), 15), np.float32)
    rows[:, 0] = (cf + box[:, 0]) * s - w / np.float32(2)
    rows[:, 1] = (rf + box[:, 1]) * s - h / np.float32(2)
    rows[:, 2], rows[:, 3] = w, h
    rows[:, 4:14:2] = (kps[:, 0::2] + cf[:, None]) * s
    rows[:, 5:14:2] = (kps[:, 1::2] + rf[:, None]) * s
    rows[:, 14] = score[r, c]
    return rows


def nms_like_opencv(rows: np.ndarray, score_threshold: float, nms_threshold: float, top_k: int) -> np.ndarray:
    """``cv::dnn::NMSBoxes`` as FaceDetectorYN calls it: boxes truncated to integers, scores above
    ``score_threshold``, stably sorted by score (surest first), the first ``top_k``, each kept
    unless its IoU with a kept box exceeds ``nms_threshold``. A single row is returned as is."""
    if len(rows) <= 1:
        return rows
    box = rows[:, :4].astype(np.int64)  # C++ int(): truncation toward zero
    x0, y0, x1, y1 = box[:, 0], box[:, 1], box[:, 0] + box[:, 2], box[:, 1] + box[:, 3]
    area = box[:, 2] * box[:, 3]
    scores = rows[:, 14]
    cand = np.nonzero(scores > np.float32(score_threshold))[0]
    order = cand[np.argsort(-scores[cand], kind="stable")]
    if top_k > 0:
        order = order[:top_k]
    limit = np.float32(nms_threshold)
    x0, y0, x1, y1, area = x0[order], y0[order], x1[order], y1[order], area[order]
    suppressed = np.zeros(len(order), bool)
    keep: list[int] = []
    for j in range(len(order)):  # greedy, surest first: a box overlapping a kept one goes
        if suppressed[j]:
            continue
        keep.append(int(order[j]))
        iw = np.minimum(x1, x1[j]) - np.maximum(x0, x0[j])
        ih = np.minimum(y1, y1[j]) - np.maximum(y0, y0[j])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
        total = area + area[j]
        with np.errstate(divide="ignore", invalid="ignore"):  # OpenCV: two empty boxes overlap fully
            distance = np.where(total > 0, 1.0 - inter / (total - inter).astype(np.float64), 0.0)
        suppressed |= (np.float32(1) - distance.astype(np.float32)) > limit
    return rows[keep]


# A face box is at most this many times the image's longer side (a face that fills the frame
# gives about 1.5): beyond it the head maps are not a face's (a foreign YuNet file's)
MAX_BOX_PER_SIDE = 4.0


def _plausible(rows: np.ndarray, image_side: float) -> np.ndarray:
    """Rows that look like a face: a box of sane proportions and size (``image_side``: the image's
    longer side) with the five points in or near it (on noise or smeared borders YuNet can return
    slivers with any score). A NaN or infinite value fails one of these comparisons."""
    x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    ok = (w >= 1) & (h >= 1) & (w <= 2.5 * h) & (h <= 2.5 * w)
    ok &= np.maximum(w, h) <= MAX_BOX_PER_SIDE * image_side
    px, py = rows[:, 4:14:2], rows[:, 5:14:2]
    ok &= ((px >= (x - 0.25 * w)[:, None]) & (px <= (x + 1.25 * w)[:, None])).all(1)
    ok &= ((py >= (y - 0.25 * h)[:, None]) & (py <= (y + 1.25 * h)[:, None])).all(1)
    return ok


def _iou(a, b) -> float:
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def _nms(rows: np.ndarray, iou_threshold: float, rank: Optional[np.ndarray] = None) -> np.ndarray:
    """Greedy NMS over YuNet rows (x, y, w, h, 10 landmark coordinates, score): surest first (or
    highest ``rank`` first, where given)."""
    order = np.argsort(-(rows[:, 14] if rank is None else rank), kind="stable")
    keep: list[int] = []
    for i in order:
        if all(_iou(rows[i, :4], rows[j, :4]) <= iou_threshold for j in keep):
            keep.append(int(i))
    return rows[keep]


def _resized(image: np.ndarray, scale: float) -> tuple[np.ndarray, float, float]:
    """``image`` scaled by about ``scale`` (sides rounded, at least 1; a side 1 px short of that
    is kept), and the exact factors (x, y) that map its pixels onto the result's. Down, by
    halvings (area averaging of 2x2 pixels; an odd last column or row left out) while the rest is
    at most a half, then the rest bilinear: OpenCV averages areas fast only by whole factors,
    fastest by 2, and its general INTER_AREA took 1.7 ms for a 320x320 image at 0.87 and 13.5 ms
    for 1919x1079 at 0.5 (tests/test_recognizer_speed.py -k resize has the medians; AMD Zen 3).
    Up, bilinear."""
    import cv2

    if scale == 1.0:
        return image, 1.0, 1.0
    h, w = image.shape[:2]
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    k = 1  # pixels of the image per pixel of ``image`` now
    while scale * k <= 0.5 and min(image.shape[:2]) >= 2:
        half_h, half_w = image.shape[0] // 2, image.shape[1] // 2
        image = cv2.resize(image[:2 * half_h, :2 * half_w], (half_w, half_h), interpolation=cv2.INTER_AREA)
        k *= 2
    span_w, span_h = image.shape[1] * k, image.shape[0] * k  # what the result covers of the image
    if not (0 <= tw - image.shape[1] <= 1 and 0 <= th - image.shape[0] <= 1):  # (an odd side halved: kept)
        image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_LINEAR)
    return image, image.shape[1] / span_w, image.shape[0] / span_h


NESTED_COVER = 0.7  # a face this much inside another of at least NESTED_AREA times its area ...
NESTED_AREA = 1.5  # ... may be the same face found twice (a part of it, or it with its surroundings)
NESTED_PART_SCORE = 0.8  # an inner face scoring below this and below its container is a part of it
NESTED_MARGIN = 0.15  # a container that an inner face outscores by this much is its surroundings


def _drop_nested(rows: np.ndarray, height: int, width: int) -> np.ndarray:
    """Drop what is one face found twice, one box mostly inside the other (boxes clipped to the
    image). On close-ups bigger than YuNet's range, the main pass finds parts of the face (an eye
    and a cheek, scores 0.6-0.75) inside the whole face of the coarse pass: an inner face below
    ``NESTED_PART_SCORE`` and below its container goes. A turned pass can box a face with its
    surroundings (0.6 around a 0.9 face): a container outscored by ``NESTED_MARGIN`` goes. Sure
    faces inside a larger face (a video-call inset, a child held up to the camera) stay."""
    if len(rows) < 2:
        return rows
    x0, y0 = np.clip(rows[:, 0], 0, width), np.clip(rows[:, 1], 0, height)
    x1, y1 = np.clip(rows[:, 0] + rows[:, 2], 0, width), np.clip(rows[:, 1] + rows[:, 3], 0, height)
    score = rows[:, 14]
    iw = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    area = np.maximum((x1 - x0) * (y1 - y0), 1e-6)
    inside = (iw * ih >= NESTED_COVER * area[:, None]) & (area[None] >= NESTED_AREA * area[:, None])  # i in j
    part = inside & (score[:, None] < score[None]) & (score < NESTED_PART_SCORE)[:, None]
    surroundings = inside & (score[:, None] >= score[None] + NESTED_MARGIN)
    return rows[~(part.any(1) | surroundings.any(0))]


class YuNetDetector:
    """``detector(image) -> list[Detection]`` for a uint8 gray, BGR or BGRA image: faces scoring
    ``sure_score`` or more first, then the doubtful ones, each group largest first.

    ``min_face``: smallest face (longer box side, image px) to search for and report; None: search
    from ``DEFAULT_MIN_FACE`` (60) px (smaller faces in small images) and report every face found.
    ``score_threshold``: YuNet's confidence cut (0.6: OpenCV Zoo's default; lower finds more and
    risks false faces). ``threads``: the engine backend's (None: every CPU this process may use;
    the results are the same on any number). The other arguments set the search described in the
    module docstring.
    """

    sure_score = SURE_SCORE  # the Recognizer reads it: it orders any detector's faces the same way

    def __init__(self, model: Union[str, Path, None] = None, min_face: Optional[float] = None,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000,
                 work_area: int = 320 * 240, min_side: int = 240, max_side: int = 1920,
                 pad: float = 0.25, coarse_side: int = 320,
                 rotations: tuple = (45.0, -45.0, 90.0, -90.0, 135.0, -135.0, 180.0),
                 tilted: bool = False, backend: Optional[str] = None, threads: Optional[int] = None):
        backend = backend or default_backend()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.model = Path(model) if model is not None else default_model_path(backend)
        if not self.model.is_file():
            raise FileNotFoundError(f"YuNet model not found: {self.model}")
        if min_face is not None and not (math.isfinite(min_face) and min_face >= 1):
            raise ValueError(f"min_face must be a number of pixels >= 1, got {min_face!r}")
        if not 0 < score_threshold < 1:
            raise ValueError(f"score_threshold must lie in (0, 1), got {score_threshold!r}")
        if not 0 < nms_threshold < 1:
            raise ValueError(f"nms_threshold must lie in (0, 1), got {nms_threshold!r}")
        if min_side < 32 or max_side < min_side or coarse_side < 32:
            raise ValueError(f"need 32 <= min_side <= max_side and coarse_side >= 32, got {min_side}, "
                             f"{max_side}, {coarse_side}")
        if not 0 <= pad <= 1:
            raise ValueError(f"pad must lie in [0, 1], got {pad}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                    or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        if threads is not None and backend != "engine":
            raise ValueError("threads applies to the engine backend: OpenCV's detector uses OpenCV's own "
                             "thread pool (cv2.setNumThreads)")
        self.min_face = None if min_face is None else float(min_face)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.work_area = int(work_area)
        self.min_side = int(min_side)
        self.max_side = int(max_side)
        self.pad = float(pad)
        self.coarse_side = int(coarse_side)
        self.rotations = tuple(float(a) for a in rotations)
        self.tilted = bool(tilted)
        self._local = threading.local()  # cv2.FaceDetectorYN keeps per-call state: one per thread
        if backend == "engine":  # load now: a missing or broken model fails here, not on first use
            from pyfer import _engine

            try:
                self._engine = _engine.YuNet(str(self.model), threads=0 if threads is None else int(threads))
            except ValueError as e:
                raise RuntimeError(f"pyfer's engine could not load the YuNet model {self.model}: {e}") from None
            info = self._engine.info()
            self._strides, self._heads = info["strides"], info["heads"]
            check_heads(self._heads, self.model)
            self.threads: Optional[int] = info["threads"]
        else:
            self.threads = None
            self._net((320, 320))

    def config(self) -> dict:
        """The settings that decide what is found (e.g. for a cache key)."""
        return {"model": self.model.name, "backend": self.backend, "min_face": self.min_face, "score_threshold": self.score_threshold,
                "nms_threshold": self.nms_threshold, "work_area": self.work_area, "min_side": self.min_side,
                "max_side": self.max_side, "pad": self.pad, "coarse_side": self.coarse_side,
                "rotations": list(self.rotations), "tilted": self.tilted}

    def __repr__(self) -> str:
        return (f"YuNetDetector(min_face={self.min_face}, score_threshold={self.score_threshold}, "
                f"tilted={self.tilted}, backend={self.backend!r})")

    def _net(self, size: tuple[int, int]):
        import cv2

        net = getattr(self._local, "net", None)
        if net is None:
            try:
                net = cv2.FaceDetectorYN.create(str(self.model), "", size,
                                                min(self.score_threshold, CANDIDATE_SCORE),
                                                self.nms_threshold, self.top_k)
            except cv2.error as e:
                raise RuntimeError(f"OpenCV could not load the YuNet model {self.model} (needs "
                                   f"opencv-python(-headless) >= 4.8): {e}") from None
            self._local.net = net
        net.setInputSize(size)
        return net

    @finishes_before_exit
    def detect_raw(self, bgr: np.ndarray) -> np.ndarray:
        """One run of the network on an HxWx3 BGR uint8 image, as ``cv2.FaceDetectorYN.detect``:
        rows (x, y, w, h, 10 landmark coordinates, score) in its pixels after NMS, scoring at
        least min(score_threshold, 0.3) (the search's candidates)."""
        threshold = min(self.score_threshold, CANDIDATE_SCORE)
        if self.backend == "opencv":
            _, found = self._net((bgr.shape[1], bgr.shape[0])).detect(bgr)
            return np.zeros((0, 15), np.float32) if found is None else np.array(found, np.float32).reshape(-1, 15)
        rows = decode_heads(self._engine.forward(bgr), self._strides, self._heads, threshold)
        return nms_like_opencv(rows, threshold, self.nms_threshold, self.top_k)

    def main_scale(self, h: int, w: int) -> float:
        """The main pass's scale for an h x w image."""
        long_side = max(h, w)
        min_face = self.min_face if self.min_face is not None else DEFAULT_MIN_FACE
        s = max(NET_FACE / min_face, min(1.0, math.sqrt(self.work_area / (h * w))), self.min_side / long_side)
        # the cap: the long side within max_side, or for an image longer than 16:9 (a panorama, a
        # tall strip) its pixels within a max_side-wide 16:9 frame's: a cap by the long side alone searched a
        # 16000 x 1600 panorama at 1920 x 192, where its 220 px faces were 26 px and half were
        # missed (a helper's review, session 47); the cost stays that of a 1080p frame
        s = min(s, max(self.max_side / long_side, math.sqrt(self.max_side ** 2 * 9 / 16 / (h * w))))
        return 1.0 if abs(s - 1.0) < 0.03 else s  # about 1: skip the resize

    def _run(self, bgr: np.ndarray, scale: float, pad_px: int, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """Detections on ``bgr`` bordered by ``pad_px`` and scaled by ``scale``, as YuNet rows
        (x, y, w, h, 10 landmark coordinates, score) in image pixels (+ ``offset``)."""
        import cv2

        small, sx, sy = _resized(bgr, scale)  # (sx, sy: the exact factors of the rounded resize)
        if small.ndim == 2:  # gray and BGRA become BGR after the resize: less to convert
            small = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
        elif small.shape[2] == 4:
            small = cv2.cvtColor(small, cv2.COLOR_BGRA2BGR)
        sp = int(round(pad_px * scale))
        if sp > 0:
            small = cv2.copyMakeBorder(small, sp, sp, sp, sp, cv2.BORDER_REPLICATE)
        rows = self.detect_raw(small)
        if len(rows) == 0:
            return rows
        xy = rows[:, :14].reshape(-1, 7, 2).copy()
        xy[:, [0, 2, 3, 4, 5, 6]] -= sp  # corners and landmarks move with the border; sizes do not
        xy /= np.array([sx, sy], np.float32)
        xy[:, [0, 2, 3, 4, 5, 6]] += np.array(offset, np.float32)
        rows[:, :14] = xy.reshape(-1, 14)
        return rows

    def _recheck(self, bgr: np.ndarray, cand: np.ndarray) -> Optional[np.ndarray]:
        """Look again at a doubtful small face, enlarged: the square of 3 box sides around it, scaled
        so the face is ``RECHECK_FACE`` px. Returns the face found there (refined box and
        landmarks) if it overlaps the candidate and passes the score threshold, else None."""
        h, w = bgr.shape[:2]
        x, y, bw, bh = (float(v) for v in cand[:4])
        side = 3.0 * max(bw, bh)
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
        x1, y1 = min(w, int(cx + side / 2) + 1), min(h, int(cy + side / 2) + 1)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        zoom = min(RECHECK_MAX_ZOOM, RECHECK_FACE / max(bw, bh))
        rows = self._run(bgr[y0:y1, x0:x1], zoom, 0, (x0, y0))
        best, best_iou = None, 0.3
        for r in rows[rows[:, 14] >= self.score_threshold]:
            v = _iou(r[:4], cand[:4])
            if v > best_iou:
                best, best_iou = r, v
        return best

    def _run_rotated(self, bgr: np.ndarray, scale: float, angle: float) -> np.ndarray:
        """The main pass on the image turned by ``angle`` degrees (counter-clockwise) inside a
        canvas that holds all of it; faces are mapped back: landmarks exactly, the box as a box of
        the same size around the mapped centre (the face is turned inside it)."""
        import cv2

        h, w = bgr.shape[:2]
        if scale < 1:  # turn the scaled copy: the warp costs per output pixel (6 ms for 640x480)
            small, sx, sy = _resized(bgr, scale)
            rows = self._run_rotated(small, 1.0, angle)
            rows[:, :14] = (rows[:, :14].reshape(-1, 7, 2) / np.array([sx, sy], np.float32)).reshape(-1, 14)
            return rows
        rad = np.deg2rad(angle)
        c, s = abs(np.cos(rad)), abs(np.sin(rad))
        cw, ch = int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[0, 2] += cw / 2 - w / 2
        m[1, 2] += ch / 2 - h / 2
        turned = cv2.warpAffine(bgr, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rows = self._run(turned, scale, 0)
        rows = rows[rows[:, 14] >= self.score_threshold]
        if len(rows) == 0:
            return rows
        back = cv2.invertAffineTransform(m)
        pts = rows[:, 4:14].reshape(-1, 5, 2)
        rows[:, 4:14] = (pts @ back[:, :2].T.astype(np.float32) + back[:, 2].astype(np.float32)).reshape(-1, 10)
        centre = rows[:, :2] + rows[:, 2:4] / 2
        centre = centre @ back[:, :2].T.astype(np.float32) + back[:, 2].astype(np.float32)
        rows[:, :2] = centre - rows[:, 2:4] / 2
        inside = (centre[:, 0] >= 0) & (centre[:, 0] < w) & (centre[:, 1] >= 0) & (centre[:, 1] < h)
        return rows[inside]

    @finishes_before_exit
    def __call__(self, image: np.ndarray) -> list[Detection]:
        bgr = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image  # gray, BGR or BGRA
        h, w = bgr.shape[:2]
        scale = self.main_scale(h, w)
        found = self._run(bgr, scale, 0)
        rows = found[found[:, 14] >= self.score_threshold]
        # doubtful faces that are small at this scale get a second look, enlarged
        doubtful = found[(found[:, 14] < self.score_threshold)
                         & (np.maximum(found[:, 2], found[:, 3]) * scale < RECHECK_BELOW)]
        rechecked = [r for r in (self._recheck(bgr, c) for c in doubtful[np.argsort(-doubtful[:, 14])][:RECHECK_MAX])
                     if r is not None]
        if rechecked:
            rows = _nms(np.concatenate([rows, np.stack(rechecked)]), self.nms_threshold)
        # a face bigger than YuNet's range at this scale would fit in the image: look coarsely too
        too_big_possible = min(h, w) * scale > NET_MAX_FACE
        if self.pad > 0 and (len(rows) == 0 or too_big_possible):
            p = int(round(self.pad * max(h, w)))
            coarse = self.coarse_side / (max(h, w) + 2 * p)
            if len(rows) == 0 or coarse < 0.6 * scale:  # a different scale, or nothing found yet
                more = self._run(bgr, coarse, p)
                more = more[more[:, 14] >= self.score_threshold]
                rows = _nms(np.concatenate([rows, more]), self.nms_threshold) if len(rows) else more
        if self.tilted:  # every image also searched turned both ways: heads tilted in the frame
            rows = np.concatenate([rows] + [self._run_rotated(bgr, scale, a) for a in TILT_TURNS])
            rows = _nms(rows, self.nms_threshold) if len(rows) else rows  # the surest turn wins
        best = rows[:, 14].max() if len(rows) else 0.0
        turns: list[float] = []
        if max(h, w) * scale <= TURN_MAX_SIDE and best < TURN_QUARTER_BELOW:
            # a small image (a face crop) without a sure face: the head may be turned far in the
            # frame (then YuNet misses it, or finds it with a low score and upright landmarks);
            # a fair face is only tried on its side (none, for rotations without a quarter turn)
            turns = list(self.rotations) if best < TURN_BELOW_SCORE else [a for a in self.rotations if abs(a) == 90]
        if turns:
            turned = np.concatenate([self._run_rotated(bgr, scale, a) for a in turns])
            # the surest turn wins, but an upright find keeps its face unless a turn beats it by a
            # margin: on upright faces the turns score about the same, and each moves the crop
            rank = np.concatenate([rows[:, 14], turned[:, 14] - TURN_MARGIN])
            rows = np.concatenate([rows, turned])
            rows = _nms(rows, self.nms_threshold, rank) if len(rows) else rows
        rows = rows[_plausible(rows, max(h, w))]
        if self.min_face is not None:  # before the nested rule: a face not reported decides nothing
            rows = rows[np.maximum(rows[:, 2], rows[:, 3]) >= self.min_face]
        rows = _drop_nested(rows, h, w)
        out = []
        for r in rows:
            bw, bh = float(r[2]), float(r[3])
            box = (int(round(float(r[0]))), int(round(float(r[1]))), int(round(bw)), int(round(bh)))
            if box[2] < 1 or box[3] < 1:
                continue
            out.append(Detection(box=box, landmarks=r[4:14].reshape(5, 2).astype(np.float32), score=float(r[14])))
        out.sort(key=lambda d: face_order(d.box, d.score, self.sure_score))
        return out
