"""``pyfer.Recognizer``: images in, faces with expression scores out.

Pipeline per image: decode/validate -> detect faces (YuNet by default: box, five landmarks, score)
-> ``pyfer.facenorm.normalize_face`` (the framing shared with training, read from the weights'
metadata) -> ``pyfer.preprocess`` normalisation -> compiled engine -> softmax.
"""
from __future__ import annotations

import math
import numbers
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence, Union, cast, overload

import numpy as np

from pyfer.detect import Box, Detector, check_box, clip_box, face_order, get_detector
from pyfer.engine import softmax
from pyfer.exit_gate import finishes_before_exit
from pyfer.facenorm import FaceFraming, normalize_face
from pyfer.image_size import PNG_SIGNATURE, jpeg_ends_early, read_header
from pyfer.preprocess import PreprocessSpec, normalize, on_white, resize_face, to_gray

# a path, an encoded file's bytes, an array, or (Any) a PIL.Image.Image
ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]
WEIGHTS_FILE = "tsnet_student.safetensors"
Landmarks = tuple[tuple[float, float], ...]
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


@dataclass(frozen=True)
class Face:
    box: Box  # (x, y, w, h) in image pixels, clipped to the image
    label: str
    scores: dict[str, float]  # probabilities over the classes, summing to 1
    confidence: float  # = scores[label]
    # five (x, y) points in image pixels (LANDMARK_NAMES: the person's right eye, left eye, nose
    # tip, right and left mouth corners); None when the detector gives none (Haar, your boxes).
    # Not clipped: a face cut by the image's edge can have points outside it (negative, or past
    # the width or height), where the detector places them; its box is clipped
    landmarks: Optional[Landmarks] = None
    # the detector's confidence: in [0, 1] from pyfer's detectors, as given from a callable one;
    # None if it has none
    detection_score: Optional[float] = None

    def __hash__(self) -> int:  # the generated hash would fail on ``scores`` (a dict); equal faces share these
        return hash((self.box, self.label, self.confidence, self.landmarks, self.detection_score))

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "confidence": round(self.confidence, 6),
                "scores": {k: round(v, 6) for k, v in self.scores.items()},
                "landmarks": None if self.landmarks is None else [[round(x, 2), round(y, 2)] for x, y in self.landmarks],
                "detection_score": None if self.detection_score is None else round(self.detection_score, 4)}

    @classmethod
    def from_dict(cls, d: dict) -> "Face":
        """The face :meth:`to_dict` gave (a line of ``--json`` or a video's JSON lines, read back),
        to the precision it was written with. KeyError names a missing field."""
        box = d["box"]
        if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_whole_number(v) for v in box)
                and min(box[:2]) >= 0 and min(box[2:]) >= 1):
            raise ValueError(f"'box' is (x, y, w, h) in whole pixels, x and y >= 0, w and h >= 1, got {box!r}")
        scores = d["scores"]
        if not isinstance(scores, dict):
            raise ValueError(f"'scores' maps class names to probabilities, got {scores!r}")
        lm = d.get("landmarks")
        if lm is not None and not (isinstance(lm, (list, tuple)) and len(lm) == len(LANDMARK_NAMES) and all(
                isinstance(p, (list, tuple)) and len(p) == 2 for p in lm)):
            raise ValueError(f"'landmarks' is a list of {len(LANDMARK_NAMES)} (x, y) points, got {lm!r}")
        score = d.get("detection_score")
        label = d["label"]
        if not isinstance(label, str):
            raise ValueError(f"'label' is a class name, got {label!r}")
        return cls(box=tuple(int(v) for v in box), label=label,  # type: ignore[arg-type]
                   scores={str(k): _finite(v, f"scores[{k!r}]") for k, v in scores.items()},
                   confidence=_finite(d["confidence"], "confidence"),
                   landmarks=None if lm is None else tuple((_finite(x, "landmarks"), _finite(y, "landmarks"))
                                                           for x, y in lm),
                   detection_score=None if score is None else _finite(score, "detection_score"))


def _is_whole_number(v) -> bool:
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return True  # (any size: float() of 10**400 overflows)
    return _is_number(v) and math.isfinite(v) and float(v).is_integer()


def _finite(v, field: str) -> float:
    """A JSON field that must hold a finite number (a NaN would make the next to_dict invalid JSON)."""
    if not (_is_number(v) and math.isfinite(v)):
        raise ValueError(f"'{field}' must be a finite number, got {v!r}")
    return float(v)


