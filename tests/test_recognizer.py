"""pyfer.Recognizer end to end on real faces (examples/astronaut.png, SFEW, FERPlus) and bad input."""
from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np
import pytest

import pyfer
from conftest import ASTRONAUT, ASTRONAUT_FACE, REPO, ferplus_valid, iou, paste
from pyfer.detect import face_order
from pyfer.facenorm import FaceFraming

sys.path.insert(0, str(REPO / "scripts"))
import group_photos  # noqa: E402


def check_face(face, class_names=pyfer.EMOTIONS, landmarks=True):
    assert isinstance(face, pyfer.Face)
    assert len(face.box) == 4 and all(type(v) is int for v in face.box)
    assert tuple(face.scores) == tuple(class_names)
    assert sum(face.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= v <= 1.0 for v in face.scores.values())
    assert face.label == max(face.scores, key=face.scores.get)
    assert face.confidence == pytest.approx(face.scores[face.label])
    if landmarks:
        assert len(face.landmarks) == 5 and all(len(p) == 2 and all(type(v) is float for v in p)
                                                for p in face.landmarks)
        assert type(face.detection_score) is float and 0.0 < face.detection_score <= 1.0
    else:
        assert face.landmarks is None and face.detection_score is None
    d = json.loads(json.dumps(face.to_dict()))  # JSON-ready
    assert d["box"] == list(face.box) and (d["landmarks"] is None) == (face.landmarks is None)


def test_astronaut_one_face(recognizer, trained):
    faces = recognizer.predict(ASTRONAUT)
    assert len(faces) == 1, faces  # the shuttle in the background is not a face
    check_face(faces[0])
    assert iou(faces[0].box, ASTRONAUT_FACE) > 0.5
    (rx, ry), (lx, ly) = faces[0].landmarks[:2]  # her right eye is on the image's left
    x, y, w, h = faces[0].box
    assert x < rx < lx < x + w and y < ry < y + h / 2
    if trained:
        assert faces[0].label == "happiness"  # she smiles broadly


def test_a_face_cut_by_the_edge_has_its_box_clipped_and_its_landmarks_not(recognizer):
    # the astronaut with her right eye just cut off: the box stops at the image's edge; the
    # eye is where the detector puts it, outside, so that the face is still aligned by it
    cut = np.ascontiguousarray(cv2.imread(ASTRONAUT)[:, 140:])
    (face,) = recognizer.predict(cut)
    check_face(face)
    assert face.box[0] == 0
    (rx, _), (lx, _) = face.landmarks[:2]
    assert rx < 0 < lx < face.box[2]


def test_face_crops_are_what_predict_classifies(recognizer, photos):
    image = photos["five_faces_1080p_0"].image
    faces = recognizer.predict(image)
    crops = recognizer.face_crops(image)
    size = recognizer.spec.input_size
    assert crops.dtype == np.uint8 and crops.shape == (len(faces), size, size) and len(faces) >= 2
    probs = recognizer.classify(crops)
    for face, p in zip(faces, probs):  # same faces, same order, same answers
        assert np.allclose([face.scores[c] for c in recognizer.class_names], p, atol=1e-6)
    blank = np.full((90, 120, 3), 128, np.uint8)
    assert recognizer.face_crops(blank).shape == (0, size, size)


def test_face_crops_without_a_detector_is_the_whole_image(weights_path):
    import pyfer

    rec = pyfer.Recognizer(weights_path, detector=None)
    crops = rec.face_crops(ASTRONAUT)
    assert crops.shape == (1, rec.spec.input_size, rec.spec.input_size)
    face = rec.predict(ASTRONAUT)[0]
    assert np.allclose([face.scores[c] for c in rec.class_names], rec.classify(crops)[0], atol=1e-6)


def test_haar_still_available(engine_module, weights_path, trained):
    rec = pyfer.Recognizer(weights_path, detector="haar", threads=1)
    (face,) = rec.predict(ASTRONAUT)
    check_face(face, landmarks=False)
    assert iou(face.box, ASTRONAUT_FACE) > 0.7
    if trained:
        assert face.label == "happiness"


def test_flip_averages_the_logits_of_each_face_and_its_mirror(engine_module, weights_path, photos):
    """flip=False must score the crops alone and flip=True the mean of their and their mirrors' logits."""
    from pyfer.engine import softmax
    from pyfer.preprocess import normalize

    img = photos["five_faces_1080p_0"].image
    rec = pyfer.Recognizer(weights_path, threads=1)
    x = normalize(rec.face_crops(img), rec.spec)
    logits = rec.engine.forward(x).astype(np.float64)
    mirrored = rec.engine.forward(np.ascontiguousarray(x[..., ::-1])).astype(np.float64)
    want = {False: softmax(logits, axis=1), True: softmax((logits + mirrored) / 2, axis=1)}
    assert np.abs(want[True] - want[False]).max() > 1e-2  # the two differ: the check can tell them apart
    for flip in (False, True):
        faces = pyfer.Recognizer(weights_path, threads=1, flip=flip).predict(img)
        np.testing.assert_allclose([list(f.scores.values()) for f in faces], want[flip], rtol=0, atol=1e-5,
                                   err_msg=f"flip={flip}")


def _box_framing(margin: float) -> FaceFraming:
    """The framing of a landmark-free box enlarged by ``margin`` of its side on each side."""
    return FaceFraming(mode="box", box_scale=1 + 2 * margin, box_shift=(0.0, 0.0))


def test_haar_margin_frames_the_detected_boxes(engine_module, weights_path):
    """Recognizer(margin=m) must crop Haar's boxes enlarged by m per side (default: Haar's own 0.05)."""
    from pyfer.detect import HaarDetector
    from pyfer.facenorm import normalize_face

    img = cv2.imread(str(ASTRONAUT))
    crops = {}
    for margin in (None, 0.0, 0.3):
        rec = pyfer.Recognizer(weights_path, detector="haar", threads=1, margin=margin)
        framing = _box_framing(HaarDetector.box_margin if margin is None else margin)
        want = [normalize_face(img, rec.spec.input_size, box, None, framing) for box, _, _ in rec.detect(img)]
        crops[margin] = rec.face_crops(img)
        assert len(want) == 1
        np.testing.assert_array_equal(crops[margin], np.stack(want), err_msg=f"margin={margin}")
    assert np.abs(crops[0.0].astype(int) - crops[0.3]).mean() > 10  # the margin changes the crop


