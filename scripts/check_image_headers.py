#!/usr/bin/env python3
"""Compare ``pyfer.image_size.read_header`` with what OpenCV decodes, over every image file under
the given folders: each file OpenCV decodes must have its size read exactly (a smaller one would
let a bomb past ``MAX_IMAGE_PIXELS``; none would refuse a good image).

    python scripts/check_image_headers.py ../shared/data examples $(python -c "import site; print(*site.getsitepackages())") /usr/share
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from pyfer.image_size import read_header

EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pam",
              ".hdr", ".pfm", ".jp2", ".ras", ".avif"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args(argv)
    files = sorted({p for folder in args.folders for p in folder.rglob("*")
                    if p.suffix.lower() in EXTENSIONS and p.is_file()})
    decoded = mismatched = 0
    for path in files:
        data = np.fromfile(str(path), np.uint8)
        try:
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        except cv2.error:
            image = None
        if image is None:
            continue
        decoded += 1
        kind, size = read_header(data)
        if size != (image.shape[1], image.shape[0]):
            mismatched += 1
            print(f"{path}: {kind} header read as {size}, OpenCV decodes {image.shape[1]} x {image.shape[0]}")
    print(f"{len(files)} files, {decoded} decoded by OpenCV {cv2.__version__}, {mismatched} read otherwise")
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