def default_weights_path() -> Path:
    """The distilled student shipped inside the package (no download)."""
    from importlib.resources import files

    path = Path(str(files("pyfer") / "models" / WEIGHTS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"the pyfer default weights are not installed (expected {path}); "
                                "reinstall pyfer or pass weights=PATH to a .safetensors file")
    return path


def is_pil_image(obj) -> bool:
    """True for a ``PIL.Image.Image`` (checked without importing PIL: it is not a dependency)."""
    return type(obj).__module__.split(".")[0] == "PIL" and hasattr(obj, "mode") and hasattr(obj, "convert")


def pil_to_array(img) -> np.ndarray:
    """A PIL image -> numpy gray, BGR or BGRA (OpenCV channel order), or uint16/float for
    ``as_uint8_image`` to scale. Palette images keep their transparency as alpha."""
    mode = img.mode
    if mode == "La":  # premultiplied: Pillow converts it to LA only
        img, mode = img.convert("LA"), "LA"
    if mode in ("1", "L"):
        return np.asarray(img.convert("L") if mode != "L" else img)
    if mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)
    if mode in ("I", "F"):
        a = np.asarray(img)
        if mode == "I" and a.size and 255 < a.max() <= 65535 and a.min() >= 0:
            # 16-bit data (older Pillow opens 16-bit PNGs in mode I); a guess from the values: a
            # 16-bit image whose values all stay within 0..255 is taken as 8-bit
            return a.astype(np.uint16)
        return a
    # (LA kept its alpha only from session 47: a face hidden under alpha 0 was read)
    if mode in ("RGBA", "RGBa", "PA", "LA") or (mode == "P" and "transparency" in img.info):
        return np.ascontiguousarray(np.asarray(img.convert("RGBA"))[:, :, [2, 1, 0, 3]])
    rgb = img if mode == "RGB" else img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX, ...
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def _check_png_chunks(data: np.ndarray, name: str) -> None:
    """Refuse a PNG whose chunk announces more bytes than the file holds, before OpenCV's reader
    allocates what it announces (a 57-byte file can ask for 2 GB). Every chunk whose length field
    is in the file is checked, also the last one when the file ends inside it (fuzz finding 4).
    An IEND before any IDAT is refused too: OpenCV's reader does not stop there but reads on, so
    a chunk after it could ask for 4 GB again (fuzz finding 5)."""
    buf = data.data  # a memoryview of the bytes, no copy
    pos, n = 8, len(buf)
    seen_idat = False
    while pos + 4 <= n:
        length = int.from_bytes(buf[pos:pos + 4], "big")
        kind = bytes(buf[pos + 4:pos + 8])
        if length > n - pos - 12:
            raise ValueError(f"cannot decode {name} as an image (PNG chunk {kind.decode('latin-1')!r} "
                             f"announces {length} bytes, the file has {n - pos - 12} left)")
        pos += 12 + length
        seen_idat = seen_idat or kind == b"IDAT"
        if kind == b"IEND":
            if not seen_idat:
                raise ValueError(f"cannot decode {name} as an image (the PNG ends before any pixel data: "
                                 "no IDAT chunk before IEND)")
            break


# Formats whose coding bounds the pixels a byte of file can hold. A JPEG's Huffman coding spends
# at least a bit on every 8x8 block (its DC term, progressive or not): at most ~512 pixels per
# byte per component. GIF's LZW codes are 3-12 bits and each stands for at most one string of its
# 4096-entry table: at most ~2,700 pixels a byte (Pillow packs a flat 5000 x 5000 GIF at 1,276).
# Far beyond that, the header's size is not what the file holds (cut short, or made to exhaust
# memory: a 629-byte JPEG announcing 20000 x 20000 pixels made OpenCV fill 1.2 GB, a 35-byte GIF
# announcing 16000 x 16000 took 2 GB, session 47). Images up to 16.7 MP always pass; a larger
# arithmetic-coded JPEG (rare) of flat content could exceed the bound and be refused.
JPEG_MAX_PIXELS_PER_BYTE = 2048
GIF_MAX_PIXELS_PER_BYTE = 4096
ALWAYS_OK_PIXELS = 1 << 24


def _max_image_pixels() -> int:
    value = os.environ.get("PYFER_MAX_IMAGE_PIXELS", "")
    if not value:
        return 1 << 28
    if not (value.isascii() and value.isdigit()) or int(value) < 1:  # ("²".isdigit() is True)
        raise ValueError(f"PYFER_MAX_IMAGE_PIXELS must be a whole number of pixels >= 1, got {value!r}")
    return int(value)


# The most pixels pyfer decodes from an image file of any format (default 2^28, 16384 x 16384; a
# 100 MP camera photo is well under), by the size its header announces (pyfer.image_size): most
# formats pack a flat image far smaller than its pixels. Valid 30000 x 30000 PNGs, under OpenCV's
# own limit of 2^30 pixels, took 20 s and 5.2 GB to decode (2.6 MB, colour: a helper's review,
# session 46) and 4 s and 1.8 GB (109 KB, 1-bit gray); a 20000 x 20000 JPEG 2000 file of 1.4 KB took
# 2 GB, a Radiance HDR one 31 s and 9.4 GB (session 47). Set it (or the environment's
# PYFER_MAX_IMAGE_PIXELS, for the CLI) higher to read bigger images, up to OpenCV's 2^30.
MAX_IMAGE_PIXELS = _max_image_pixels()


def _check_header(data: np.ndarray, name: str) -> tuple[Optional[str], Optional[tuple[int, int]]]:
    """Refuse a file whose header announces more than MAX_IMAGE_PIXELS, or whose format
    ``pyfer.image_size`` knows but whose size it cannot read there; else its (format, size)."""
    kind, size = read_header(data)
    if kind is not None and size is None:
        raise ValueError(f"cannot decode {name} as an image (its {kind} header gives no size that pyfer can read: "
                         "cut short or damaged)")
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise ValueError(f"cannot decode {name}: its header announces {size[0]} x {size[1]} pixels, more than "
                         f"pyfer decodes (pyfer.recognizer.MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS:,}; set it, or "
                         "the environment's PYFER_MAX_IMAGE_PIXELS, higher to read such an image)")
    return kind, size


