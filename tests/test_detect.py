"""Face detection, box checks, cropping and eye alignment (no engine needed)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT, ASTRONAUT_FACE, iou, paste
from pyfer.detect import EyeAligner, HaarDetector, check_box, clip_box, crop_face, get_detector


@pytest.fixture(scope="module")
def haar():
    return HaarDetector()


def test_haar_astronaut(haar):
    boxes = haar(cv2.imread(str(ASTRONAUT)))
    assert len(boxes) == 1 and iou(boxes[0], ASTRONAUT_FACE) > 0.7


def test_haar_recall_on_pasted_faces(haar, sfew_faces):
    # real film faces at photo-like sizes on a 640x480 canvas
    hits = []
    for i, face in enumerate(sfew_faces):
        canvas = np.full((480, 640, 3), 90, np.uint8)
        truth = paste(canvas, face, 40 + 37 * i, 60 + 17 * i, 70 + 8 * i)
        hits.append(max((iou(truth, b) for b in haar(canvas)), default=0.0) > 0.4)
    assert np.mean(hits) >= 0.6, hits


def test_haar_min_face_and_blank(haar, sfew_faces):
    assert haar(np.full((480, 640), 128, np.uint8)) == []
    assert haar(np.zeros((10, 10), np.uint8)) == []  # smaller than the detector window
    # a face below 10% of the shorter side is deliberately not searched for (too small to classify)
    canvas = np.full((1000, 1000, 3), 90, np.uint8)
    paste(canvas, sfew_faces[1], 400, 400, 60)
    assert haar(canvas) == []


def test_get_detector():
    assert get_detector(None) is None
    f = lambda img: []  # noqa: E731
    assert get_detector(f) is f
    assert isinstance(get_detector("haar"), HaarDetector)
    with pytest.raises(ValueError, match="unknown detector"):
        get_detector("yolo")
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install mediapipe"):
            get_detector("mediapipe")


def test_check_and_clip_box():
    assert check_box((1.4, 2.6, 10, 20), (100, 100)) == (1, 3, 10, 20)
    assert check_box(np.array([90, 90, 50, 50]), (100, 100)) == (90, 90, 50, 50)
    for bad in [(100, 0, 5, 5), (0, 100, 5, 5), (-5, 0, 5, 5), (0, 0, 0, 5), (0, 0, 5, -1),
                (0, 0, 5), (0, 0, 5, 5, 5), (0, 0, float("inf"), 5), "abcd", 3, (0, 0, 10**9, 10**9)]:
        with pytest.raises(ValueError):
            check_box(bad, (100, 100))
    assert clip_box((-10, 90, 30, 30), (100, 100)) == (0, 90, 20, 10)


def test_crop_face_framing():
    img = np.arange(200 * 300, dtype=np.uint32).reshape(200, 300).astype(np.uint8)
    c = crop_face(img, (100, 50, 40, 40), margin=0.0)
    np.testing.assert_array_equal(c, img[50:90, 100:140])  # margin 0 is the box itself
    assert crop_face(img, (100, 50, 40, 40), margin=0.25).shape == (60, 60)
    assert crop_face(img, (100, 50, 30, 40), margin=0.0).shape == (40, 40)  # square around the centre
    # outside the image: edge replication, no error
    edge = crop_face(img, (-20, -20, 40, 40), margin=0.0)
    assert edge.shape == (40, 40)
    assert (edge[:20, :20] == img[0, 0]).all()


def test_crop_face_rotation_levels():
    # a horizontal bar rotated by +20 deg (counter-clockwise) comes back level with angle=-20
    img = np.zeros((200, 200), np.uint8)
    img[98:102, 50:150] = 255
    m = cv2.getRotationMatrix2D((100, 100), 20, 1.0)
    tilted = cv2.warpAffine(img, m, (200, 200))
    level = crop_face(tilted, (50, 50, 100, 100), 0.0, angle=-20)
    rows = np.where(level.max(1) > 128)[0]
    assert rows.max() - rows.min() <= 6  # a level bar spans few rows; tilted it spans ~35


def test_eye_aligner_measures_roll(haar, sfew_rows):
    # rotate real faces by +12 deg: the measured roll changes by about -12 where eyes are found
    aligner = EyeAligner()
    deltas = []
    for path, _ in sfew_rows[::29]:
        g = cv2.copyMakeBorder(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), 60, 60, 60, 60, cv2.BORDER_REPLICATE)
        h, w = g.shape
        rot = cv2.warpAffine(g, cv2.getRotationMatrix2D((w / 2, h / 2), 12, 1.0), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
        b0, b1 = haar(g), haar(rot)
        if b0 and b1:
            a0, a1 = aligner.angle(g, b0[0]), aligner.angle(rot, b1[0])
            if a0 and a1:
                deltas.append(a1 - a0)
    assert len(deltas) >= 3, deltas
    assert -18 < np.median(deltas) < -6, deltas


def test_eye_aligner_falls_back():
    aligner = EyeAligner()
    assert aligner.angle(np.full((200, 200), 128, np.uint8), (50, 50, 100, 100)) == 0.0
    assert aligner.angle(np.full((200, 200), 128, np.uint8), (190, 190, 5, 5)) == 0.0