def test_given_boxes_use_the_weights_box_framing_not_haars_margin(engine_module, weights_path):
    """A caller's box is not a Haar box: predict(boxes=) with Haar must frame it as the weights say."""
    from pyfer.facenorm import normalize_face

    img = cv2.imread(str(ASTRONAUT))
    rec = pyfer.Recognizer(weights_path, detector="haar", threads=1)
    (face,) = rec.predict(img, boxes=[ASTRONAUT_FACE])
    size = rec.spec.input_size
    weights_box = FaceFraming.from_dict({**rec.framing.to_dict(), "mode": "box"})
    want = rec.classify(normalize_face(img, size, ASTRONAUT_FACE, None, weights_box)[None])[0]
    np.testing.assert_allclose(list(face.scores.values()), want, rtol=0, atol=1e-6)
    haar = rec.classify(normalize_face(img, size, ASTRONAUT_FACE, None, _box_framing(rec.detector.box_margin))[None])
    assert np.abs(haar[0] - want).max() > 1e-4  # Haar's framing would give other scores (8e-4 measured)


def test_group_photo_largest_first(recognizer, photos):
    """A 190 px and a 60 px face: both come back, the big one first (documented order)."""
    for name in ("two_faces_640x480", "two_faces_1280x720", "two_faces_1920x1080"):
        p = photos[name]
        faces = recognizer.predict(p.image)
        assert len(faces) == 2, (name, faces)
        assert iou(faces[0].box, p.faces[0]) > 0.3 and iou(faces[1].box, p.faces[1]) > 0.3, name
        for f in faces:
            check_face(f)


def test_five_faces_1080p(recognizer, photos):
    batch = recognizer.predict_batch([p.image for n, p in photos.items() if n.startswith("five_faces")])
    for faces, p in zip(batch, [p for n, p in photos.items() if n.startswith("five_faces")]):
        hit, extra = group_photos.match(p.faces, [f.box for f in faces])
        assert all(hit) and extra == 0, (p.name, hit)
        keys = [face_order(f.box, f.detection_score, recognizer.detector.sure_score) for f in faces]
        assert keys == sorted(keys)


def test_order_of_a_custom_detectors_faces(engine_module, weights_path):
    """Any detector's faces come largest first (equal areas: surest first), whatever it returns;
    faces it scores under its ``sure_score``, where it has one, after the others."""
    class Det:
        def __init__(self, box, score):
            self.box, self.score = box, score

    out = [(10, 10, 30, 30), Det((100, 50, 80, 80), 0.7), Det((200, 60, 80, 80), 0.9), (5, 150, 120, 100)]
    rec = pyfer.Recognizer(weights_path, detector=lambda img: out, threads=1)
    faces = rec.predict(ASTRONAUT)
    assert [f.box for f in faces] == [(5, 150, 120, 100), (200, 60, 80, 80), (100, 50, 80, 80), (10, 10, 30, 30)]
    assert [f.detection_score for f in faces] == [None, 0.9, 0.7, None]
    class Sure:
        sure_score = 0.8

        def __call__(self, img):
            return out
    faces = pyfer.Recognizer(weights_path, detector=Sure(), threads=1).predict(ASTRONAUT)
    assert [f.box for f in faces] == [(5, 150, 120, 100), (200, 60, 80, 80), (10, 10, 30, 30), (100, 50, 80, 80)]
    # min_face and score_threshold filter a callable's faces too (scoreless faces pass the threshold;
    # min_face is the longer side, as for YuNet: a 60 x 30 box passes 50)
    rec = pyfer.Recognizer(weights_path, detector=lambda img: out + [(200, 200, 60, 30)], threads=1,
                           min_face=50, score_threshold=0.8)
    assert [f.box for f in rec.predict(ASTRONAUT)] == [(5, 150, 120, 100), (200, 60, 80, 80), (200, 200, 60, 30)]


def test_min_face_and_score_threshold(engine_module, weights_path, photos):
    p = photos["two_faces_1280x720"]
    big_only = pyfer.Recognizer(weights_path, threads=1, min_face=100).predict(p.image)
    assert len(big_only) == 1 and iou(big_only[0].box, p.faces[0]) > 0.3
    both = pyfer.Recognizer(weights_path, threads=1).predict(p.image)
    assert len(both) == 2 and both[0].detection_score != both[1].detection_score
    surer = max(both, key=lambda f: f.detection_score)
    # between the two faces' scores: exactly the surer face stays
    mid = (both[0].detection_score + both[1].detection_score) / 2
    strict = pyfer.Recognizer(weights_path, threads=1, score_threshold=mid).predict(p.image)
    assert [(f.box, f.detection_score) for f in strict] == [(surer.box, surer.detection_score)]
    for bad in ({"min_face": 0}, {"min_face": "big"}, {"score_threshold": 1.0}, {"score_threshold": -0.1}):
        with pytest.raises(ValueError):
            pyfer.Recognizer(weights_path, threads=1, **bad)
    with pytest.raises(ValueError, match="no scores"):
        pyfer.Recognizer(weights_path, detector="haar", score_threshold=0.5)


def test_landmarks_map_faces_through_facenorm(engine_module, weights_path, photos):
    """Every face is framed by pyfer.facenorm.normalize_face on its detection: predict equals
    classify on the normalised crops, for the aligned and the box framing."""
    from pyfer.facenorm import normalize_face
    from pyfer.preprocess import to_gray

    img = photos["five_faces_1080p_0"].image
    for mode in ("align", "box"):
        rec = pyfer.Recognizer(weights_path, threads=1, framing=mode)
        assert rec.framing.mode == mode
        faces = rec.predict(img)
        dets = rec.detect(img)
        assert [f.box for f in faces] == [d[0] for d in dets]  # all inside: nothing clipped
        gray = to_gray(img)
        crops = np.stack([normalize_face(gray, rec.spec.input_size, b, lm if mode == "align" else None,
                                         rec.framing if mode == "align" else rec.box_framing(True))
                          for b, lm, _ in dets])
        np.testing.assert_allclose(rec.classify(crops), [list(f.scores.values()) for f in faces], atol=1e-5)


def test_framing_from_weights_metadata(engine_module, weights_path, tmp_path):
    """The framing travels in the weights' metadata ("framing"); absent, FaceFraming() applies."""
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    from pyfer.weights_file import save_checked

    with safe_open(str(weights_path), "np") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    framing = FaceFraming(mode="box", box_scale=1.2, box_shift=(0.0, 0.05))
    inner = json.loads(meta["pyfer"]) if "pyfer" in meta else None
    if inner is not None:
        inner["framing"] = framing.to_dict()
        meta["pyfer"] = json.dumps(inner)
    else:
        pytest.skip("unknown metadata layout")
    out = tmp_path / "framed.safetensors"
    save_checked(tensors, out, meta)
    assert pyfer.Recognizer(out, threads=1).framing == framing
    stripped = dict(inner)
    stripped.pop("framing")
    meta["pyfer"] = json.dumps(stripped)
    save_checked(tensors, out, meta)
    assert pyfer.Recognizer(out, threads=1).framing == FaceFraming()
    assert pyfer.Recognizer(out, threads=1, align=False).framing.mode == "box"


