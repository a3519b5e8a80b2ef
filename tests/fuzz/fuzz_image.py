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

import atexit
import os
import shutil
import sys
import tempfile

import atheris

import numpy as np

import pyfer.image_size as _size
import pyfer.recognizer as _rec

# Coverage of our wrapper: atheris.instrument_imports() does not see modules loaded through an
# editable install's import hook, so the functions are instrumented one by one.
for _name in ("load_image", "decode_image", "as_uint8_image", "pil_to_array", "is_pil_image",
              "_check_header", "read_header", "_check_bytes_can_hold", "_check_png_chunks"):
    if callable(getattr(_rec, _name, None)):
        setattr(_rec, _name, atheris.instrument_func(getattr(_rec, _name)))
# the header readers of every format, which read_header calls through its tables
for _table in ("_BEFORE_WEBP", "_AFTER_WEBP"):
    setattr(_size, _table, tuple((name, signatures, atheris.instrument_func(reader))
                                 for name, signatures, reader in getattr(_size, _table)))
for _name in ("read_header", "avif_size", "webp_size", "_vp8_size", "_boxes", "_box_contents", "_pnm_numbers",
              "_pam_size", "_fgets", "_j2k_codestream_size", "_exr_chlist_length", "c_int"):
    setattr(_size, _name, atheris.instrument_func(getattr(_size, _name)))
load_image = _rec.load_image

# OpenCV refuses images over CV_IO_MAX_IMAGE_PIXELS (default 2^30) itself; a smaller cap (2^22) keeps a
# header that announces a huge image from taking gigabytes in the fuzzer (the -rss_limit_mb
# check would report it as a crash). Set before cv2 reads it (at the first decode).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 22))

# scripts/fuzz.sh gives a folder it removes afterwards; run alone, the harness makes its own, and
# removes it where Python gets to exit (libFuzzer ends the process from C, past atexit)
_DIR = os.environ.get("PYFER_FUZZ_SCRATCH") or tempfile.mkdtemp(
    prefix="pyfer-fuzz-image-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
if "PYFER_FUZZ_SCRATCH" not in os.environ:
    atexit.register(shutil.rmtree, _DIR, True)
_PATH = os.path.join(_DIR, f"input-{os.getpid()}.img")  # one per worker (-jobs, -fork)


# Found by this target (RELIABILITY.md, "Coverage-guided fuzzing", finding 2): a header
# announcing more pixels than OpenCV's limit made cv2.imdecode raise cv2.error through
# load_image; fixed in decode_image (a ValueError now), so any cv2.error is a failure again.


# Found by this target (finding 3): OpenCV's PNG reader allocated a chunk's announced length
# before checking it against the data (2-4 GB for a 57-byte file); fixed in decode_image, which
# refuses such a PNG first, so this target no longer skips them: one is a failure again.


def TestOneInput(data: bytes) -> None:
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
