#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer's engine) of ``pyfer.recognizer.load_image`` on
image file bytes: the input is written to a file and loaded by path, as ``Recognizer.predict``
does with a path. OpenCV's decoders are not ours and are not instrumented; what is fuzzed is our
wrapper around them (empty files, 2-channel PNGs, 16-bit and float images, odd channel counts)
and the contract that every file either gives a uint8 HxW / HxWx3 / HxWx4 image or raises
``ValueError`` with a message. Anything else -- another exception, a wrong result, a crash or an
out-of-memory kill of the interpreter -- is reported by atheris with the input saved.

    pip install atheris
    python tests/fuzz/fuzz_image.py -max_total_time=60 WORK_DIR tests/fuzz/corpus/image
    scripts/fuzz.sh run image 600        # the same, with the work corpus in build/fuzz/work/image
"""
from __future__ import annotations

import os
import sys
import tempfile

import atheris

import numpy as np

import pyfer.recognizer as _rec

# Coverage of our wrapper: atheris.instrument_imports() does not see modules loaded through an
# editable install's import hook, so the functions are instrumented one by one.
for _name in ("load_image", "decode_image", "as_uint8_image", "pil_to_array", "is_pil_image"):
    if callable(getattr(_rec, _name, None)):
        setattr(_rec, _name, atheris.instrument_func(getattr(_rec, _name)))
load_image = _rec.load_image

# OpenCV refuses images over CV_IO_MAX_IMAGE_PIXELS (default 2^30) itself; a smaller cap (2^22) keeps a
# header that announces a huge image from taking gigabytes in the fuzzer (the -rss_limit_mb
# check would report it as a crash). Set before cv2 reads it (at the first decode).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 22))

_DIR = tempfile.mkdtemp(prefix="pyfer-fuzz-image-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
_PATH = os.path.join(_DIR, "input.img")


# Found by this target (RELIABILITY.md, "Coverage-guided fuzzing", finding 2): a header
# announcing more pixels than OpenCV's limit made cv2.imdecode raise cv2.error through
# load_image; fixed in decode_image (a ValueError now), so any cv2.error is a failure again.


# Open finding (RELIABILITY.md, finding 3): OpenCV's PNG reader allocates a chunk's announced
# length before checking it against the data, so a 57-byte PNG whose IDAT length field says
# 0x7fff0000 costs 2 GB of RSS (4 GB for 0xfe00000a) before load_image's clean ValueError. Until
# decode_image checks chunk lengths itself, such inputs are skipped here (counted), or fail with
# PYFER_FUZZ_STRICT=1, so that libFuzzer's -rss_limit_mb does not stop on them every time.
STRICT = os.environ.get("PYFER_FUZZ_STRICT") == "1"
_skipped = [0]


def png_chunk_past_end(data: bytes) -> bool:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return False
    i = 8
    while i + 8 <= len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        if n > len(data) - i - 12:
            return n > (1 << 24)  # a chunk announcing more than 16 MB that the file does not hold
        i += 12 + n
    return False


def TestOneInput(data: bytes) -> None:
    if not STRICT and png_chunk_past_end(data):
        _skipped[0] += 1
        if _skipped[0] & (_skipped[0] - 1) == 0:  # 1, 2, 4, ...: libFuzzer exits without atexit
            print(f"open finding, input skipped ({_skipped[0]} so far): PNG chunk length past the end", file=sys.stderr)
        return
    with open(_PATH, "wb") as f:
        f.write(data)
    try:
        img = load_image(_PATH)
    except ValueError as e:
        if len(str(e)) < 10:
            raise AssertionError(f"ValueError without a useful message: {e!r}") from e
        return
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8, (type(img), getattr(img, "dtype", None))
    assert img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4)), img.shape
    assert img.size > 0 and img.flags.c_contiguous, img.shape


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