def test_pil_images(recognizer):
    """PIL images work without PIL being a dependency of pyfer (RGB order is handled)."""
    Image = pytest.importorskip("PIL.Image")
    bgr = cv2.imread(str(ASTRONAUT))
    ref = recognizer.predict(bgr)
    rgb = Image.open(ASTRONAUT)
    variants = {m: rgb.convert(m) for m in ("RGB", "RGBA", "L", "P", "CMYK", "I;16")}
    if "I;16" in variants:  # 16-bit gray: 0..65535
        variants["I;16"] = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    # 16-bit data in 32-bit mode I (how older Pillow versions open 16-bit PNGs)
    variants["I (16-bit)"] = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.int32) * 257, "I")
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    # the array holding each mode's pixels (OpenCV order): the scores must be exactly its scores
    same_pixels = {"RGB": bgr, "RGBA": bgr, "CMYK": bgr, "I;16": gray, "I (16-bit)": gray,
                   "L": np.asarray(variants["L"]), "P": np.asarray(variants["P"].convert("RGB"))[:, :, ::-1]}
    for mode, im in variants.items():
        faces = recognizer.predict(im)
        assert len(faces) == 1 and iou(faces[0].box, ref[0].box) > 0.8, mode
        scores = np.array(list(faces[0].scores.values()))
        want = np.array(list(recognizer.predict(same_pixels[mode])[0].scores.values()))
        # exact: a channel swap moves these scores by ~3e-4, less than gray vs colour does (5e-4)
        np.testing.assert_allclose(scores, want, rtol=0, atol=1e-6, err_msg=mode)
        if mode in ("L", "I;16", "I (16-bit)"):  # gray vs colour: 5.3e-4 measured (other box, other pixels)
            assert np.abs(scores - np.array(list(ref[0].scores.values()))).max() < 2e-3, mode
    # the channel order matters: a PIL RGB image equals the BGR array, not the RGB array
    from pyfer.recognizer import load_image

    np.testing.assert_array_equal(load_image(rgb), bgr)
    assert recognizer.classify([rgb]).shape == (1, 8)


def test_exif_orientation(recognizer, tmp_path):
    """A phone JPEG stored sideways with an EXIF orientation tag is turned upright on load."""
    Image = pytest.importorskip("PIL.Image")
    bgr = cv2.imread(str(ASTRONAUT))[:, :300]  # not square: a turn shows in the shape
    sideways = cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    im = Image.fromarray(cv2.cvtColor(sideways, cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif.tobytes(), quality=95)
    faces = recognizer.predict(path)
    assert len(faces) == 1 and iou(faces[0].box, ASTRONAUT_FACE) > 0.5
    # a PIL image is taken as its pixels are (boxes match the image the caller holds); the
    # documented way to the upright face is ImageOps.exif_transpose
    from PIL import ImageOps

    with Image.open(path) as opened:
        assert opened.size == (bgr.shape[0], bgr.shape[1])  # still sideways here
        from_pil = recognizer.predict(ImageOps.exif_transpose(opened))
    assert len(from_pil) == 1 and iou(from_pil[0].box, faces[0].box) > 0.9


def test_input_forms_agree(recognizer):
    bgr = cv2.imread(str(ASTRONAUT))
    ref = recognizer.predict(str(ASTRONAUT))
    variants = {
        "Path": ASTRONAUT,
        "bgr": bgr,
        "gray": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "gray HxWx1": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None],
        "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "float [0,1]": bgr.astype(np.float32) / 255.0,
        # the overshoot of a cubic resize or a gain, above 1 and below 0 (read as black before)
        "float [0,1] overshoot": np.clip(bgr.astype(np.float32) / 255.0 * 1.1 - 0.02, -0.05, 1.1),
        "uint16": bgr.astype(np.uint16) * 257,
        "uint16 with 8-bit values": bgr.astype(np.uint16),  # shifted down to black before
        # sensor data in 16-bit files (10-bit found no face before, 12-bit said happiness 0.54)
        **{f"uint16 with {bits}-bit values": (bgr.astype(np.uint16) << (bits - 8))
           | np.random.default_rng(bits).integers(0, 1 << (bits - 8), bgr.shape, dtype=np.uint16)
           for bits in (10, 12, 14)},
        "non-contiguous": np.ascontiguousarray(bgr[:, ::-1])[:, ::-1],
    }

    def scores(image):
        return np.array(list(recognizer.predict(image)[0].scores.values()))

    # the uint8 pixels each variant stands for: its scores must be exactly theirs (a channel swap
    # moves them by ~3e-4, less than gray vs colour does)
    same_pixels = {name: bgr for name in variants}
    same_pixels.update({"gray": variants["gray"], "gray HxWx1": variants["gray"], "float [0,1] overshoot":
                        np.rint(np.clip(variants["float [0,1] overshoot"], 0, 1) * 255).astype(np.uint8)})
    b = np.array(list(ref[0].scores.values()))
    assert np.abs(scores(variants["gray"]) - b).max() < 2e-3  # 5.3e-4 measured (other box, other pixels)
    for name, image in variants.items():
        faces = recognizer.predict(image)
        assert len(faces) == 1, name
        assert iou(faces[0].box, ref[0].box) > 0.9, name
        if same_pixels[name] is image or name == "Path":  # the reference itself: nothing to compare
            continue
        a = np.array(list(faces[0].scores.values()))
        np.testing.assert_allclose(a, scores(same_pixels[name]), rtol=0, atol=1e-6, err_msg=name)


def test_uint16_is_shifted_by_the_bit_depth_that_holds_its_maximum():
    from pyfer.recognizer import as_uint8_image, uint16_shift

    assert [uint16_shift(m) for m in (0, 255, 256, 1023, 1024, 4095, 4096, 16383, 16384, 65535)] == \
        [0, 0, 2, 2, 4, 4, 6, 6, 8, 8]
    twelve_bit = np.array([[0, 16, 4095]], np.uint16)
    np.testing.assert_array_equal(as_uint8_image(twelve_bit), [[0, 1, 255]])
    # 12-bit colour with a 16-bit opaque alpha: the colour as without alpha, the alpha opaque
    bgra = np.dstack([np.repeat(twelve_bit[:, :, None], 3, axis=2), np.full((1, 3), 65535, np.uint16)])
    np.testing.assert_array_equal(as_uint8_image(bgra)[:, :, 0], [[0, 1, 255]])
    np.testing.assert_array_equal(as_uint8_image(bgra)[:, :, 3], [[255, 255, 255]])


