"""YuNet in pyfer's C++ engine (pyfer._engine.YuNet, YuNetDetector(backend="engine")) against the
ONNX model run by onnxruntime (raw head outputs) and by OpenCV's cv2.FaceDetectorYN (final
detections), on real photos: FERPlus and SFEW faces at the sizes the search runs them, and the
group photos of scripts/group_photos.py."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT, REPO, ferplus_valid, isa_params
from pyfer.yunet import YuNetDetector, decode_heads, default_model_path, nms_like_opencv

_engine = pytest.importorskip("pyfer._engine")

ENGINE_MODEL = default_model_path("engine")
ONNX_MODEL = default_model_path("opencv")
HEAD_NAMES = ["cls", "obj", "bbox", "kps"]
STRIDES = [8, 16, 32]
ISAS = isa_params(_engine.build_info())


@pytest.fixture(scope="module")
def ort_session():
    """The ONNX model with free input height and width (the export fixes 640x640; OpenCV's
    FaceDetectorYN runs it at any size padded to a multiple of 32, as this session does)."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(ONNX_MODEL))
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], ["h", "w"]):
        dim.ClearField("dim_value")
        dim.dim_param = name
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_heads(session, bgr: np.ndarray) -> dict:
    """onnxruntime's outputs for an image zero padded (bottom, right) to multiples of 32."""
    h, w = bgr.shape[:2]
    padded = cv2.copyMakeBorder(bgr, 0, -h % 32, 0, -w % 32, cv2.BORDER_CONSTANT, value=0)
    blob = padded.transpose(2, 0, 1)[None].astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": blob})))


def engine_heads(net, bgr: np.ndarray) -> dict:
    """The engine's maps in onnxruntime's layout: name_stride -> (1, rows * cols, channels)."""
    out = {}
    heads = net.info()["heads"]
    for stride, m in zip(STRIDES, net.forward(bgr)):
        c0 = 0
        for name, channels, _ in heads:
            out[f"{name}_{stride}"] = m[:, :, c0:c0 + channels].reshape(1, -1, channels)
            c0 += channels
    return out


def max_rel_err(got: np.ndarray, want: np.ndarray) -> float:
    return float((np.abs(got - want) / np.maximum(1.0, np.abs(want))).max())


@pytest.fixture(scope="module")
def net():
    return _engine.YuNet(str(ENGINE_MODEL))