BYTES_BOUNDS = {"JPEG": JPEG_MAX_PIXELS_PER_BYTE, "GIF": GIF_MAX_PIXELS_PER_BYTE}


def _check_bytes_can_hold(data: np.ndarray, name: str,
                          header: Optional[tuple[Optional[str], Optional[tuple[int, int]]]] = None) -> None:
    """Refuse a JPEG or GIF announcing far more pixels than its bytes can encode (BYTES_BOUNDS).
    ``header``: read_header's answer, when the caller has it (the header is then not read twice)."""
    kind, size = read_header(data) if header is None else header
    if kind not in BYTES_BOUNDS or size is None:
        return
    pixels = size[0] * size[1]
    if pixels > ALWAYS_OK_PIXELS and pixels > BYTES_BOUNDS[kind] * data.size:
        # (a GIF's screen can also be left mostly empty by its frames: refused all the same, as
        # OpenCV would allocate all of it)
        why = "cut short or damaged" if kind == "JPEG" else "cut short, damaged, or a screen its frames leave empty"
        raise ValueError(f"cannot decode {name} as an image (its {kind} header announces {size[0]} x {size[1]} "
                         f"pixels, more than its {data.size} bytes can hold: {why})")


def _tiff_orientation(t: bytes) -> int:
    """The Orientation tag (1-8) of EXIF data (a TIFF header and IFD0, after an optional
    ``Exif\\0\\0``); 1 when absent or malformed."""
    import struct

    if t[:6] == b"Exif\0\0":
        t = t[6:]
    order = {b"II*\0": "<", b"MM\0*": ">"}.get(bytes(t[:4]))
    if order is None or len(t) < 8:
        return 1
    ifd = struct.unpack(order + "I", t[4:8])[0]
    if ifd + 2 > len(t):
        return 1
    count = struct.unpack(order + "H", t[ifd:ifd + 2])[0]
    for i in range(count):
        p = ifd + 2 + 12 * i
        if p + 12 > len(t):
            break
        tag, kind = struct.unpack(order + "HH", t[p:p + 4])
        if tag == 0x0112:
            value = struct.unpack(order + ("H" if kind == 3 else "I"), t[p + 8:p + (10 if kind == 3 else 12)])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation (1-8; 1 = upright) of an encoded PNG (``eXIf`` chunk) or WebP
    (``EXIF`` chunk); 1 for other formats or without the tag."""
    buf = data.data  # a memoryview of the bytes, no copy
    n = len(buf)
    if n > 8 and bytes(buf[:8]) == PNG_SIGNATURE:
        pos = 8
        while pos + 12 <= n:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            kind = bytes(buf[pos + 4:pos + 8])
            if kind == b"eXIf":
                return _tiff_orientation(bytes(buf[pos + 8:min(n, pos + 8 + length)]))
            if kind == b"IEND":
                break
            pos += 12 + length
    elif n > 12 and bytes(buf[:4]) == b"RIFF" and bytes(buf[8:12]) == b"WEBP":
        pos = 12
        while pos + 8 <= n:
            kind = bytes(buf[pos:pos + 4])
            length = int.from_bytes(buf[pos + 4:pos + 8], "little")
            if kind == b"EXIF":
                return _tiff_orientation(bytes(buf[pos + 8:min(n, pos + 8 + length)]))
            pos += 8 + length + (length & 1)
    return 1


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image upright by its EXIF orientation, as OpenCV does for JPEG (any depth
    and channel count)."""
    if orientation in (5, 6, 7, 8):
        img = img.swapaxes(0, 1)
    if orientation in (2, 3, 6, 7):
        img = img[:, ::-1]
    if orientation in (3, 4, 7, 8):
        img = img[::-1]
    return np.ascontiguousarray(img) if orientation != 1 else img


def decode_image(data: np.ndarray, name: str = "image") -> np.ndarray:
    """Encoded bytes -> decoded array. JPEG, PNG and WebP files are turned upright by their EXIF
    orientation (phone photos); formats other than JPEG keep their alpha and bit depth."""
    import cv2

    if data.size == 0:
        raise ValueError(f"empty file: {name}")
    jpeg = data.size > 3 and data[0] == 0xFF and data[1] == 0xD8
    if data.size > 8 and bytes(data[:8]) == PNG_SIGNATURE:
        _check_png_chunks(data, name)
    _check_bytes_can_hold(data, name, _check_header(data, name))
    try:
        img = cv2.imdecode(data, (cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH) if jpeg else cv2.IMREAD_UNCHANGED)
    except cv2.error as e:  # e.g. a header announcing more pixels than OpenCV's limit
        msg = str(e).strip().splitlines()[-1] if str(e).strip() else "OpenCV error"
        raise ValueError(f"cannot decode {name} as an image ({msg})") from None
    if img is None:
        if jpeg and jpeg_ends_early(data):  # (OpenCV 4.14 decodes no JPEG without its end marker)
            raise ValueError(f"cannot decode {name} as an image: the JPEG data ends before the image does "
                             "(a cut-short download or copy?)")
        raise ValueError(f"cannot decode {name} as an image")
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha PNG
        img = img[:, :, 0]
    if not jpeg:  # (IMREAD_UNCHANGED skips OpenCV's own orientation; JPEG had it applied above)
        img = apply_orientation(img, exif_orientation(data))
    return img