def test_boxes_skip_detection(engine_module, weights_path):
    def no_call(image):
        raise AssertionError("detector must not run when boxes are given")

    rec = pyfer.Recognizer(weights_path, detector=no_call, threads=1)
    faces = rec.predict(ASTRONAUT, boxes=[ASTRONAUT_FACE, [0, 0, 50.0, 60.0]])
    assert [f.box for f in faces] == [ASTRONAUT_FACE, (0, 0, 50, 60)]
    assert rec.predict(ASTRONAUT, boxes=[]) == []
    # a box reaching outside the image is allowed (clipped for reporting, edge-filled for the crop)
    (f,) = rec.predict(ASTRONAUT, boxes=[(300, 300, 50, 50)])
    assert f.box == (300, 300, 20, 20)


def test_custom_detector_and_whole_image(engine_module, weights_path, sfew_faces):
    rec = pyfer.Recognizer(weights_path, detector=lambda img: [(10, 20, 30, 40)], threads=1)
    (f,) = rec.predict(sfew_faces[0])
    assert f.box == (10, 20, 30, 40) and f.landmarks is None and f.detection_score is None
    # a callable may return pyfer's Detection objects (landmarks and score come through)
    from pyfer.yunet import YuNetDetector

    yn = YuNetDetector()
    rec = pyfer.Recognizer(weights_path, detector=lambda img: yn(img), threads=1)
    (f,) = rec.predict(ASTRONAUT)
    check_face(f)
    whole = pyfer.Recognizer(weights_path, detector=None, threads=1)
    (f,) = whole.predict(sfew_faces[0])
    h, w = sfew_faces[0].shape[:2]
    assert f.box == (0, 0, w, h)
    # detector=None is classify() on the whole image
    p = whole.classify([sfew_faces[0]])[0]
    np.testing.assert_allclose(list(f.scores.values()), p, atol=1e-6)


def test_no_face_returns_empty(recognizer):
    bgr = cv2.imread(str(ASTRONAUT))
    assert recognizer.predict(bgr[200:, :150]) == []  # flag and spacesuit, no face
    assert recognizer.predict(np.full((240, 320), 128, np.uint8)) == []


def test_tight_face_crop_found(recognizer, sfew_faces, fer_faces):
    # SFEW and FERPlus crops end at the face outline; small crops are searched enlarged
    found = [bool(recognizer.predict(f)) for f in sfew_faces]
    assert np.mean(found) >= 0.9, found
    found = [bool(recognizer.predict(f)) for f in fer_faces[0]]
    assert np.mean(found) >= 0.95, found


def test_faces_in_a_scene(recognizer, sfew_faces):
    canvas = group_photos.background(480, 640, np.random.default_rng(3))
    truth = [group_photos.paste_tight(canvas, sfew_faces[1], 120, 200, 120),
             group_photos.paste_tight(canvas, sfew_faces[3], 460, 240, 110)]
    faces = recognizer.predict(canvas)
    for t in truth:
        assert max(iou(t, f.box) for f in faces) > 0.4, (t, faces)


def test_predict_batch_one_engine_call(engine_module, weights_path, sfew_faces):
    rec = pyfer.Recognizer(weights_path, threads=1)
    calls = []
    forward = rec.engine.forward

    class Spy:  # the compiled engine's attributes may be read-only: wrap it instead
        def __getattr__(self, name):
            return getattr(rec.engine_real, name)

        def forward(self, x):
            calls.append(x.shape)
            return forward(x)

    rec.engine_real, rec.engine = rec.engine, Spy()
    images = [ASTRONAUT, sfew_faces[0], np.full((100, 100), 128, np.uint8), sfew_faces[2]]
    batch = rec.predict_batch(images)
    # one call holding every face and, for flip averaging, its mirror image
    assert len(calls) == 1 and calls[0][0] == 2 * sum(len(f) for f in batch)
    assert len(batch) == 4 and batch[2] == []
    for image, faces in zip(images, batch):
        single = rec.predict(image)
        assert [f.box for f in single] == [f.box for f in faces]
        for a, b in zip(single, faces):
            assert a.scores == pytest.approx(b.scores, abs=1e-5)
    assert rec.predict_batch([]) == []


def test_classify_shapes(recognizer, fer_faces, sfew_faces):
    x, _ = fer_faces
    p = recognizer.classify(x[:10])
    assert p.shape == (10, 8)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    mixed = recognizer.classify([x[0], sfew_faces[0], cv2.resize(x[1], (200, 200))])
    assert mixed.shape == (3, 8)
    np.testing.assert_allclose(mixed[0], p[0], atol=1e-6)
    assert recognizer.classify([]).shape == (0, 8)
    with pytest.raises(ValueError):
        recognizer.classify(x[0])  # a single 2-D face is ambiguous: needs a batch


def test_accuracy_ferplus(recognizer, trained, ferplus_dir):
    if not trained:
        pytest.skip("accuracy needs the shipped trained weights (pyfer/models/)")
    x, y = ferplus_valid(ferplus_dir, 300)
    acc = (recognizer.classify(x).argmax(1) == y).mean()
    assert acc > 0.80, acc  # the shipped student: 0.87 on these 300, 86.8% on all of FERPlus valid


@pytest.mark.parametrize("bad, exc", [
    (np.zeros((0, 0), np.uint8), ValueError),
    (np.zeros((0, 10, 3), np.uint8), ValueError),
    (np.zeros(100, np.uint8), ValueError),
    (np.zeros((10, 10, 10, 3), np.uint8), ValueError),
    (np.zeros((20, 20, 2), np.uint8), ValueError),
    (np.zeros((20, 20, 5), np.uint8), ValueError),
    (np.zeros((20, 20), bool), TypeError),
    (np.zeros((20, 20), object), TypeError),
    (np.zeros((20, 20), complex), TypeError),
    (np.full((20, 20), np.nan, np.float32), ValueError),
    (np.full((20, 20), 300, np.int32), ValueError),
    (np.full((20, 20), -1, np.int16), ValueError),
    ([[1, 2], [3, 4]], TypeError),
    (None, TypeError),
    (12, TypeError),
])
def test_bad_arrays(recognizer, bad, exc):
    with pytest.raises(exc):
        recognizer.predict(bad)