@pytest.fixture(scope="module")
def real_images(sfew_rows, ferplus_dir) -> list[np.ndarray]:
    """Real photos at the sizes the search gives the network: SFEW stills (181x143) as they are
    and at 320x240, FERPlus 48x48 crops enlarged to 240 px (the main pass of a face crop), and
    the astronaut photo (odd sizes included: 333x201)."""
    sfew = [cv2.imread(str(p)) for p, _ in sfew_rows[:: len(sfew_rows) // 8][:8]]
    fer, _ = ferplus_valid(ferplus_dir, 6)
    fer = [cv2.resize(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR), (240, 240), interpolation=cv2.INTER_LINEAR) for f in fer]
    astro = cv2.imread(str(ASTRONAUT))
    return (sfew + [cv2.resize(s, (320, 240)) for s in sfew[:3]] + fer
            + [astro, cv2.resize(astro, (333, 201)), cv2.resize(astro, (320, 240))])


def test_engine_model_describes_yunet(net):
    info = net.info()
    assert info["strides"] == STRIDES
    assert [h[0] for h in info["heads"]] == HEAD_NAMES
    assert [h[1] for h in info["heads"]] == [1, 1, 4, 10]
    assert [h[2] for h in info["heads"]] == [True, True, False, False]
    assert info["input_multiple"] == 32
    assert 0.1 < info["gflops_320x240"] < 0.2


@pytest.mark.parametrize("isa", ISAS)
def test_raw_heads_match_onnxruntime(ort_session, real_images, isa):
    net = _engine.YuNet(str(ENGINE_MODEL), isa)
    worst = {}
    for img in real_images:
        want, got = ort_heads(ort_session, img), engine_heads(net, img)
        assert set(want) == set(got)
        for k in want:
            assert got[k].shape == want[k].shape, k
            worst[k] = max(worst.get(k, 0.0), max_rel_err(got[k], want[k]))
    assert max(worst.values()) < 1e-4, worst


@pytest.mark.parametrize("isa", ISAS)
def test_any_size_matches_onnxruntime(ort_session, isa):
    """Sizes around the 32-pixel padding and the row pipeline's windows: a single pixel, one and
    two padded blocks, odd sides, a tall and a wide strip."""
    net = _engine.YuNet(str(ENGINE_MODEL), isa)
    img = cv2.imread(str(ASTRONAUT))
    for w, h in [(1, 1), (17, 31), (32, 32), (33, 33), (64, 65), (47, 300), (517, 40)]:
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        want, got = ort_heads(ort_session, x), engine_heads(net, x)
        for k in want:
            assert max_rel_err(got[k], want[k]) < 1e-4, (w, h, k)


def test_group_photos_raw_heads_match_onnxruntime(ort_session, net, photos):
    yn = YuNetDetector(backend="engine")
    for p in photos.values():
        h, w = p.image.shape[:2]
        s = yn.main_scale(h, w)
        img = cv2.resize(p.image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        want, got = ort_heads(ort_session, img), engine_heads(net, img)
        for k in want:
            assert max_rel_err(got[k], want[k]) < 1e-4, (p.name, k)


def test_detections_match_opencv(real_images, photos):
    """One network run, decoded and NMS'd: the engine backend's rows equal FaceDetectorYN's."""
    eng, ocv = YuNetDetector(backend="engine"), YuNetDetector(backend="opencv")
    images = list(real_images)
    for p in photos.values():
        h, w = p.image.shape[:2]
        s = eng.main_scale(h, w)
        images.append(cv2.resize(p.image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA))
    found = 0
    for img in images:
        a, b = eng.detect_raw(img), ocv.detect_raw(img)
        assert a.shape == b.shape
        if len(a):
            assert np.abs(a[:, :14] - b[:, :14]).max() < 0.02  # px
            assert np.abs(a[:, 14] - b[:, 14]).max() < 1e-4
        found += len(a)
    assert found >= len(images)  # most images hold a face: the comparison is not of empty lists


def test_search_matches_opencv_on_group_photos(photos):
    """The whole search (main pass, second looks, coarse and turned passes) gives the same faces."""
    eng, ocv = YuNetDetector(backend="engine"), YuNetDetector(backend="opencv")
    for p in photos.values():
        a, b = eng(p.image), ocv(p.image)
        assert len(a) == len(b), p.name
        for x, y in zip(a, b):
            assert np.abs(np.array(x.box) - np.array(y.box)).max() <= 1, p.name
            assert np.abs(x.landmarks - y.landmarks).max() < 0.05
            assert abs(x.score - y.score) < 1e-4


def test_decode_and_nms_like_opencv():
    """decode_heads + nms_like_opencv on hand-made maps: one cell per level scores; two boxes of one
    face overlap and the weaker goes; positions, sizes and landmarks follow OpenCV's formulas."""
    heads = [("cls", 1, True), ("obj", 1, True), ("bbox", 4, False), ("kps", 10, False)]
    maps = [np.zeros((4, 4, 16), np.float32), np.zeros((2, 2, 16), np.float32), np.zeros((1, 1, 16), np.float32)]
    maps[0][1, 2, :6] = [0.81, 1.0, 0.5, 0.25, np.log(2.0), np.log(4.0)]  # score 0.9
    maps[0][1, 2, 6:] = np.arange(10) / 10
    maps[1][0, 1, :6] = [0.64, 1.0, 0.0, 0.0, np.log(1.0), np.log(2.0)]   # score 0.8, overlaps the first
    maps[2][0, 0, :6] = [0.04, 1.0, 0.0, 0.0, 0.0, 0.0]                    # score 0.2: below the cut
    rows = decode_heads(maps, STRIDES, heads, 0.3)
    assert rows.shape == (2, 15)
    np.testing.assert_allclose(rows[0, :4], [(2 + 0.5) * 8 - 8, (1 + 0.25) * 8 - 16, 16, 32], rtol=1e-6)
    np.testing.assert_allclose(rows[0, 4:6], [(0.0 + 2) * 8, (0.1 + 1) * 8], rtol=1e-6)
    np.testing.assert_allclose(rows[:, 14], [0.9, 0.8], rtol=1e-6)
    kept = nms_like_opencv(rows, 0.3, 0.3, 5000)
    assert len(kept) == 1 and kept[0, 14] == pytest.approx(0.9)
    assert len(nms_like_opencv(rows, 0.3, 0.99, 5000)) == 2  # no overlap that large
    assert len(nms_like_opencv(rows, 0.3, 0.99, 1)) == 1     # top_k


def test_image_layouts(net):
    """uint8 or float32, contiguous or a crop of a bigger image (strided): the same maps."""
    big = cv2.imread(str(ASTRONAUT))
    crop = big[31:31 + 201, 17:17 + 333]
    ref = net.forward(np.ascontiguousarray(crop))
    for variant in (crop, crop.astype(np.float32), np.ascontiguousarray(crop).astype(np.float32)):
        for a, b in zip(net.forward(variant), ref):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError):
        net.forward(crop.astype(np.int32))
    with pytest.raises(ValueError):
        net.forward(crop[:, :, :2])
    with pytest.raises(ValueError):
        net.forward(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError):
        net.forward(crop[:, :, ::-1])  # channels not contiguous


def test_threads_share_one_engine(net, real_images):
    want = [net.forward(im) for im in real_images]
    errors = []

    def work():
        for _ in range(3):
            for im, w in zip(real_images, want):
                for a, b in zip(net.forward(im), w):
                    if not np.array_equal(a, b):
                        errors.append("differs")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_any_number_of_threads_gives_the_same_maps(threads):
    """Each step's rows are cut into one band per thread (the front's row pipelines start a few
    rows above their band): every map equals the one-thread engine's bit for bit, at sizes around
    the bands' limits (a few rows, odd sides, a tall strip, a 1080p frame), for a strided crop and
    a float image."""
    one, many = _engine.YuNet(str(ENGINE_MODEL), threads=1), _engine.YuNet(str(ENGINE_MODEL), threads=threads)
    assert (one.info()["threads"], many.info()["threads"]) == (1, threads)
    img = cv2.imread(str(ASTRONAUT))
    for w, h in [(1, 1), (40, 33), (131, 97), (320, 240), (333, 201), (47, 700), (960, 544), (1920, 1080)]:
        x = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        for variant in (x, x.astype(np.float32) * 0.9, np.pad(x, ((0, 0), (5, 5), (0, 0)))[:, 3:3 + w]):
            for a, b in zip(many.forward(variant), one.forward(variant)):
                np.testing.assert_array_equal(a, b, err_msg=f"{w}x{h} {variant.dtype}")


def test_the_detector_takes_the_recognizer_s_threads(monkeypatch):
    import pyfer

    assert YuNetDetector(backend="engine", threads=3).threads == 3
    assert YuNetDetector(backend="engine").threads == _engine.build_info()["default_threads"]
    assert pyfer.Recognizer(threads=1).detector.threads == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive int"):
            YuNetDetector(backend="engine", threads=bad)
    with pytest.raises(ValueError, match="engine backend"):
        YuNetDetector(backend="opencv", threads=2)
    monkeypatch.setenv("PYFER_YUNET_BACKEND", "opencv")  # OpenCV's YuNet: the threads are the engine's alone
    rec = pyfer.Recognizer(threads=1)
    assert (rec.detector.backend, rec.detector.threads, rec.engine.info()["threads"]) == ("opencv", None, 1)


def _rewrite(src: Path, dst: Path, meta_edit=None, drop: str | None = None) -> Path:
    from safetensors.numpy import load_file
    from safetensors import safe_open

    from pyfer.weights_file import save_checked

    with safe_open(str(src), "np") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src))
    if drop:
        del tensors[drop]
    if meta_edit:
        desc = json.loads(meta["yunet"])
        meta_edit(desc)
        meta["yunet"] = json.dumps(desc)
    return save_checked(tensors, dst, meta)


