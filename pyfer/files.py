"""Which files in a folder are images (what ``pyfer predict DIR`` and ``pyfer evaluate DIR`` read),
and which video types ``pyfer video --out`` writes."""
from __future__ import annotations

import functools
from pathlib import Path

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