def test_bad_files(recognizer, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image\n")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(ASTRONAUT.read_bytes()[:200])
    with pytest.raises(ValueError, match="empty"):
        recognizer.predict(empty)
    for p in (text, truncated):
        with pytest.raises(ValueError, match="decode"):
            recognizer.predict(p)
    with pytest.raises(FileNotFoundError):
        recognizer.predict(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError):
        recognizer.predict(tmp_path)  # a directory
    with pytest.raises(FileNotFoundError, match="empty image path"):
        recognizer.predict("")  # not the working folder ('.')


def _jpeg_announcing(width: int, height: int, quality: int = 90, progressive: bool = False,
                     stray: bool = False) -> bytes:
    """A real 16x16 JPEG whose frame header is rewritten to announce width x height (``stray``: a
    junk byte before the frame header, which the decoder skips with a warning)."""
    from pyfer.image_size import jpeg_size

    flags = [cv2.IMWRITE_JPEG_QUALITY, quality] + ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else [])
    data = bytearray(cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8), flags)[1].tobytes())
    assert jpeg_size(np.frombuffer(bytes(data), np.uint8)) == (16, 16)
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    if stray:
        data[sof:sof] = b"\x00"
    return bytes(data)


@pytest.mark.parametrize("progressive,stray", [(False, False), (True, False), (False, True)])
def test_a_jpeg_announcing_more_pixels_than_its_bytes_hold_is_refused_before_decoding(recognizer, tmp_path,
                                                                                     progressive, stray):
    """A 600-byte JPEG announcing 20000 x 20000 pixels made OpenCV fill 1.2 GB (2.4 GB peak, 8 s).
    (10000 x 10000 here: 20000 x 20000 is now refused first as more than MAX_IMAGE_PIXELS.)"""
    import tracemalloc

    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_jpeg_announcing(10000, 10000, progressive=progressive, stray=stray))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"announces 10000 x 10000 pixels, more than its \d+ bytes can hold"):
            recognizer.predict(bomb)
        assert tracemalloc.get_traced_memory()[1] < 50 << 20
    finally:
        tracemalloc.stop()
    # a small announced size decodes as before (OpenCV fills what the file lacks)
    small = tmp_path / "small.jpg"
    small.write_bytes(_jpeg_announcing(64, 48, stray=stray))
    from pyfer.recognizer import load_image

    assert load_image(small).shape[:2] == (48, 64)


def test_real_large_jpegs_pass_the_size_check():
    """Photos compress far less than the bound: a flat 6000 x 6000 JPEG at quality 50 holds
    about 90 pixels a byte (the bound: 2048)."""
    from pyfer.recognizer import JPEG_MAX_PIXELS_PER_BYTE, _check_bytes_can_hold

    flat = cv2.imencode(".jpg", np.full((6000, 6000), 200, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])[1]
    _check_bytes_can_hold(flat, "flat.jpg")
    assert 6000 * 6000 / flat.size < JPEG_MAX_PIXELS_PER_BYTE / 4


@pytest.mark.parametrize("boxes", [
    [(400, 10, 20, 20)], [(-50, -50, 40, 40)], [(10, 10, -5, 20)], [(10, 10, 0, 20)],
    [(10, 10, 20)], [(10, 10, 20, float("nan"))], [("a", 1, 2, 3)], [None],
])
def test_bad_boxes(recognizer, boxes):
    with pytest.raises(ValueError):
        recognizer.predict(ASTRONAUT, boxes=boxes)


def test_huge_image(recognizer, sfew_faces, monkeypatch):
    """6000x4000 gray with one face ~1200 px wide: found, and the network only ever sees a
    downscaled copy, its long side within the detector's max_side (1920 measured)."""
    canvas = np.full((4000, 6000), 100, np.uint8)
    truth = paste(canvas, cv2.cvtColor(sfew_faces[1], cv2.COLOR_BGR2GRAY), 2500, 1200, 1200)
    det = recognizer.detector
    seen = []
    run = det.detect_raw
    monkeypatch.setattr(det, "detect_raw", lambda bgr: seen.append(bgr.shape[:2]) or run(bgr))
    faces = recognizer.predict(canvas)
    assert faces and iou(faces[0].box, truth) > 0.4
    assert seen and max(max(s) for s in seen) <= det.max_side, seen


def test_default_weights(monkeypatch, trained):
    from pyfer import recognizer as mod

    if trained:
        assert pyfer.default_weights_path().is_file()
    monkeypatch.setattr(mod, "WEIGHTS_FILE", "no_such_weights.safetensors")
    with pytest.raises(FileNotFoundError, match="not installed"):
        mod.default_weights_path()


def test_sfew_transfer_subset(recognizer, trained, sfew_rows):
    """Real film faces through detection: nearly all are found, and labels beat chance (~21%)
    clearly. Full-set numbers: docs/recognizer.md (scripts/eval_frontend.py)."""
    if not trained:
        pytest.skip("accuracy needs the shipped trained weights (pyfer/models/)")
    rows = sfew_rows[::7]  # 123 images over all classes
    faces = recognizer.predict_batch([p for p, _ in rows])
    found = [bool(f) for f in faces]
    correct = [f[0].label == label for f, (_, label) in zip(faces, rows) if f]
    assert np.mean(found) > 0.93, np.mean(found)
    assert np.mean(correct) > 0.35, np.mean(correct)


@pytest.fixture(scope="module")
def weights_with_prior(tmp_path_factory):
    """A student exported with a class prior and a baked shift of 0.3 (random weights), and the
    same without a prior."""
    pytest.importorskip("torch")
    import torch

    from pyfer.preprocess import PreprocessSpec
    from training.export import export_model
    from training.models import ModelSpec, build_student

    torch.manual_seed(1)
    model = build_student().eval()
    out = tmp_path_factory.mktemp("prior")
    prior = np.array([0.35, 0.3, 0.12, 0.1, 0.08, 0.01, 0.02, 0.02])
    with_prior = export_model(model, ModelSpec("shufflenetv2"), PreprocessSpec(), out / "p.safetensors",
                              class_prior=prior, prior_shift=0.3)
    without = export_model(model, ModelSpec("shufflenetv2"), PreprocessSpec(), out / "n.safetensors")
    return with_prior, without, prior