def load_image(image: ImageLike) -> np.ndarray:
    """A path, an encoded image file's bytes (an upload, a download, stdin; decoded as a file is,
    with its EXIF orientation and the same limits), a numpy array or a PIL image -> uint8 HxW,
    HxWx3 (BGR) or HxWx4 (BGRA). Raises ValueError/TypeError with a clear message for anything
    else; never hands OpenCV something it could crash on. Arrays are taken as OpenCV's BGR order;
    PIL images are converted from RGB and taken as their pixels are (``Image.open`` does not
    apply a phone photo's EXIF orientation: use ``ImageOps.exif_transpose`` first, or pass the
    path), so that boxes match the image held."""
    if isinstance(image, (str, os.PathLike)):
        if not os.fspath(image):  # Path("") is ".", the working folder
            raise FileNotFoundError("empty image path")
        path = Path(image)
        if path.is_dir():
            # FileNotFoundError, as for any path without an image file (the documented contract)
            raise FileNotFoundError(f"{path} is a folder, not an image file")
        if path.exists() and not path.is_file():
            raise ValueError(f"{path} is not a regular file (a device, pipe or socket), not an image file")
        if not path.is_file():
            if "://" in os.fspath(image):
                raise FileNotFoundError(f"{os.fspath(image)} is a URL: pyfer reads local files only (it never "
                                        "uses the network); download the image first")
            raise FileNotFoundError(f"no such image file: {path}")
        data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode: also non-ASCII paths
        return as_uint8_image(decode_image(data, str(path)), decoded=True)
    if isinstance(image, (bytes, bytearray, memoryview)):
        raw = image.tobytes() if isinstance(image, memoryview) else image
        try:
            return as_uint8_image(decode_image(np.frombuffer(raw, dtype=np.uint8), "the image bytes"), decoded=True)
        except ValueError as e:
            if len(raw) < 4096 and b"\0" not in raw and os.path.isfile(os.fsdecode(bytes(raw))):  # b"photo.jpg"
                raise ValueError(f"{e}: bytes are an encoded image; give a file name as a str or a Path") from None
            raise
    if isinstance(image, np.ndarray):
        return as_uint8_image(image)
    if is_pil_image(image):
        return as_uint8_image(pil_to_array(image))
    several = " (several images: predict_batch)" if isinstance(image, (list, tuple)) else ""
    raise TypeError(f"expected an image path, an encoded image's bytes, a numpy array or a PIL image, "
                    f"got {type(image).__name__}{several}")


FLOAT_UNIT_RANGE_MAX = 2.0  # float images whose maximum is at most this are read as [0, 1],
FLOAT_UNIT_UNDERSHOOT = 0.1  # if their minimum is not below -this ([-1, 1] data is refused)


SENSOR_BIT_DEPTHS = (8, 10, 12, 14, 16)  # what uint16 images hold: camera and scanner data


def uint16_shift(max_value: int) -> int:
    """How far a uint16 image is shifted down to 8 bits: by the smallest common bit depth that holds
    its maximum (of the colour channels: alpha is judged apart). 12-bit data (0..4095) is shifted
    by 4, not 8, which left it 16 times too dark; 8-bit values cast to uint16 stay as they are. A
    16-bit image that dark comes out brighter by the same power of two."""
    if not 0 <= max_value < (1 << 16):
        raise ValueError(f"a uint16 image's maximum lies in 0..65535, got {max_value}")
    depth = next(d for d in SENSOR_BIT_DEPTHS if max_value < (1 << d))
    return depth - 8


def as_uint8_image(a: np.ndarray, decoded: bool = False) -> np.ndarray:
    """Any image array -> uint8 (see ``load_image``). ``decoded``: ``a`` was decoded from a file,
    whose 16-bit alpha always spans 0..65535 (an array's alpha depth is judged by its maximum, and
    a faint 16-bit alpha of a file, 4000 of 65535, read as 250 of 255 made a hidden face seen)."""
    if a.dtype == bool or a.dtype == object or not (np.issubdtype(a.dtype, np.integer)
                                                   or np.issubdtype(a.dtype, np.floating)):
        raise TypeError(f"unsupported image dtype {a.dtype}: use uint8 (or another int/float type)")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        several = " (a stack of images? predict_batch takes one)" if a.ndim == 4 else ""
        raise ValueError(f"expected an HxW gray, HxWx3 BGR or HxWx4 BGRA image, got shape {a.shape}{several}")
    if a.size == 0:
        raise ValueError(f"empty image (shape {a.shape})")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:  # 16-bit PNG/TIFF, or 10/12/14-bit sensor data stored in 16 bits
        # judged on the colour alone: an opaque alpha of 65535 says nothing of the colour's depth
        colour = a[:, :, :3] if a.ndim == 3 and a.shape[2] == 4 else a
        shift = uint16_shift(int(colour.max()))
        out = a >> shift
        if colour is not a:  # alpha keeps its own range: a file's is 16-bit, an array's as its maximum says
            out[:, :, 3] = a[:, :, 3] >> (8 if decoded else uint16_shift(int(a[:, :, 3].max())))
        return out.astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("image has NaN or infinite values")
        # floats in [0, 1] (skimage style), the small over- and undershoot of a resize or a gain
        # clipped; else [0, 255] (an image in [0, 255] whose maximum is 2 or less is near black)
        lo, hi = float(a.min()), float(a.max())
        if hi <= FLOAT_UNIT_RANGE_MAX and lo >= -FLOAT_UNIT_UNDERSHOOT:
            return np.ascontiguousarray(np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))
    else:
        lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"image values must lie in [0, 255] (or [0, 1] for floats), got [{lo}, {hi}]")
    return np.ascontiguousarray(np.rint(a).astype(np.uint8))