def test_loader_checks_the_description(tmp_path):
    pytest.importorskip("safetensors")

    def wrong_stride(d):
        d["levels"][1]["stride"] = 12

    def dropped_unit(d):
        d["stages"][2]["units"].pop()

    def bad_multiple(d):
        d["input_multiple"] = 16

    for edit in (wrong_stride, dropped_unit, bad_multiple):
        path = _rewrite(ENGINE_MODEL, tmp_path / f"{edit.__name__}.safetensors", meta_edit=edit)
        with pytest.raises(ValueError):
            _engine.YuNet(str(path))
    path = _rewrite(ENGINE_MODEL, tmp_path / "missing.safetensors", drop="neck.lateral_convs.1.conv2.weight")
    with pytest.raises(ValueError, match="lateral_convs.1.conv2"):
        _engine.YuNet(str(path))
    with pytest.raises(ValueError, match="yunet"):  # a student's weights are not a detector
        _engine.YuNet(str(REPO / "pyfer" / "models" / "tsnet_student.safetensors"))
    with pytest.raises(RuntimeError):
        YuNetDetector(model=tmp_path / "missing.safetensors", backend="engine")


def test_converter_reproduces_the_shipped_file(tmp_path):
    """scripts/yunet_to_safetensors.py on the shipped ONNX gives the shipped tensors and description."""
    pytest.importorskip("onnx")
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from pyfer.weights_file import HEADER_CRC_KEY

    sys.path.insert(0, str(REPO / "scripts"))
    import yunet_to_safetensors

    out = tmp_path / "yunet.safetensors"
    assert yunet_to_safetensors.main([str(ONNX_MODEL), str(out)]) == 0
    a, b = load_file(str(out)), load_file(str(ENGINE_MODEL))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    with safe_open(str(out), "np") as f, safe_open(str(ENGINE_MODEL), "np") as g:
        # safetensors writes the metadata in hash order, so the header's bytes (and checksum) vary by run
        assert HEADER_CRC_KEY in f.metadata() and {**f.metadata(), HEADER_CRC_KEY: ""} == {**g.metadata(), HEADER_CRC_KEY: ""}