def test_prior_shift_moves_the_scores_by_the_log_prior(weights_with_prior):
    """Recognizer(prior_shift=s) scores = softmax(logits + (s - baked) * log prior): the log-odds
    between two classes move by exactly (s - baked) * log(prior_i / prior_j)."""
    path, _, prior = weights_with_prior
    img = cv2.imread(str(ASTRONAUT))
    base = pyfer.Recognizer(path, threads=1)
    assert base.prior_shift == pytest.approx(0.3) and base.info()["prior_shift"] == pytest.approx(0.3)
    same = pyfer.Recognizer(path, threads=1, prior_shift=0.3).predict(img)[0].scores
    ref = base.predict(img)[0].scores
    assert all(same[k] == pytest.approx(ref[k], abs=1e-9) for k in ref)
    for s in (0.0, 1.0):
        got = pyfer.Recognizer(path, threads=1, prior_shift=s).predict(img)[0].scores
        names = list(ref)
        moved = np.log([got[k] for k in names]) - np.log([ref[k] for k in names])
        want = (s - 0.3) * np.log(prior)
        assert np.allclose(moved - moved[0], want - want[0], atol=1e-5), (s, moved, want)


def test_prior_shift_refused_without_a_prior_or_out_of_range(weights_with_prior, weights_path):
    path, without, _ = weights_with_prior
    assert pyfer.Recognizer(without).prior_shift is None
    with pytest.raises(ValueError, match="class prior"):
        pyfer.Recognizer(without, prior_shift=0.5)
    for bad in (3.0, -2, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="prior_shift"):
            pyfer.Recognizer(path, prior_shift=bad)


@pytest.mark.parametrize("prior", [[0.5, 0.5, 0, 0, 0, 0, 0, 0], [0.25] * 4, [0.6, 0.3, -0.1] + [0.04] * 5])
def test_a_malformed_stored_prior_is_refused_before_it_gives_nan_scores(weights_with_prior, tmp_path, prior):
    """A hand-edited file whose prior has a zero (log 0 = -inf: NaN scores), the wrong length or
    a negative share is refused when a shift would use it; without a shift it is not read."""
    from pyfer.weights_file import read_checked, save_checked

    tensors, metadata = read_checked(weights_with_prior[0])
    meta = json.loads(metadata["pyfer"])
    meta["logit_adjustment"]["class_prior"] = prior
    edited = save_checked(tensors, tmp_path / "edited.safetensors", {**metadata, "pyfer": json.dumps(meta)})
    with pytest.raises(ValueError, match="class prior is malformed"):
        pyfer.Recognizer(edited, detector=None, prior_shift=0.5)
    assert pyfer.Recognizer(edited, detector=None).prior_shift == pytest.approx(0.3)


def test_shipped_weights_carry_their_prior(trained, weights_path):
    """The shipped student stores the FERPlus train prior and the shift baked into it."""
    if not trained:
        pytest.skip("no shipped weights")
    rec = pyfer.Recognizer(weights_path)
    adj = rec.engine.metadata["logit_adjustment"]
    assert len(adj["class_prior"]) == len(rec.class_names) and sum(adj["class_prior"]) == pytest.approx(1.0)
    assert adj["class_prior"][0] > adj["class_prior"][-1]  # neutral is common, contempt rare
    assert rec.prior_shift == adj["prior_shift"]


def test_paths_that_are_not_image_files_say_what_they_are(tmp_path):
    from pyfer.recognizer import load_image

    folder = tmp_path / "looks_like.jpg"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="is a folder, not an image file"):
        load_image(folder)
    with pytest.raises(FileNotFoundError, match="no such image file"):
        load_image(tmp_path / "missing.jpg")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.jpg"
        os.mkfifo(fifo)
        with pytest.raises(ValueError, match="not a regular file"):  # and no hang on the open
            load_image(fifo)


def _tiff_orientation_block(orientation: int) -> bytes:
    """EXIF data holding only an Orientation tag (little-endian TIFF, one IFD entry)."""
    import struct

    return (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
            + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0))


def _png_with_exif(img: np.ndarray, orientation: int) -> bytes:
    """A PNG of ``img`` with an eXIf chunk (after IHDR) carrying ``orientation``."""
    import struct
    import zlib

    png = cv2.imencode(".png", img)[1].tobytes()
    data = _tiff_orientation_block(orientation)
    chunk = struct.pack(">I", len(data)) + b"eXIf" + data + struct.pack(">I", zlib.crc32(b"eXIf" + data))
    return png[:33] + chunk + png[33:]  # 33: signature + IHDR