def _as_detection(item) -> tuple[Any, Optional[np.ndarray], Optional[float]]:
    """One detector output -> (box, landmarks or None, score or None). Accepts pyfer's
    ``Detection`` (or any object with ``box`` and optional ``landmarks``/``score``) and plain
    ``(x, y, w, h)`` sequences."""
    box = getattr(item, "box", None)
    if box is None:
        return item, None, None
    lm = getattr(item, "landmarks", None)
    if lm is not None:
        lm = np.asarray(lm, np.float32)
        if lm.shape != (5, 2) or not np.isfinite(lm).all():
            raise ValueError(f"landmarks must be 5 finite (x, y) points, got shape {lm.shape}")
    score = getattr(item, "score", None)
    if score is not None:
        try:
            score = float(score)  # also numpy and torch scalars
        except (TypeError, ValueError):
            raise ValueError(f"a detection's score must be a number (or None), got {score!r}") from None
        if not np.isfinite(score):  # NaN would pass every threshold test and break the JSON output
            raise ValueError(f"a detection's score must be a finite number (or None), got {score!r}")
    return box, lm, score


def image_errors() -> tuple[type[Exception], ...]:
    """What an image that cannot be read or used raises (missing or corrupt file, unsupported or
    malformed array, too large to decode): one image's failure, which a batch or the CLI reports
    and goes on from."""
    import cv2  # imported late, as everywhere in pyfer: ``import pyfer`` stays fast

    return (OSError, ValueError, TypeError, MemoryError, cv2.error)