def test_backend_choice(monkeypatch):
    assert YuNetDetector().backend == "engine"
    assert YuNetDetector(backend="opencv").backend == "opencv"
    monkeypatch.setenv("PYFER_YUNET_BACKEND", "opencv")
    assert YuNetDetector().backend == "opencv"
    with pytest.raises(ValueError):
        YuNetDetector(backend="tflite")
    assert YuNetDetector(backend="engine").config()["backend"] == "engine"


def test_engine_model_ships_inside_the_package():
    """The converted weights live beside the ONNX file in pyfer/models/ and so ship in the wheel
    (wheel.packages = ["pyfer"]); an installed wheel lists them."""
    import importlib.metadata as md

    import pyfer

    pkg = Path(pyfer.__file__).resolve().parent
    assert ENGINE_MODEL.resolve().parent == pkg / "models"
    assert 200_000 < ENGINE_MODEL.stat().st_size < 300_000
    if "site-packages" in pkg.parts:
        files = {str(f) for f in md.distribution("pyfer").files or []}
        assert "pyfer/models/yunet.safetensors" in files


@pytest.mark.parametrize("h, w, scale", [(320, 320, 0.866), (1079, 1919, 0.5), (1080, 1920, 0.111),
                                         (1079, 1919, 0.111), (701, 333, 0.3), (375, 500, 0.64), (47, 33, 0.2),
                                         (100, 90, 1.7), (7, 5, 0.05)])