def _webp_with_exif(img: np.ndarray, orientation: int) -> bytes:
    """A lossless extended WebP (VP8X) of ``img`` with an EXIF chunk carrying ``orientation``."""
    import struct

    webp = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    h, w = img.shape[:2]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + (w - 1).to_bytes(3, "little") \
        + (h - 1).to_bytes(3, "little")
    data = _tiff_orientation_block(orientation)
    exif = b"EXIF" + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1)
    body = b"WEBP" + vp8x + webp[12:] + exif
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _stored_for(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for ``upright`` under an EXIF orientation (its inverse)."""
    return {1: lambda a: a, 2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
            4: lambda a: cv2.flip(a, 0), 5: cv2.transpose,
            6: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
            7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
            8: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE)}[orientation](upright)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_png_and_webp(orientation, tmp_path):
    """PNG (eXIf chunk) and WebP (EXIF chunk) files are turned upright like JPEGs, keeping their
    alpha channel and bit depth."""
    from pyfer.recognizer import decode_image, load_image

    bgr = cv2.imread(str(ASTRONAUT))[:, :300]  # not square: a turn shows in the shape
    stored = _stored_for(bgr, orientation)
    (tmp_path / "a.png").write_bytes(_png_with_exif(stored, orientation))
    (tmp_path / "a.webp").write_bytes(_webp_with_exif(stored, orientation))
    for name in ("a.png", "a.webp"):
        np.testing.assert_array_equal(load_image(tmp_path / name), bgr, err_msg=name)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = np.arange(bgr.shape[1], dtype=np.uint8)[None, :]
    png = np.frombuffer(_png_with_exif(_stored_for(bgra, orientation), orientation), np.uint8)
    np.testing.assert_array_equal(decode_image(png), bgra)
    deep = bgr.astype(np.uint16) * 257
    png = np.frombuffer(_png_with_exif(_stored_for(deep, orientation), orientation), np.uint8)
    np.testing.assert_array_equal(decode_image(png), deep)


def test_sideways_png_with_exif_finds_the_upright_face(recognizer, tmp_path):
    path = tmp_path / "phone.png"
    path.write_bytes(_png_with_exif(cv2.rotate(cv2.imread(str(ASTRONAUT)), cv2.ROTATE_90_COUNTERCLOCKWISE), 6))
    faces = recognizer.predict(path)
    assert len(faces) == 1 and iou(faces[0].box, ASTRONAUT_FACE) > 0.5


def test_classify_refuses_a_single_colour_crop_and_a_bare_path(recognizer):
    """A single (H, W, 3/4) crop would be read as H faces; a str/Path as its characters."""
    face = cv2.imread(str(ASTRONAUT))[38:108, 113:171]
    for crop in (face, cv2.cvtColor(face, cv2.COLOR_BGR2BGRA)):
        with pytest.raises(ValueError, match=r"crops\[None\]"):
            recognizer.classify(crop)
        assert recognizer.classify(crop[None]).shape == (1, 8)
    for path in (str(ASTRONAUT), ASTRONAUT):
        with pytest.raises(TypeError, match="single path"):
            recognizer.classify(path)
        with pytest.raises(TypeError, match="single path"):
            recognizer.predict_batch(path)
    assert len(recognizer.predict_batch([str(ASTRONAUT)])) == 1
    with pytest.raises(TypeError, match="the bytes of one"):
        recognizer.predict_batch(ASTRONAUT.read_bytes())
    assert len(recognizer.predict_batch([ASTRONAUT.read_bytes()])) == 1


def test_an_encoded_image_s_bytes_are_read_as_its_file_is(recognizer, tmp_path):
    """An upload or a download arrives as bytes: decoded as the file would be (the same faces),
    with its EXIF orientation and the decoder's limits, and refused clearly when not an image."""
    from pyfer.recognizer import load_image

    want = recognizer.predict(ASTRONAUT)
    data = ASTRONAUT.read_bytes()
    for given in (data, bytearray(data), memoryview(data)):
        got = recognizer.predict(given)
        assert [(f.box, f.label) for f in got] == [(f.box, f.label) for f in want]
        assert got[0].scores == pytest.approx(want[0].scores, abs=1e-6)
    Image = pytest.importorskip("PIL.Image")
    sideways = cv2.rotate(cv2.imread(str(ASTRONAUT))[:, :300], cv2.ROTATE_90_COUNTERCLOCKWISE)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    phone = tmp_path / "phone.jpg"
    Image.fromarray(cv2.cvtColor(sideways, cv2.COLOR_BGR2RGB)).save(phone, exif=exif.tobytes(), quality=95)
    upright = cv2.imread(str(ASTRONAUT)).shape[0], 300, 3
    assert load_image(phone.read_bytes()).shape == load_image(phone).shape == upright
    for bad, why in ((b"", "empty file: the image bytes"), (b"not an image" * 10, "cannot decode the image bytes"),
                     (bytes(str(ASTRONAUT), "utf-8"), "give a file name as a str or a Path")):
        with pytest.raises(ValueError, match=why):
            recognizer.predict(bad)


def test_predict_batch_refuses_a_single_image_array(recognizer):
    """One image array iterated would be a few hundred one-row 'images', all faceless."""
    bgr = cv2.imread(str(ASTRONAUT))
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    for one in (bgr, gray, gray[:, :, None], cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)):
        with pytest.raises(ValueError, match=r"predict_batch\(\[image\]\)"):
            recognizer.predict_batch(one)
    assert [len(f) for f in recognizer.predict_batch(np.stack([bgr, bgr]))] == [1, 1]  # a stack is a batch


def test_several_images_given_to_predict_point_to_predict_batch(recognizer):
    bgr = cv2.imread(str(ASTRONAUT))
    for several in ([str(ASTRONAUT)] * 2, (bgr, bgr)):
        with pytest.raises(TypeError, match=r"several images: predict_batch"):
            recognizer.predict(several)
    with pytest.raises(ValueError, match=r"a stack of images\? predict_batch takes one"):
        recognizer.predict(np.stack([bgr, bgr]))


def test_predict_batch_return_exceptions(recognizer, tmp_path):
    """One unreadable image fails the whole batch by default; with return_exceptions it gets its
    exception in its place and every other image is predicted as on its own."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bgr = cv2.imread(str(ASTRONAUT))
    images = [str(ASTRONAUT), tmp_path / "missing.png", bgr, corrupt, np.zeros((4, 4, 7), np.uint8), bgr[:, :, 0]]
    with pytest.raises(FileNotFoundError):
        recognizer.predict_batch(images)
    out = recognizer.predict_batch(images, return_exceptions=True)
    assert len(out) == len(images)
    assert isinstance(out[1], FileNotFoundError) and "missing.png" in str(out[1])
    assert isinstance(out[3], ValueError) and isinstance(out[4], ValueError)
    import traceback  # a kept exception must not hold the batch (its images and crops) through its frame

    assert all(frame.f_code.co_name != "_predict_many" for frame, _ in traceback.walk_tb(out[1].__traceback__))
    for i in (0, 2, 5):
        single = recognizer.predict(images[i])
        assert [f.box for f in out[i]] == [f.box for f in single] and len(single) == 1
        assert out[i][0].scores == pytest.approx(single[0].scores, abs=1e-5)
    assert recognizer.predict_batch([str(ASTRONAUT)], return_exceptions=True)[0][0].label == "happiness"
    with pytest.raises(TypeError, match="return_exceptions"):
        recognizer.predict_batch([bgr], return_exceptions="yes")


def test_faces_hash_and_compare(recognizer):
    """Faces can be set members and dict keys (the generated hash failed on the scores dict)."""
    bgr = cv2.imread(str(ASTRONAUT))
    (a,), (b,), (mirrored,) = recognizer.predict(bgr), recognizer.predict(bgr.copy()), recognizer.predict(bgr[:, ::-1])
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1 and {a: "first"}[b] == "first"
    assert a != mirrored and len({a, mirrored}) == 2


def test_detect_without_a_detector_is_the_whole_image(engine_module, weights_path):
    rec = pyfer.Recognizer(weights_path, detector=None, threads=1)
    ((box, lm, score),) = rec.detect(str(ASTRONAUT))
    assert box == (0, 0, 320, 320) and lm is None and score is None
    assert [f.box for f in rec.predict(str(ASTRONAUT))] == [box]
    wide = np.zeros((40, 100, 3), np.uint8)  # (x, y, width, height): not the array's (rows, columns)
    assert rec.detect(wide)[0][0] == (0, 0, 100, 40) and [f.box for f in rec.predict(wide)] == [(0, 0, 100, 40)]


@pytest.mark.parametrize("found,exc,message", [
    (None, TypeError, "must return a list"),
    ([type("D", (), {"box": (10, 20, 30, 40), "score": float("nan")})()], ValueError, "score must be"),
    ([type("D", (), {"box": (10, 20, 30, 40), "score": "high"})()], ValueError, "score must be"),
])
def test_a_custom_detectors_bad_output_is_a_clear_error(engine_module, weights_path, found, exc, message):
    rec = pyfer.Recognizer(weights_path, detector=lambda img: found, threads=1)
    with pytest.raises(exc, match=message):
        rec.predict(str(ASTRONAUT))


def test_a_custom_detectors_numpy_scalar_score_is_a_number(engine_module, weights_path):
    rec = pyfer.Recognizer(weights_path, detector=lambda img: [type("D", (), {"box": (10, 20, 30, 40),
                                                                             "score": np.array(0.7)})()], threads=1)
    assert rec.predict(str(ASTRONAUT))[0].detection_score == pytest.approx(0.7)


def test_floats_far_below_zero_are_refused_not_clipped(recognizer):
    """[-1, 1] data (a common normalisation) would lose half its range to the clip."""
    bgr = cv2.imread(str(ASTRONAUT)).astype(np.float32) / 127.5 - 1.0
    with pytest.raises(ValueError, match=r"must lie in \[0, 255\]"):
        recognizer.predict(bgr)


def test_flip_must_be_a_bool(engine_module, weights_path):
    for bad in ("no", "False", 2, None):
        with pytest.raises(TypeError, match="flip must be True or False"):
            pyfer.Recognizer(weights_path, threads=1, flip=bad)
    assert pyfer.Recognizer(weights_path, threads=1, flip=np.bool_(False)).flip is False


def test_numpy_numbers_as_settings(engine_module, weights_path):
    """numpy scalars (np.float32, np.int64) are numbers like Python's; bools are not."""
    rec = pyfer.Recognizer(weights_path, threads=1, score_threshold=np.float32(0.5), min_face=np.int64(40),
                           margin=np.float32(0.1))
    assert (rec.score_threshold, rec.min_face) == (0.5, 40.0) and rec.margin == pytest.approx(0.1)
    assert len(rec.predict(str(ASTRONAUT))) == 1
    for bad in ({"min_face": True}, {"score_threshold": np.float64("nan")}, {"margin": "0.1"}):
        with pytest.raises(ValueError):
            pyfer.Recognizer(weights_path, threads=1, **bad)