def _is_number(v) -> bool:
    """A real number (Python or numpy: ``np.float32(0.5)``, ``np.int64(40)``), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _refuse_a_single_path(images, what: str) -> None:
    """A bare path (str, PathLike) or one image's bytes where a sequence is expected would be
    iterated character by character."""
    if isinstance(images, (str, os.PathLike)):
        raise TypeError(f"{what} takes a list of images, got a single path {images!r}; "
                        f"wrap it in a list: {what}([path])")
    if isinstance(images, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} takes a list of images, got the bytes of one ({len(images)} bytes); "
                        f"wrap them in a list: {what}([data])")


class Recognizer:
    """Facial expression recognizer.

    ``weights``: a .safetensors file from ``training.export`` (None: the shipped student).
    ``detector``: 'yunet' (default: boxes, five landmarks and scores), 'yunet-tilted' (also heads
    tilted 30-45 degrees in large photos, about 3x the detection time), 'haar', 'mediapipe', any
    callable ``image -> [(x, y, w, h), ...]`` (or objects with ``box``, ``landmarks``, ``score``),
    or None to treat each whole image as one face.
    ``min_face``: smallest face to find and report, in pixels (longer box side); None: the
    detector's default (YuNet searches from 60 px, less in small images, and reports all).
    ``score_threshold``: the detector's confidence cut (YuNet 0.6, MediaPipe 0.5 by default);
    faces from a callable that carry a score are filtered by it too.
    ``framing``: how a detection becomes the model's input (``pyfer.facenorm.FaceFraming``, a dict,
    or "align"/"box" to change only the mode); None: the framing stored in the weights' metadata.
    ``align``: shorthand for ``framing="align"`` (True) or ``"box"`` (False).
    ``margin``: frame landmark-free boxes as the box enlarged by ``margin`` of its side on each
    side (Haar boxes default to 0.05, measured on FER2013; other boxes use the weights' framing).
    ``flip``: average the logits of each face and its mirror image (test-time augmentation;
    False: half the expression engine's time, about a point of accuracy).
    ``prior_shift``: how much of the training set's class prior the scores keep (post-hoc logit
    adjustment: logits + prior_shift * log prior). 0 favours the rare classes (anger, disgust,
    fear, contempt: higher macro recall, lower accuracy on FER2013-like photos), 1 the frequent
    ones (neutral, happiness). None: the value baked into the weights at export (the shipped
    student: 0.4, chosen on FERPlus valid and SFEW train; RESULTS.md). Accepted from -1 to 2:
    below 0 pushes further toward the rare classes, above 1 further toward the frequent ones; the
    measured range is 0-1 (training.prior_shift sweeps 0.2-0.7).
    ``threads``: the engine's threads, and YuNet's on the engine (default: every CPU this process
    may use; YuNet through OpenCV, ``PYFER_YUNET_BACKEND=opencv``, uses OpenCV's own thread pool,
    set process-wide by ``cv2.setNumThreads``).

    Faces come largest first (box area; equal areas: higher detection score first), after the
    faces the detector is sure of when it has a ``sure_score`` (YuNet: 0.8;
    ``pyfer.detect.face_order``). Faces for ``boxes=`` given to ``predict`` come in the given order.
    """

    def __init__(self, weights: Union[str, os.PathLike, None] = None, device: str = "cpu",
                 detector: Union[str, Detector, None] = "yunet", threads: Optional[int] = None,
                 min_face: Optional[float] = None, score_threshold: Optional[float] = None,
                 framing: Union[FaceFraming, dict, str, None] = None, align: Optional[bool] = None,
                 margin: Optional[float] = None, flip: bool = True, prior_shift: Optional[float] = None):
        from pyfer.engine import Engine

        if min_face is not None and not (_is_number(min_face) and np.isfinite(min_face) and min_face >= 1):
            raise ValueError(f"min_face must be a number of pixels >= 1, got {min_face!r}")
        if score_threshold is not None and not (_is_number(score_threshold) and 0 < score_threshold < 1):
            raise ValueError(f"score_threshold must lie in (0, 1), got {score_threshold!r}")
        if margin is not None and not (_is_number(margin) and -0.3 <= margin <= 1.0):
            raise ValueError(f"margin must lie in [-0.3, 1], got {margin!r}")
        self.weights_path = Path(weights) if weights is not None else default_weights_path()
        self.detector = get_detector(detector, min_face=min_face, score_threshold=score_threshold, threads=threads)
        self.engine = Engine(str(self.weights_path), device=device, threads=threads)
        self.spec = PreprocessSpec.from_dict(self.engine.preprocess)
        self.class_names: tuple[str, ...] = tuple(self.engine.class_names)
        if self.engine.input_shape[0] != self.spec.channels:
            raise ValueError(f"{self.weights_path}: the network takes {self.engine.input_shape[0]}-channel input, "
                             f"and its preprocessing makes {self.spec.channels}-channel face crops: not a model "
                             "for Recognizer (pyfer.Engine runs it on your own input)")
        if len(set(self.class_names)) != len(self.class_names):  # Face.scores is a dict by name
            raise ValueError(f"{self.weights_path}: its class names repeat: {list(self.class_names)}")
        self.min_face = None if min_face is None else float(min_face)
        self.score_threshold = None if score_threshold is None else float(score_threshold)
        self.framing = self._framing(framing, align)
        self.margin = None if margin is None else float(margin)
        if not (isinstance(flip, (bool, np.bool_)) or (_is_number(flip) and flip in (0, 1))):
            raise TypeError(f"flip must be True or False, got {flip!r}")  # bool("no") is True
        self.flip = bool(flip)
        self.prior_shift, self._logit_offset = self._prior_shift(prior_shift)
        # seconds spent per stage by the last predict/predict_batch call (benchmarks, `pyfer predict -v`)
        self.last_timings: dict[str, float] = {}

    def __reduce__(self):
        # pickle would fail deep inside (a thread-local, the C++ engine) with a message that names
        # neither; rebuilding one per pickled call (a process pool's map(rec.predict, ...)) would
        # cost a model load per task
        raise TypeError("a Recognizer cannot be pickled (it holds a C++ engine and detector state): make one "
                        "in each worker process, e.g. with a process pool's initializer, and share it there")

    def __copy__(self) -> "Recognizer":
        """A shallow copy, as before ``__reduce__`` refused pickling: it shares the engine and detector."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def _framing(self, framing, align) -> FaceFraming:
        base = FaceFraming.from_dict(self.engine.metadata.get("framing"))
        if isinstance(framing, FaceFraming):
            base = framing
        elif isinstance(framing, dict):
            base = FaceFraming.from_dict(framing)
        elif isinstance(framing, str):
            base = FaceFraming.from_dict({**base.to_dict(), "mode": framing})
        elif framing is not None:
            raise TypeError(f"framing must be a FaceFraming, a dict, 'align' or 'box', got {framing!r}")
        if align is not None:
            base = FaceFraming.from_dict({**base.to_dict(), "mode": "align" if align else "box"})
        return base

    def _prior_shift(self, shift: Optional[float]) -> tuple[Optional[float], Optional[np.ndarray]]:
        """(the prior shift in effect, the offset that moves the weights' own to it or None)."""
        adj = self.engine.metadata.get("logit_adjustment")
        if shift is None:
            return (None if adj is None else float(adj["prior_shift"])), None
        if not _is_number(shift) or not -1 <= shift <= 2:
            raise ValueError(f"prior_shift must be a number in [-1, 2], got {shift!r}")
        if adj is None:
            raise ValueError(f"the weights {self.weights_path} carry no class prior (metadata "
                             "'logit_adjustment', written by training.export): prior_shift cannot be set")
        baked = float(adj["prior_shift"])
        prior = np.asarray(adj["class_prior"], np.float64)
        if prior.shape != (len(self.class_names),) or not (prior > 0).all():
            raise ValueError(f"the weights' class prior is malformed: {adj['class_prior']!r}")
        return float(shift), (float(shift) - baked) * np.log(prior)

    def box_framing(self, from_detector: bool) -> FaceFraming:
        """How a box without landmarks is framed: ``margin`` if given; else the detector's own
        calibration (``HaarDetector.box_margin``) for its boxes; else the weights' box framing."""
        margin = self.margin
        if margin is None and from_detector:
            margin = getattr(self.detector, "box_margin", None)
        if margin is None:
            return FaceFraming.from_dict({**self.framing.to_dict(), "mode": "box"})
        return FaceFraming(mode="box", box_scale=1 + 2 * margin, box_shift=(0.0, 0.0))

    # -- public API -------------------------------------------------------------------------
    @finishes_before_exit
    def predict(self, image: ImageLike, boxes: Optional[Iterable[Sequence[float]]] = None) -> list[Face]:
        """Faces in one image, main face first (the class docstring's order). ``image``: a path, an
        encoded image file's bytes, a numpy array (BGR, BGRA or gray, OpenCV's order) or a PIL
        image. ``boxes`` (x, y, w, h) skips detection; their faces come back in the given order."""
        return cast("list[Face]", self._predict_many([image], None if boxes is None else [boxes])[0])

    @overload
    def predict_batch(self, images: Sequence[ImageLike], return_exceptions: Literal[False] = False) -> list[list[Face]]:
        ...

    @overload
    def predict_batch(self, images: Sequence[ImageLike],
                      return_exceptions: Literal[True]) -> list[Union[list[Face], Exception]]:
        ...

    @finishes_before_exit
    def predict_batch(self, images: Sequence[ImageLike], return_exceptions: bool = False) -> list[Any]:
        """One list of faces per image; all faces go through the engine in one call.
        ``return_exceptions``: an image that cannot be read or used (missing or corrupt file,
        bad array, or a custom detector's malformed answer for it) gets the exception in its place
        and the others are still predicted
        (False: the first such image raises, for the whole batch)."""
        _refuse_a_single_path(images, "predict_batch")
        if isinstance(images, np.ndarray) and (images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (1, 3, 4))):
            # iterated, one image would become hundreds of one-row "images" (all faceless)
            raise ValueError(f"predict_batch takes a list of images; shape {images.shape} looks like one "
                             "image: use predict(image) or predict_batch([image])")
        if not isinstance(return_exceptions, (bool, np.bool_)):
            raise TypeError(f"return_exceptions must be True or False, got {return_exceptions!r}")
        return self._predict_many(list(images), None, return_exceptions=bool(return_exceptions))

    @finishes_before_exit
    def classify(self, crops: Union[np.ndarray, Sequence[np.ndarray]]) -> np.ndarray:
        """Already-cropped faces ((N, H, W) uint8 or a list of any-size images) -> (N, C) probabilities."""
        _refuse_a_single_path(crops, "classify")
        if isinstance(crops, np.ndarray):
            if crops.ndim == 2:
                raise ValueError("classify expects a batch (N, H, W); wrap a single face as crops[None]")
            if crops.ndim == 3 and crops.shape[2] in (3, 4):
                raise ValueError(f"classify expects a batch (N, H, W) or (N, H, W, C); shape {crops.shape} "
                                 "looks like a single colour face (H, W, 3 or 4): wrap it as crops[None]")
            if crops.ndim not in (3, 4):
                raise ValueError(f"classify expects (N, H, W) or (N, H, W, C) arrays, got shape {crops.shape}")
        items = [on_white(as_uint8_image(np.asarray(c)) if isinstance(c, np.ndarray) else load_image(c)) for c in crops]
        if not items:
            return np.zeros((0, len(self.class_names)), np.float64)  # as _infer gives
        return self._infer([to_gray(c) for c in items])

    @finishes_before_exit
    def detect(self, image: ImageLike) -> list[tuple[Box, Optional[np.ndarray], Optional[float]]]:
        """The detector's faces as (box, landmarks or None, score or None), filtered and ordered
        as ``predict`` returns them; boxes are validated, not clipped."""
        img = on_white(load_image(image))
        if self.detector is None:  # predict's rule: the whole image is the face
            return [((0, 0, img.shape[1], img.shape[0]), None, None)]
        return self._detect(img, img.shape[:2])

    @finishes_before_exit
    def face_crops(self, image: ImageLike) -> np.ndarray:
        """The detected faces as ``predict`` frames them for the network: (N, S, S) uint8 gray,
        S the model's input size, in ``predict``'s order (what ``classify`` would be given)."""
        img = on_white(load_image(image))
        size = self.spec.input_size
        if self.detector is None:  # predict's rule: the whole image is the face
            return resize_face(to_gray(img), size)[None]
        dets = self._detect(img, img.shape[:2])
        return np.stack(self._frame(img, dets, from_detector=True)) if dets else np.zeros((0, size, size), np.uint8)

    # -- internals ---------------------------------------------------------------------------
    def _frame(self, img: np.ndarray, dets: list, from_detector: bool) -> list[np.ndarray]:
        """One normalized gray crop per detection (normalize_face converts only the face's region)."""
        size = self.spec.input_size
        box_framing = None
        crops = []
        for box, lm, _ in dets:
            if lm is not None and self.framing.mode == "align":
                crops.append(normalize_face(img, size, box, lm, self.framing))
            else:
                if box_framing is None:
                    box_framing = self.box_framing(from_detector)
                crops.append(normalize_face(img, size, box, None, box_framing))
        return crops

    def _detect(self, img: np.ndarray, shape) -> list:
        dets = []
        assert self.detector is not None  # the caller's check
        found = self.detector(img)
        if found is None or isinstance(found, (str, bytes)):
            raise TypeError(f"the detector returned {found!r}; it must return a list of faces (empty: none)")
        for item in found:
            box, lm, score = _as_detection(item)
            box = check_box(box, shape)
            if self.min_face is not None and max(box[2], box[3]) < self.min_face:
                continue
            if self.score_threshold is not None and score is not None and score < self.score_threshold:
                continue
            dets.append((box, lm, score))
        sure = getattr(self.detector, "sure_score", None)
        dets.sort(key=lambda d: face_order(d[0], d[2], sure))
        return dets

    def _predict_many(self, images: list, boxes_per_image: Optional[list],
                      return_exceptions: bool = False) -> list[Union[list[Face], Exception]]:
        t = {"decode": 0.0, "detect": 0.0, "align": 0.0, "engine": 0.0}
        size = self.spec.input_size
        crops: list[np.ndarray] = []
        owners: list[tuple[int, Box, Optional[np.ndarray], Optional[float]]] = []
        failures: dict[int, Exception] = {}
        for i, image in enumerate(images):
            t0, t1, t2 = time.perf_counter(), None, None
            try:
                img = on_white(load_image(image))  # (what a viewer shows of a transparent image)
                t1 = time.perf_counter()
                shape = img.shape[:2]
                given_boxes = None if boxes_per_image is None else boxes_per_image[i]
                given = given_boxes is not None
                if given_boxes is not None:
                    dets = [(check_box(b, shape), None, None) for b in given_boxes]
                elif self.detector is None:
                    dets = None
                else:
                    dets = self._detect(img, shape)
                t2 = time.perf_counter()
                if dets is None:  # whole image is the face: no framing
                    image_crops = [resize_face(to_gray(img), size)]
                    image_owners = [(i, (0, 0, shape[1], shape[0]), None, None)]
                else:
                    image_crops = self._frame(img, dets, from_detector=not given)
                    image_owners = [(i, clip_box(box, shape), lm, score) for box, lm, score in dets]
            except image_errors() as e:
                if not return_exceptions:
                    raise
                # without this frame in its traceback: it would keep the batch's images and crops alive
                failures[i] = e.with_traceback(e.__traceback__.tb_next if e.__traceback__ else None)
                continue
            finally:  # a failed image's time goes to the stage it failed in
                t3 = time.perf_counter()
                t1 = t3 if t1 is None else t1
                t2 = t3 if t2 is None else t2
                t["decode"] += t1 - t0
                t["detect"] += t2 - t1
                t["align"] += t3 - t2
            # added only once the whole image has gone through: a failure leaves no stray crop
            crops.extend(image_crops)
            owners.extend(image_owners)
        t4 = time.perf_counter()
        probs = self._infer(crops) if crops else np.zeros((0, len(self.class_names)), np.float64)
        t["engine"] = time.perf_counter() - t4
        self.last_timings = t
        out: list[list[Face]] = [[] for _ in images]
        for (i, box, lm, score), p in zip(owners, probs):
            k = int(np.argmax(p))
            scores = {name: float(v) for name, v in zip(self.class_names, p)}
            landmarks = None if lm is None else tuple((float(x), float(y)) for x, y in lm)
            out[i].append(Face(box=box, label=self.class_names[k], scores=scores, confidence=float(p[k]),
                               landmarks=landmarks, detection_score=score))
        return [failures.get(i, faces) for i, faces in enumerate(out)]

    def _infer(self, grays: list[np.ndarray]) -> np.ndarray:
        size = self.spec.input_size
        x = normalize(np.stack([resize_face(g, size) for g in grays]), self.spec)
        if self.flip:  # one engine call for the faces and their mirrors
            both = self.engine.forward(np.concatenate([x, np.ascontiguousarray(x[..., ::-1])]))
            n = len(grays)
            logits = (both[:n].astype(np.float64) + both[n:]) / 2
        else:
            logits = self.engine.forward(x).astype(np.float64)
        if self._logit_offset is not None:
            logits = logits + self._logit_offset
        return softmax(logits, axis=1)

    def info(self) -> dict:
        return {"weights": str(self.weights_path), "classes": list(self.class_names),
                "preprocess": self.spec.to_dict(), "detector": repr(self.detector),
                "framing": self.framing.to_dict(), "margin": self.margin, "min_face": self.min_face,
                "score_threshold": self.score_threshold, "flip": self.flip, "prior_shift": self.prior_shift}