def test_the_detector_s_resize_maps_points_by_the_factors_it_gives(h, w, scale):
    """_resized (halvings by area, then bilinear) gives the size asked for (or 1 px short) and
    the exact factors that carry a point of the image into it: a blob's centre lands where they say."""
    from pyfer.yunet import _resized

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy, sigma = 0.6 * w, 0.4 * h, max(1.5, min(h, w) / 12)  # (whole inside the image)
    image = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2)).astype(np.float32)
    small, sx, sy = _resized(image, scale)
    asked = (max(1, round(h * scale)), max(1, round(w * scale)))  # (or 1 px short: an odd side halved)
    assert all(0 <= a - g <= 1 for a, g in zip(asked, small.shape)), (small.shape, asked)
    if min(small.shape) < 4:
        return  # (too small to place a blob in)
    ys, xs = np.mgrid[0:small.shape[0], 0:small.shape[1]]
    mass = small.sum()
    got = ((xs * small).sum() / mass, (ys * small).sum() / mass)
    want = ((cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5)  # pixel centres, as OpenCV maps them
    # (0.06 px: the factors of the size asked for, w and h over the image's, missed by 0.1-0.47 px)
    assert abs(got[0] - want[0]) < 0.06 and abs(got[1] - want[1]) < 0.06, (got, want, sx, sy)


def shipped_yunet_with(tmp_path: Path, edit) -> Path:
    """The shipped YuNet file with its `yunet` description edited by ``edit`` (the checksums of the
    header and data dropped, as a hand-edited file would have them)."""
    raw = default_model_path("engine").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header["__metadata__"]
    meta.pop("header_crc32", None)
    meta.pop("data_crc32", None)
    desc = json.loads(meta["yunet"])
    edit(desc)
    meta["yunet"] = json.dumps(desc)
    h = json.dumps(header).encode()
    out = tmp_path / "edited.safetensors"
    out.write_bytes(len(h).to_bytes(8, "little") + h + raw[8 + n:])
    return out


def test_a_model_without_the_decoded_heads_is_refused_when_loaded():
    # the loader takes any heads a file describes; this one (the fuzz seed of a two-stage network)
    # has cls and bbox only: refused by name when the detector is made, not a KeyError on first use
    seeds = REPO / "tests" / "fuzz" / "corpus" / "yunet"
    with pytest.raises(RuntimeError, match=r"needs the heads obj \(1 channel, sigmoid\); kps \(10 channels\); "
                                           r"it has cls \(1 channel, sigmoid\); bbox \(4 channels\)"):
        YuNetDetector(model=seeds / "one_level.safetensors", backend="engine")
    # the shipped layout at 8 channels has them all: it loads and runs (finding no face)
    det = YuNetDetector(model=seeds / "shipped_layout_w8.safetensors", backend="engine")
    assert len(det(cv2.imread(str(ASTRONAUT)))) == 0


def test_heads_of_the_wrong_kind_or_named_twice_are_refused(tmp_path):
    def heads(desc):
        return {h["name"]: h for h in desc["heads"]}

    same = shipped_yunet_with(tmp_path, lambda d: None)  # the edit itself is harmless
    assert len(YuNetDetector(model=same, backend="engine")(cv2.imread(str(ASTRONAUT)))) == 1
    edits = {  # each loaded by the engine, and each decoded wrongly before: a face lost or misscored
        "bbox \\(4 channels\\)": lambda d: heads(d)["bbox"].update(sigmoid=True),
        "cls \\(1 channel, sigmoid\\)": lambda d: heads(d)["cls"].update(sigmoid=False),
        "named twice: cls": lambda d: d["heads"].append({"name": "cls", "module": "bbox_head.multi_level_obj",
                                                         "channels": 1, "sigmoid": True}),
    }
    for message, edit in edits.items():
        with pytest.raises(RuntimeError, match=message):
            YuNetDetector(model=shipped_yunet_with(tmp_path, edit), backend="engine")


def test_boxes_far_larger_than_the_image_are_not_faces():
    from pyfer.yunet import MAX_BOX_PER_SIDE, _plausible

    face = np.array([[10, 10, 40, 50, 20, 25, 40, 25, 30, 35, 22, 48, 38, 48, 0.9]], np.float32)
    huge = face.copy()
    huge[0, :14] *= 1e6
    nan = face.copy()
    nan[0, 4] = np.nan
    rows = np.concatenate([face, huge, nan])
    assert _plausible(rows, 100).tolist() == [True, False, False]
    edge = face.copy()
    edge[0, 2:4] = MAX_BOX_PER_SIDE * 100 + 1  # square, points inside: only its size is wrong
    edge[0, 4:14] = 100
    assert not _plausible(edge, 100)[0] and _plausible(edge, 101)[0]
    # slivers: a box 5 times wider than high (or higher than wide), its points inside, is no face;
    # 2.5 to 1 still is
    for w, h, ok in ((100, 20, False), (20, 100, False), (100, 40, True), (40, 100, True)):
        row = np.array([[0, 0, w, h, *[w / 2, h / 2] * 5, 0.9]], np.float32)
        assert _plausible(row, 1000)[0] == ok, (w, h)


def test_rows_that_are_not_finite_are_left_out_without_warnings():
    import warnings

    heads = [("cls", 1, True), ("obj", 1, True), ("bbox", 4, False), ("kps", 10, False)]
    m = np.zeros((2, 3, 16), np.float32)
    m[:, :, 0:2] = 0.9  # every position scores 0.9
    m[0, 1, 4] = np.inf  # one position's box width is exp(inf): inf, its x -inf
    m[1, 2, 10] = np.nan  # another's third landmark
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow and invalid-value warnings fail the test
        rows = decode_heads([m], [8], heads, 0.5)
    assert len(rows) == 4 and np.isfinite(rows).all()