def test_no_detector_refuses_detector_settings(engine_module, weights_path):
    for kw in ({"min_face": 40}, {"score_threshold": 0.5}):
        with pytest.raises(ValueError, match="whole image"):
            pyfer.Recognizer(weights_path, threads=1, detector=None, **kw)


def test_pil_la_and_classify_dtype(recognizer):
    """A PIL image in mode La (premultiplied gray + alpha) is read; classify gives one dtype for
    an empty and a full batch."""
    Image = pytest.importorskip("PIL.Image")
    with Image.open(ASTRONAUT) as im:
        la = im.convert("LA").convert("La")
        gray = im.convert("L")
    got, want = recognizer.predict(la), recognizer.predict(gray)
    assert len(got) == len(want) == 1 and got[0].box == want[0].box
    face = cv2.imread(str(ASTRONAUT), cv2.IMREAD_GRAYSCALE)[38:108, 113:171]
    assert recognizer.classify([]).dtype == recognizer.classify(face[None]).dtype


def test_weights_recognizer_cannot_feed_are_refused_when_loaded(engine_module, weights_path, tmp_path):
    """A network of 3-channel input (the face crops are gray) and class names that repeat (a face's
    scores are a dict by name) load in pyfer.Engine but not in Recognizer: one ValueError at
    construction, which the CLI reports as a setup error (status 2), not a failure per image."""
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    from pyfer.cli import main
    from pyfer.weights_file import save_checked

    with safe_open(str(weights_path), "np") as f:
        meta = json.loads(f.metadata()["pyfer"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    rgb = dict(tensors)
    rgb["stem.conv.weight"] = np.repeat(tensors["stem.conv.weight"], 3, axis=1) / 3  # what a 3-channel stem holds
    save_checked(rgb, tmp_path / "rgb.safetensors", {"pyfer": json.dumps({**meta, "in_channels": 3})})
    twice = [*meta["class_names"][:-1], meta["class_names"][0]]
    save_checked(tensors, tmp_path / "twice.safetensors", {"pyfer": json.dumps({**meta, "class_names": twice})})
    assert pyfer.Engine(tmp_path / "rgb.safetensors").input_shape[0] == 3  # the engine loads both
    for name, message in (("rgb", "3-channel input"), ("twice", "class names repeat")):
        with pytest.raises(ValueError, match=message):
            pyfer.Recognizer(tmp_path / f"{name}.safetensors", threads=1)
        assert main(["predict", str(ASTRONAUT), "--weights", str(tmp_path / f"{name}.safetensors")]) == 2


def test_a_transparent_image_is_read_as_a_viewer_shows_it(recognizer):
    """predict looks at a transparent image composited on white, as draw_faces draws it and a
    viewer shows it: a PNG whose colour holds a face under alpha 0 everywhere gave happiness 0.98
    over a blank white picture (a helper's review, session 47); with the face opaque on a
    transparent background, the face is found as in the opaque photo."""
    bgr = cv2.imread(str(ASTRONAUT))
    hidden = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    hidden[:, :, 3] = 0
    assert recognizer.predict(cv2.imencode(".png", hidden)[1].tobytes()) == []
    opaque = recognizer.predict(bgr)
    x, y, w, h = opaque[0].box
    cutout = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    cutout[:, :, 3] = 0
    cutout[max(0, y - h):y + 2 * h, max(0, x - w):x + 2 * w, 3] = 255
    found = recognizer.predict(cv2.imencode(".png", cutout)[1].tobytes())
    assert len(found) == 1 and iou(found[0].box, opaque[0].box) > 0.8


def test_a_faint_16_bit_alpha_and_a_pil_gray_alpha_hide_what_they_hide(recognizer):
    """A 16-bit PNG's alpha spans 0..65535: alpha 4000 (6%) was judged by its own maximum as a
    12-bit one and read as 250 of 255, so predict saw the hidden face (happiness 0.98); a PIL image
    in mode LA lost its alpha (a review of this session's on_white). Both now read as a viewer
    shows them, as the 8-bit PNG does."""
    Image = pytest.importorskip("PIL.Image")
    bgr = cv2.imread(str(ASTRONAUT))
    faint8 = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    faint8[:, :, 3] = 15
    faint16 = faint8.astype(np.uint16) * 257
    faint16[:, :, 3] = 4000
    assert recognizer.predict(cv2.imencode(".png", faint8)[1].tobytes()) == []
    assert recognizer.predict(cv2.imencode(".png", faint16)[1].tobytes()) == []
    with Image.open(ASTRONAUT) as im:
        hidden = im.convert("LA")
    hidden.putalpha(0)
    assert recognizer.predict(hidden) == []
