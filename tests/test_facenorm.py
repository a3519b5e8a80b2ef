"""pyfer.facenorm: the one face normalization shared by training and inference."""
from __future__ import annotations

import numpy as np
import pytest

from pyfer.facenorm import FaceFraming, normalize_face, similarity_transform

TEMPLATE = np.asarray(FaceFraming().template)


def synthetic_face(size=200, angle_deg=0.0, scale=1.0, centre=(100.0, 100.0)):
    """An image whose five 'landmarks' are bright dots placed by a known similarity transform."""
    import cv2

    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (TEMPLATE - 0.5) * 80 * scale @ rot.T + np.asarray(centre)
    img = np.zeros((size, size), np.uint8)
    for x, y in pts:
        cv2.circle(img, (int(round(x)), int(round(y))), max(2, int(round(3 * scale))), 255, -1)
    return img, pts.astype(np.float32)


def test_similarity_transform_recovers_a_known_map():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a, k, t = 0.3, 1.7, np.array([5.0, -3.0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = k * src @ rot.T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], k * rot, atol=1e-9) and np.allclose(m[:, 2], t, atol=1e-9)


@pytest.mark.parametrize("angle", [-25.0, 0.0, 30.0])
@pytest.mark.parametrize("scale", [0.5, 1.0, 4.0])
def test_align_puts_the_landmarks_on_the_template(angle, scale):
    import cv2

    img, pts = synthetic_face(size=int(220 * max(scale, 1)), angle_deg=angle, scale=scale,
                              centre=(110 * max(scale, 1),) * 2)
    crop = normalize_face(img, 64, (0, 0, 10, 10), pts, FaceFraming("align"))
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    # every dot lands where the template says
    n, lab, stats, cent = cv2.connectedComponentsWithStats((crop > 100).astype(np.uint8))
    found = cent[1:]
    want = TEMPLATE * 64
    d = np.linalg.norm(found[:, None] - want[None], axis=2).min(0)
    assert len(found) == 5 and d.max() < 1.5, (found, want)


def test_box_mode_frames_the_box_and_ignores_landmarks():
    img = np.zeros((100, 100), np.uint8)
    img[20:60, 30:70] = 200  # the 'face' box (30, 20, 40, 40)
    f = FaceFraming("box", box_scale=1.0, box_shift=(0.0, 0.0))
    crop = normalize_face(img, 40, (30, 20, 40, 40), np.zeros((5, 2)), f)
    assert crop.min() >= 190  # exactly the box, nothing of the dark surround


def test_faces_touching_the_border_repeat_the_edge():
    img = np.full((50, 50), 77, np.uint8)
    crop = normalize_face(img, 64, (-20, -20, 60, 60), None, FaceFraming("box"))
    assert (crop == 77).all()


@pytest.mark.parametrize("side", [512, 150])
def test_a_big_face_is_shrunk_without_aliasing(side):
    """A 1-px checkerboard face 8x (and 2.3x) larger than the crop averages to grey, not to a moire."""
    img = ((np.indices((600, 600)).sum(0) % 2) * 255).astype(np.uint8)
    crop = normalize_face(img, 64, (44, 44, side, side), None, FaceFraming("box", box_scale=1.0))
    assert abs(float(crop.mean()) - 127.5) < 3 and crop.std() < 10


def test_a_tall_box_is_framed_by_its_longer_side_and_shifted_by_its_height():
    """Box framing takes a square of the box's longer side (a 40 x 80 box: 80, so the white box
    fills the middle half of the crop's columns and every row), and moves it by box_shift times
    the box's own width (x) and height (y)."""
    img = np.zeros((300, 300), np.uint8)
    img[100:180, 130:170] = 255  # the box (130, 100, 40, 80)
    crop = normalize_face(img, 64, (130, 100, 40, 80), None, FaceFraming("box", box_scale=1.0, box_shift=(0, 0)))
    assert (crop[:, :12] == 0).all() and (crop[:, -12:] == 0).all()
    assert (crop[2:-2, 20:44] == 255).all()
    # shifted down by a quarter of the height (20 px): the box's bottom edge moves up to row 48
    crop = normalize_face(img, 64, (130, 100, 40, 80), None,
                          FaceFraming("box", box_scale=1.0, box_shift=(0, 0.25)))
    assert (crop[:46, 24:40] == 255).all() and (crop[50:, :] == 0).all()
    # sideways by a quarter of the width (10 px = 8 crop pixels): the white columns move left
    crop = normalize_face(img, 64, (130, 100, 40, 80), None,
                          FaceFraming("box", box_scale=1.0, box_shift=(0.25, 0)))
    assert (crop[10:54, 10:38] == 255).all() and (crop[:, 42:] == 0).all() and (crop[:, :6] == 0).all()


