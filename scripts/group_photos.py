"""Group photos built from real faces, for detection tests (never committed as data).

Each photo is a textured background with real faces pasted on it, each blended in with a
feathered oval so that no rectangle edge marks it:

- ``two_faces_WxH`` (640x480, 1280x720, 1920x1080): the astronaut of ``examples/astronaut.png``
  with a 190 px face, and one SFEW film face 60 px wide, apart from each other;
- ``five_faces_1080p_N``: five faces of 75-85 px on a 1920x1080 frame, from SFEW colour film
  stills, scattered as in a group picture;
- ``ferplus_faces_1080p_N``: the same with FERPlus faces (48x48 gray, so enlarged and blurry at
  80 px): a harder case, measured but not required;
- ``size_ladder_1080p``: faces from 24 to 100 px, to show where detection stops.

Group photos show people facing the camera, so the SFEW faces are frontal ones: those that OpenCV's
frontal Haar cascade also finds in their own crop (an independent detector; about three in four
SFEW faces pass), taken at evenly spaced places of the manifest.

The face box of a pasted crop is the crop itself for SFEW and FERPlus (both are tight face crops)
and the astronaut's face box (``ASTRONAUT_FACE``) scaled with her photo. Everything is drawn
from a seeded generator: the same seed gives the same photos, byte for byte.

    python scripts/group_photos.py OUT_DIR        # writes PNGs and truth.json (boxes per photo)
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pyfer.atomic import write_file

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ASTRONAUT = REPO / "examples" / "astronaut.png"
ASTRONAUT_FACE = (109, 40, 64, 64)  # her face box in examples/astronaut.png (320x320)


@dataclass
class GroupPhoto:
    name: str
    image: np.ndarray  # BGR uint8
    faces: list = field(default_factory=list)  # truth boxes (x, y, w, h), image pixels
    sources: list = field(default_factory=list)  # where each face comes from


def background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth colour field with a vertical gradient and a few soft blocks (walls, furniture)."""
    import cv2

    low = rng.integers(40, 200, (6, 8, 3)).astype(np.float32)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    img += np.linspace(-25, 25, h, dtype=np.float32)[:, None, None]
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 3)), y0 + int(rng.integers(h // 10, h // 2))
        cv2.rectangle(img, (x0, y0), (x1, y1), rng.integers(30, 220, 3).tolist(), -1)
    img = cv2.GaussianBlur(img, (0, 0), max(2.0, w / 300))
    img += rng.normal(0, 4, img.shape).astype(np.float32)  # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)


def blend(canvas: np.ndarray, patch: np.ndarray, x: int, y: int, feather: float = 0.12) -> None:
    """Blend ``patch`` into ``canvas`` at (x, y) through an oval mask whose edge fades over
    ``feather`` of the patch size; parts outside the canvas are dropped."""
    import cv2

    ph, pw = patch.shape[:2]
    yy, xx = np.mgrid[0:ph, 0:pw].astype(np.float32)
    r = np.sqrt(((xx + 0.5) / pw - 0.5) ** 2 / 0.25 + ((yy + 0.5) / ph - 0.5) ** 2 / 0.25)  # 1 on the oval
    alpha = np.clip((1.0 - r) / feather + 0.5, 0.0, 1.0)[:, :, None]
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, feather * min(ph, pw) / 4))[:, :, None]
    sy, sx = max(0, -y), max(0, -x)
    ey, ex = min(ph, canvas.shape[0] - y), min(pw, canvas.shape[1] - x)
    if ey <= sy or ex <= sx:
        return
    dst = canvas[y + sy:y + ey, x + sx:x + ex].astype(np.float32)
    a = alpha[sy:ey, sx:ex]
    canvas[y + sy:y + ey, x + sx:x + ex] = np.clip(a * patch[sy:ey, sx:ex] + (1 - a) * dst, 0, 255).astype(np.uint8)


def paste_tight(canvas: np.ndarray, face: np.ndarray, cx: int, cy: int, width: int) -> tuple:
    """A tight face crop (SFEW 143x181, FERPlus 48x48) ``width`` px wide, centred at (cx, cy).
    The crop is enlarged by 30% with an edge-replicated, blurred surround (hair, neck) before
    blending, so that the face keeps its full size inside the oval; returns the face box."""
    import cv2

    if face.ndim == 2:
        face = cv2.cvtColor(face, cv2.COLOR_GRAY2BGR)
    h = round(face.shape[0] * width / face.shape[1])
    interp = cv2.INTER_AREA if width < face.shape[1] else cv2.INTER_CUBIC
    f = cv2.resize(face, (width, h), interpolation=interp)
    p = max(2, round(0.3 * width))
    surround = cv2.GaussianBlur(cv2.copyMakeBorder(f, p, p, p, p, cv2.BORDER_REPLICATE), (0, 0), p / 3)
    surround[p:p + h, p:p + width] = f
    x, y = cx - width // 2, cy - h // 2
    blend(canvas, surround, x - p, y - p, feather=0.1)
    return x, y, width, h


