"""Which files in a folder are images (what ``pyfer predict DIR`` and ``pyfer evaluate DIR`` read),
which of them are annotated copies pyfer wrote, and which video types ``pyfer video --out`` writes."""
from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path
from typing import Iterable

# case-insensitive; other files in a folder are ignored
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".jp2", ".sr", ".ras", ".hdr", ".pic", ".avif",
})  # and .gif where OpenCV reads it (reads_gif); not .exr: opencv-python ships that reader off


# the annotated video's type -> its codec (OpenCV's FFmpeg writer; no audio). mp4v is fast but web
# browsers do not play it; VP8 in WebM plays in every browser and takes a whole run to about 0.4x
# its frame rate (docs/recognizer.md, scripts/video_codec_cost.py). No H.264: the opencv-python
# wheels carry no encoder for it.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "mp4v", ".mkv": "mp4v", ".webm": "VP80"}


@functools.lru_cache(maxsize=1)
def reads_gif() -> bool:
    """Whether this OpenCV decodes GIF (4.11 and later): a 1x1 GIF, decoded once."""
    import cv2
    import numpy as np

    one_pixel = bytes.fromhex("47494638396101000100800000000000ffffff2c00000000010001000002024401003b")
    try:
        return cv2.imdecode(np.frombuffer(one_pixel, np.uint8), cv2.IMREAD_COLOR) is not None
    except cv2.error:
        return False


def is_image_name(p: Path) -> bool:
    ext = p.suffix.lower()
    return (ext in IMAGE_EXTENSIONS or (ext == ".gif" and reads_gif())) and not p.name.startswith(".")


def image_files(folder: Path, recursive: bool) -> list[Path]:
    """The image files of ``folder`` (of its subfolders too with ``recursive``), sorted; hidden
    files and folders (a leading '.', as macOS's ``._x.jpg`` and ``.thumbs/``) are skipped."""
    pattern = "**/*" if recursive else "*"
    return sorted((q for q in folder.glob(pattern) if q.is_file() and is_image_name(q)
                   and not any(part.startswith(".") for part in q.relative_to(folder).parts)),
                  key=lambda q: q.as_posix())


# The annotated copies ``pyfer predict --out/--out-dir`` writes as JPEG or PNG say so in their
# header (a JPEG comment; a PNG "Software" text chunk), so that a later run over the same folder
# or glob can leave them out instead of reading its own drawings as photos. Other types carry no
# mark (only the --out-dir rule in the CLI keeps those apart).
ANNOTATED_MARK = b"pyfer annotated copy"
_JPEG_COMMENT = b"\xff\xfe" + struct.pack(">H", 2 + len(ANNOTATED_MARK)) + ANNOTATED_MARK
_PNG_TEXT_DATA = b"tEXt" + b"Software\0" + ANNOTATED_MARK
_PNG_TEXT = struct.pack(">I", len(_PNG_TEXT_DATA) - 4) + _PNG_TEXT_DATA + struct.pack(">I", zlib.crc32(_PNG_TEXT_DATA))
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEAD_BYTES = 128  # the mark is written within the first 60 bytes: after JFIF's APP0, or after IHDR


def mark_annotated(encoded: bytes) -> bytes:
    """An encoded JPEG or PNG with the annotated-copy mark added to its header; other bytes as
    they are. JPEG: a comment segment after SOI and the JFIF APP0 that must come first; PNG: a
    text chunk after IHDR, which must come first."""
    if encoded[:2] == b"\xff\xd8":
        at = 2
        if encoded[2:4] == b"\xff\xe0" and len(encoded) >= 6:
            at = 4 + struct.unpack(">H", encoded[4:6])[0]
        return encoded[:at] + _JPEG_COMMENT + encoded[at:]
    if encoded[:8] == _PNG_SIGNATURE and encoded[12:16] == b"IHDR":
        at = 8 + 12 + struct.unpack(">I", encoded[8:12])[0]
        return encoded[:at] + _PNG_TEXT + encoded[at:]
    return encoded


def is_annotated_copy(path: Path) -> bool:
    """Whether ``path`` is an annotated copy pyfer wrote (its header has the mark); False for
    anything that cannot be read (reading it later reports why)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except (OSError, ValueError):
        return False
    if head[:2] == b"\xff\xd8":
        return _JPEG_COMMENT in head
    return head[:8] == _PNG_SIGNATURE and _PNG_TEXT in head


def without_annotated_copies(paths: Iterable[Path]) -> tuple[list[Path], int]:
    """``paths`` less the annotated copies pyfer wrote, and how many were left out."""
    paths = list(paths)
    kept = [p for p in paths if not is_annotated_copy(p)]
    return kept, len(paths) - len(kept)