def test_framing_round_trips_through_metadata_and_rejects_nonsense():
    f = FaceFraming("box", box_scale=1.2, box_shift=(0.0, 0.05))
    assert FaceFraming.from_dict(f.to_dict()) == f
    assert FaceFraming.from_dict(None) == FaceFraming()
    with pytest.raises(ValueError):
        FaceFraming("crop")
    with pytest.raises(ValueError):
        FaceFraming(template=((0, 0),))
    with pytest.raises(ValueError):
        FaceFraming(box_scale=float("nan"))
    # a weights file's metadata: a box shift that is no (x, y) pair was taken, and failed later
    for bad in ({"box_shift": [0.1]}, {"box_shift": [0, 0, 0]}, {"box_shift": [0, float("inf")]},
                {"template": [[0.3, 0.4, 0.5]] * 5}):
        with pytest.raises(ValueError, match="box_shift|template"):
            FaceFraming.from_dict(bad)


def test_default_template_is_mirror_symmetric():
    """Flip averaging relies on it: the mirrored crop is the crop of the mirrored face."""
    t = TEMPLATE
    mirrored = np.column_stack([1 - t[:, 0], t[:, 1]])[[1, 0, 2, 4, 3]]
    assert np.allclose(mirrored, t)


def umeyama_by_svd(src, dst):
    """The plain reference: Umeyama (1991) through the SVD of the cross-covariance, no reflection."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    rot = u @ np.diag([1.0, sign]) @ vt
    scale = (sig[0] + sign * sig[1]) / ((s ** 2).sum() / len(src))
    return np.column_stack([scale * rot, mu_d - scale * rot @ mu_s])


def test_closed_form_similarity_equals_umeyama():
    """Noisy landmarks, any turn and scale, and mirrored targets (the best map without reflection)."""
    rng = np.random.default_rng(3)
    for i in range(500):
        src = rng.uniform(-200, 800, (5, 2))
        dst = rng.normal(0, 50, (5, 2)) if i % 4 == 0 else src @ rng.normal(0, 1, (2, 2)).T + rng.normal(0, 5, (5, 2))
        ref = umeyama_by_svd(src, dst)
        np.testing.assert_allclose(similarity_transform(src, dst), ref, rtol=0, atol=1e-9 * (1 + np.abs(ref).max()))
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), TEMPLATE)


def random_detections(rng, h, w, n):
    """Faces of 5 px to 2.5 image sides, anywhere from well outside to inside, turned up to 85 deg."""
    for i in range(n):
        side = rng.uniform(5, 2.5 * max(h, w))
        centre = rng.uniform([-0.3 * w, -0.3 * h], [1.3 * w, 1.3 * h])
        a = rng.uniform(-1.5, 1.5)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        lm = (TEMPLATE - 0.5) * side @ rot.T + centre + rng.normal(0, 0.03 * side, (5, 2))
        box = (centre[0] - side / 2, centre[1] - side / 2, side, side)
        yield box, (lm if i % 3 else None)


@pytest.mark.parametrize("shape", [(480, 640, 3), (48, 48, 3), (1080, 1920, 3), (200, 300, 4), (120, 90)])
def test_region_conversion_equals_the_whole_gray_image(shape):
    """normalize_face converts only the region the crop reads to gray: bit-identical to converting
    the whole image, and (no shrink) to one warp of the whole gray image."""
    import cv2

    from pyfer.facenorm import framing_transform
    from pyfer.preprocess import to_gray

    rng = np.random.default_rng(shape[0])
    image = cv2.resize(rng.integers(0, 256, (60, 80, shape[2] if len(shape) == 3 else 1), np.uint8),
                       (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)  # smooth, with detail
    image = image.reshape(shape)
    gray = to_gray(image)
    for box, lm in random_detections(rng, shape[0], shape[1], 300):
        framing = FaceFraming("align" if lm is not None else "box")
        crop = normalize_face(image, 64, box, lm, framing)
        np.testing.assert_array_equal(crop, normalize_face(gray, 64, box, lm, framing))
        m = framing_transform(64, box, lm, framing)
        if np.sqrt(abs(np.linalg.det(m[:, :2]))) >= 0.5:
            whole = cv2.warpAffine(gray, m, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            np.testing.assert_array_equal(crop, whole)


@pytest.mark.parametrize("box", [(900, 100, 560, 560), (1300, 500, 600, 600), (-200, 700, 600, 600)])
def test_a_shrunk_big_face_is_the_crop_of_the_same_place(box):
    """A face over twice the crop's size is shrunk before the warp: on a smooth image the crop is
    what warping the whole image gives (off the diagonal, and clipped by the right or left edge into
    a region that is not square; x and y swapped in the shrink's map moved the crop by hundreds of
    pixels, a fifth mutation review, session 50)."""
    import cv2

    from pyfer.facenorm import framing_transform

    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (12, 16), dtype=np.uint8), (1600, 1200), interpolation=cv2.INTER_CUBIC)
    img = cv2.GaussianBlur(img, (0, 0), 20)
    framing = FaceFraming("box", box_scale=1.0)
    crop = normalize_face(img, 64, box, None, framing)
    m = framing_transform(64, box, None, framing)
    want = cv2.warpAffine(img, m, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    assert np.abs(crop.astype(int) - want).mean() < 6, np.abs(crop.astype(int) - want).mean()  # (measured: 3.7-4.2)