def paste_astronaut(canvas: np.ndarray, cx: int, cy: int, face_px: int) -> tuple:
    """The astronaut's head and shoulders, scaled so that her face box is ``face_px`` wide and
    centred at (cx, cy); returns that face box."""
    import cv2

    img = cv2.imread(str(ASTRONAUT))
    s = face_px / ASTRONAUT_FACE[2]
    fx, fy, fw, fh = ASTRONAUT_FACE
    # head and shoulders: 1 box side of context around the face, clipped to her photo
    x0, y0 = max(0, fx - fw), max(0, fy - fh // 2)
    x1, y1 = min(img.shape[1], fx + 2 * fw), min(img.shape[0], fy + 2 * fh + fh // 2)
    crop = img[y0:y1, x0:x1]
    big = cv2.resize(crop, (round(crop.shape[1] * s), round(crop.shape[0] * s)),
                     interpolation=cv2.INTER_CUBIC if s > 1 else cv2.INTER_AREA)
    bx, by = round((fx - x0) * s), round((fy - y0) * s)  # face box corner inside ``big``
    x, y = cx - face_px // 2, cy - round(fh * s) // 2
    blend(canvas, big, x - bx, y - by, feather=0.15)
    return x, y, face_px, round(fh * s)


def sfew_faces(n: int, frontal: bool = True) -> list[tuple[str, np.ndarray]]:
    """``n`` SFEW film faces spread evenly over the manifest (all classes), as (name, BGR); with
    ``frontal``, only those the Haar frontal-face cascade finds in their own crop."""
    import cv2

    from pyfer.detect import HaarDetector

    root = DATA / "sfew_train"
    with open(root / "manifest.csv") as f:
        rows = list(csv.DictReader(f))
    haar = HaarDetector() if frontal else None
    out = []
    step = max(1, len(rows) // (2 * n if frontal else n))
    for r in rows[::step]:
        img = cv2.imread(str(root / r["path"]))
        if haar is None or haar(img):
            out.append((f"sfew:{r['path']}", img))
        if len(out) == n:
            break
    return out


def ferplus_faces(n: int) -> list[tuple[str, np.ndarray]]:
    """``n`` FERPlus valid faces (48x48 gray) spread over the split, as (name, gray)."""
    import cv2

    folder = DATA / "ferplus" / "FER2013Valid"
    names = sorted(p.name for p in folder.glob("fer*.png"))
    step = max(1, len(names) // n)
    return [(f"ferplus:{nm}", cv2.imread(str(folder / nm), cv2.IMREAD_GRAYSCALE)) for nm in names[::step][:n]]


def five_faces(name: str, pool: list, rng: np.random.Generator) -> GroupPhoto:
    """Five faces of 75-85 px from ``pool`` scattered over a 1920x1080 frame, apart."""
    img = background(1080, 1920, rng)
    boxes, sources = [], []
    for j, (src, face) in enumerate(pool):
        width = int(rng.integers(75, 86))
        cx = int(220 + j * 370 + rng.integers(-60, 60))
        cy = int(480 + rng.integers(-220, 220))
        boxes.append(paste_tight(img, face, cx, cy, width))
        sources.append(src)
    return GroupPhoto(name, img, boxes, sources)


def build(seed: int = 0, n_five: int = 4, n_ferplus: int = 2) -> list[GroupPhoto]:
    """All group photos (see the module docstring)."""
    rng = np.random.default_rng(seed)
    photos: list[GroupPhoto] = []
    sfew = sfew_faces(5 * n_five + 4)
    fer = ferplus_faces(5 * n_ferplus)

    # a 190 px face and a 60 px face in one photo, at three photo sizes
    for k, (w, h) in enumerate([(640, 480), (1280, 720), (1920, 1080)]):
        img = background(h, w, rng)
        big = paste_astronaut(img, int(w * 0.33), int(h * 0.45), 190)
        src, face = sfew[k]
        small = paste_tight(img, face, int(w * 0.78), int(h * 0.35), 60)
        photos.append(GroupPhoto(f"two_faces_{w}x{h}", img, [big, small], ["astronaut", src]))

    # five faces of about 80 px on a 1080p frame
    for i in range(n_five):
        photos.append(five_faces(f"five_faces_1080p_{i}", sfew[4 + 5 * i:4 + 5 * i + 5], rng))
    for i in range(n_ferplus):
        photos.append(five_faces(f"ferplus_faces_1080p_{i}", fer[5 * i:5 * i + 5], rng))

    # a size ladder on one 1080p frame: where detection with the defaults stops
    img = background(1080, 1920, rng)
    boxes, sources = [], []
    for j, width in enumerate((24, 32, 40, 48, 56, 64, 80, 100)):
        src, face = sfew[(7 * j + 1) % len(sfew)]
        boxes.append(paste_tight(img, face, 140 + j * 230, 540 + (j % 2) * 160 - 80, width))
        sources.append(src)
    photos.append(GroupPhoto("size_ladder_1080p", img, boxes, sources))
    return photos


def match(truth: list, found: list, min_iou: float = 0.3) -> tuple[list[bool], int]:
    """Greedy one-to-one IoU matching: (found? per truth box, number of unmatched detections)."""
    from pyfer.video import iou

    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    hit, used = [False] * len(truth), set()
    for v, i, j in pairs:
        if v < min_iou:
            break
        if not hit[i] and j not in used:
            hit[i] = True
            used.add(j)
    return hit, len(found) - len(used)


def main(argv=None) -> int:
    import argparse

    import cv2

    ap = argparse.ArgumentParser(description="Write the synthetic group photos (PNGs) and truth.json "
                                 "(the face boxes per photo) to OUT_DIR.")
    ap.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    out = ap.parse_args(argv).out_dir
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    for p in build():
        cv2.imwrite(str(out / f"{p.name}.png"), p.image)
        truth[p.name] = {"faces": [list(b) for b in p.faces], "sources": p.sources}
    write_file((out / "truth.json"), json.dumps(truth, indent=1))
    print(f"wrote {len(truth)} photos and truth.json to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
