"""Property-based fuzzing of the public API: ``Engine.forward``, ``Recognizer.predict``,
``predict_batch`` and ``classify`` (plus the raw binding ``pyfer._engine.Engine.forward``).

Inputs: random dtypes (every numpy kind, byte-swapped, misaligned), shapes (0-6 dims, zero-size
axes), strides (sliced, reversed, transposed, Fortran order), values (NaN, +-inf, huge, tiny,
subnormal, out-of-range integers), image files made of random bytes or of real JPEG/PNG bytes with
flipped bytes or truncated, and random face boxes. The only acceptable outcomes are a valid result
(right shape/dtype, probabilities in [0, 1] summing to 1 when the input was finite) or a
``TypeError`` / ``ValueError`` / ``FileNotFoundError`` with a message. A crash of the interpreter
fails the run; ``scripts/sanitize.sh`` runs this file against an ASan+UBSan build.

``PYFER_FUZZ_SCALE=N`` multiplies the example counts (RELIABILITY.md lists the counts run).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

pytest.importorskip("pyfer._engine")
import pyfer  # noqa: E402
from conftest import ASTRONAUT, SHIPPED_WEIGHTS  # noqa: E402

SCALE = float(os.environ.get("PYFER_FUZZ_SCALE", "1"))


def fuzz(n):
    return settings(max_examples=max(5, int(n * SCALE)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])


def test_engine_is_the_expected_build():
    """Under scripts/sanitize.sh / scripts/tsan.sh (PYFER_EXPECT_SANITIZED set) the module this
    test process imported must be the instrumented build, not an installed ordinary one (an
    editable install's import hook answers before PYTHONPATH: issue 18). Skipped otherwise."""
    want = os.environ.get("PYFER_EXPECT_SANITIZED")
    if want is None:
        pytest.skip("not a sanitizer run")
    import pyfer._engine as e

    got = e.build_info().get("sanitized")
    assert got is not None and sorted(got.split(",")) == sorted(want.split(",")), (e.__file__, got, want)
    if os.environ.get("PYFER_EXPECT_ENGINE"):
        assert os.path.realpath(e.__file__) == os.path.realpath(os.environ["PYFER_EXPECT_ENGINE"]), e.__file__
    print(f"\nengine under test: {e.__file__} (sanitized={got})")


DOCUMENTED = (TypeError, ValueError, FileNotFoundError)
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1e-38, 3.4e38, -3.4e38, 1e30, -1e30, 1e-300, 1e300,
           255.0, 256.0, -1.0, 0.5, 1.0]
DTYPES = [np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
          np.int64, np.uint64, np.bool_, np.complex64, np.longdouble, ">f4", ">f8", "<u2", ">u2", ">i4", object,
          "U3", "S2", "datetime64[s]", "timedelta64[s]", "V4"]


@pytest.fixture(scope="module")
def engine():
    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip("shipped weights missing")
    return pyfer.Engine(SHIPPED_WEIGHTS, threads=1)


@pytest.fixture(scope="module")
def rec():
    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip("shipped weights missing")
    return pyfer.Recognizer(SHIPPED_WEIGHTS, threads=1)


def documented(e: BaseException) -> bool:
    return isinstance(e, DOCUMENTED) and len(str(e)) > 10


def make_values(draw, shape, dtype) -> np.ndarray:
    """An array of ``shape``/``dtype`` filled with a mix of special and random values."""
    n = int(np.prod(shape)) if len(shape) else 1
    mode = draw(st.sampled_from(["normal", "special", "mixed", "const", "range"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "normal":
        v = rng.standard_normal(n) * draw(st.sampled_from([1.0, 1e-3, 1e3, 1e20]))
    elif mode == "special":
        v = rng.choice(SPECIAL, n)
    elif mode == "mixed":
        v = rng.standard_normal(n)
        k = draw(st.integers(0, max(0, min(n, 50))))
        if k:
            v[rng.choice(n, k)] = rng.choice(SPECIAL, k)
    elif mode == "const":
        v = np.full(n, draw(st.sampled_from(SPECIAL)))
    else:
        v = rng.uniform(-300, 300, n)
    dt = np.dtype(dtype)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if dt.kind in "fc":
            a = v.astype(dt)
        elif dt.kind in "iu":
            info = np.iinfo(dt)
            a = np.nan_to_num(v, nan=0, posinf=info.max, neginf=info.min).clip(info.min, info.max).astype(dt)
        elif dt.kind == "b":
            a = v > 0
        elif dt.kind == "O":
            a = np.array(list(v), dtype=object)
        elif dt.kind in "US":
            a = np.array(["1.5"] * n, dtype=dt)
        elif dt.kind in "mM":
            a = np.zeros(n, dtype=dt)
        else:
            a = np.zeros(n, dtype=dt)
    return a.reshape(shape)


@st.composite
def arrays_with_layout(draw, shapes, dtypes=st.sampled_from(DTYPES)):
    """(array, description): random values in a random memory layout with the given logical shape."""
    shape = tuple(draw(shapes))
    dtype = draw(dtypes)
    layout = draw(st.sampled_from(["C", "F", "sliced", "reversed", "transposed", "misaligned", "readonly"]))
    if layout == "F":
        a = np.asfortranarray(make_values(draw, shape, dtype))
    elif layout == "sliced" and shape and int(np.prod(shape, dtype=np.int64)) * 3 ** len(shape) <= 4 * MAX_ELEMS:
        steps = [draw(st.integers(1, 3)) for _ in shape]
        big = make_values(draw, tuple(s * k for s, k in zip(shape, steps)), dtype)
        a = big[tuple(slice(None, None, k) for k in steps)]
    elif layout == "reversed" and shape:
        a = make_values(draw, shape, dtype)[tuple(slice(None, None, -1) for _ in shape)]
    elif layout == "transposed" and len(shape) >= 2:
        a = make_values(draw, shape[::-1], dtype).T
    elif layout == "misaligned" and np.dtype(dtype).kind in "fiuc" and np.dtype(dtype).itemsize > 1:
        v = make_values(draw, shape, dtype)
        buf = bytearray(v.nbytes + 1)
        a = np.frombuffer(buf, dtype=v.dtype, count=v.size, offset=1).reshape(shape)
        a[...] = v
    else:
        a = make_values(draw, shape, dtype)
        if layout == "readonly":
            a.flags.writeable = False
    return a, f"{layout} {a.dtype} {a.shape} strides={a.strides}"


# -- Engine.forward --------------------------------------------------------------------------
def engine_shapes():
    good = st.tuples(st.integers(1, 9), st.just(1), st.just(64), st.just(64))
    near = st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from([0, 1, 63, 64, 65]),
                     st.sampled_from([0, 1, 63, 64, 65]))
    other = st.lists(st.integers(0, 8), min_size=0, max_size=6).map(tuple) | \
        st.lists(st.sampled_from([1, 64]), min_size=1, max_size=6).map(tuple)
    return st.one_of(good, good, near, other).filter(small)


MAX_ELEMS = 1 << 18  # keeps every generated array (and the sanitizer run) small


def small(shape) -> bool:
    return int(np.prod(shape, dtype=np.int64)) <= MAX_ELEMS


def check_logits(x: np.ndarray, y: np.ndarray, nclass: int):
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (x.shape[0], nclass)
    xf = np.asarray(x)
    if xf.dtype.kind in "iub" or (xf.dtype.kind == "f" and np.isfinite(xf.astype(np.float64)).all()
                                  and np.abs(xf.astype(np.float64)).max(initial=0) < 1e6):
        assert np.isfinite(y).all(), "finite, moderate input gave non-finite logits"


@fuzz(150)
@given(arr=arrays_with_layout(engine_shapes()))
def test_engine_forward(engine, arr):
    x, desc = arr
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's overflow-on-cast warnings for float64 -> float32
            y = engine.forward(x)
    except DOCUMENTED as e:
        event(f'refused: {type(e).__name__}')
        assert documented(e), (desc, e)
        kind = np.asarray(x).dtype.kind
        ok_shape = x.ndim == 4 and x.shape[0] > 0 and x.shape[1:] == (1, 64, 64)
        assert not (ok_shape and kind in "fiu"), f"valid input refused: {desc}: {e}"
        return
    event('valid result')
    check_logits(x, y, engine.num_classes)
    # the same image alone gives the same logits as inside the batch (no cross-talk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y0 = engine.forward(np.ascontiguousarray(x[:1]))
    np.testing.assert_allclose(y0, y[:1], rtol=1e-4, atol=1e-4, equal_nan=True)


@fuzz(150)
@given(arr=arrays_with_layout(engine_shapes()))
def test_raw_binding_forward(engine, arr):
    """The pybind11 layer on its own (no numpy conversion in front): refuses, never crashes."""
    x, desc = arr
    try:
        y = engine._impl.forward(x)
    except DOCUMENTED as e:
        event(f'refused: {type(e).__name__}')
        assert documented(e), (desc, e)
        return
    assert x.dtype == np.float32 and x.flags.c_contiguous, desc
    event('valid result')
    check_logits(x, y, engine.num_classes)


@fuzz(40)
@given(obj=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.floats(), max_size=5),
                     st.lists(st.lists(st.integers(), max_size=3), max_size=3), st.binary(max_size=8),
                     st.dictionaries(st.text(max_size=2), st.integers(), max_size=2)))
def test_engine_forward_non_arrays(engine, obj):
    with pytest.raises(DOCUMENTED) as ei:
        engine.forward(obj)
    assert documented(ei.value)


# -- Recognizer ------------------------------------------------------------------------------
def check_faces(faces, image_shape, class_names):
    assert isinstance(faces, list)
    h, w = image_shape[:2]
    for f in faces:
        assert isinstance(f, pyfer.Face)
        x, y, bw, bh = f.box
        assert all(type(v) is int for v in f.box) and bw >= 1 and bh >= 1
        assert 0 <= x < w and 0 <= y < h and x + bw <= w and y + bh <= h, (f.box, image_shape)
        p = np.array(list(f.scores.values()))
        assert tuple(f.scores) == tuple(class_names) and np.isfinite(p).all()
        assert (p >= 0).all() and (p <= 1).all() and abs(p.sum() - 1) < 1e-5
        assert f.label in class_names and f.confidence == f.scores[f.label]


def image_shapes():
    side = st.integers(0, 160)
    return st.one_of(st.tuples(side, side), st.tuples(side, side, st.sampled_from([0, 1, 2, 3, 4, 5])),
                     st.lists(st.integers(0, 5), max_size=5).map(tuple)).filter(small)


@pytest.fixture(scope="module")
def astro():
    import cv2

    return cv2.imread(str(ASTRONAUT))


@fuzz(120)
@given(arr=arrays_with_layout(image_shapes()))
def test_predict_random_arrays(rec, arr):
    x, desc = arr
    try:
        faces = rec.predict(x)
    except DOCUMENTED as e:
        event(f'refused: {type(e).__name__}')
        assert documented(e), (desc, e)
        return
    event('valid result')
    check_faces(faces, x.shape, rec.class_names)


@fuzz(60)
@given(data=st.data())
def test_predict_real_face_perturbed(rec, astro, data):
    """The astronaut photo through random dtype/layout/value changes and crops: valid faces or a
    documented refusal (e.g. NaN pixels, values outside [0, 255])."""
    img = astro
    y0, x0 = data.draw(st.integers(0, 100)), data.draw(st.integers(0, 100))
    img = img[y0:y0 + data.draw(st.integers(1, 512)), x0:x0 + data.draw(st.integers(1, 512))]
    conv = data.draw(st.sampled_from(["u8", "gray", "bgra", "f32", "f64/255", "u16", "i64", "noise", "nan", "neg",
                                      "rev", "F"]))
    if conv == "gray":
        img = img.mean(axis=2).astype(np.uint8)
    elif conv == "bgra":
        img = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    elif conv == "f32":
        img = img.astype(np.float32)
    elif conv == "f64/255":
        img = img / 255.0
    elif conv == "u16":
        img = img.astype(np.uint16) * 257
    elif conv == "i64":
        img = img.astype(np.int64)
    elif conv == "noise":
        img = np.clip(img + np.random.default_rng(0).normal(0, 40, img.shape), 0, 255).astype(np.uint8)
    elif conv == "nan":
        img = img.astype(np.float32)
        img[data.draw(st.integers(0, img.shape[0] - 1)), 0, 0] = np.nan
    elif conv == "neg":
        img = img.astype(np.int16) - 256
    elif conv == "rev":
        img = img[::-1, ::-1]
    elif conv == "F":
        img = np.asfortranarray(img)
    try:
        faces = rec.predict(img)
    except DOCUMENTED as e:
        event(f'refused: {type(e).__name__}')
        assert documented(e) and conv in ("nan", "neg"), (conv, e)
        return
    assert conv not in ("nan", "neg")
    event('valid result')
    check_faces(faces, img.shape, rec.class_names)


box_value = st.one_of(st.integers(-1000, 1000), st.floats(allow_nan=True, allow_infinity=True),
                      st.sampled_from([2**31, 2**63, -2**63, 10**30]), st.text(max_size=2), st.none())


@fuzz(120)
@given(boxes=st.lists(st.one_of(st.lists(box_value, min_size=4, max_size=4), st.lists(box_value, max_size=6),
                                st.tuples(st.integers(-50, 300), st.integers(-50, 300), st.integers(-5, 400),
                                          st.integers(-5, 400)), box_value), max_size=4))
def test_predict_random_boxes(rec, astro, boxes):
    try:
        faces = rec.predict(astro, boxes=boxes)
    except DOCUMENTED as e:
        event(f'refused: {type(e).__name__}')
        assert documented(e), (boxes, e)
        return
    event('valid result')
    check_faces(faces, astro.shape, rec.class_names)
    assert len(faces) == len(boxes)


def _real_image_bytes(kind: str) -> bytes:
    import cv2

    ok, buf = cv2.imencode(kind, cv2.imread(str(ASTRONAUT))[::2, ::2])
    assert ok
    return buf.tobytes()


JPEG, PNG = _real_image_bytes(".jpg"), _real_image_bytes(".png")


@fuzz(100)
@given(data=st.data())
def test_predict_corrupt_image_files(rec, tmp_path, data):
    kind = data.draw(st.sampled_from(["random", "jpeg_flip", "png_flip", "jpeg_trunc", "png_trunc", "empty"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=2048))
    elif kind == "empty":
        blob = b""
    else:
        base = bytearray(JPEG if kind.startswith("jpeg") else PNG)
        if kind.endswith("flip"):
            for _ in range(data.draw(st.integers(1, 20))):
                base[data.draw(st.integers(0, len(base) - 1))] ^= data.draw(st.integers(1, 255))
        else:
            base = base[:data.draw(st.integers(0, len(base) - 1))]
        blob = bytes(base)
    suffix = data.draw(st.sampled_from([".jpg", ".png", ".bmp", ".txt", ""]))
    p = tmp_path / f"fuzz{suffix}"
    p.write_bytes(blob)
    for call in (lambda: rec.predict(p), lambda: rec.predict(str(p)), lambda: rec.predict_batch([p])[0]):
        try:
            faces = call()
        except DOCUMENTED as e:
            event(f'refused: {type(e).__name__}')
            assert documented(e), (kind, e)
            continue
        event('valid result')
        check_faces(faces, (10**6, 10**6), rec.class_names)


def test_predict_paths_that_are_not_files(rec, tmp_path):
    for p in (tmp_path / "missing.png", tmp_path):
        with pytest.raises(DOCUMENTED):
            rec.predict(p)
    with pytest.raises(DOCUMENTED):
        rec.predict(12345)


@fuzz(60)
@given(items=st.lists(st.one_of(st.sampled_from(["astro", "astro_path", "gray", "tiny", "nan", "bad_shape",
                                                 "missing", "none", "list"])), max_size=5))
def test_predict_batch_mixed(rec, astro, items):
    table = {"astro": astro, "astro_path": ASTRONAUT, "gray": astro[..., 0], "tiny": np.zeros((2, 2), np.uint8),
             "nan": np.full((8, 8), np.nan), "bad_shape": np.zeros((4, 4, 7), np.uint8),
             "missing": Path("/nonexistent/x.png"), "none": None, "list": [[1, 2], [3, 4]]}
    images = [table[k] for k in items]
    # with return_exceptions, each bad item fails alone and the rest equal their own predict
    kept = rec.predict_batch(images, return_exceptions=True)
    assert len(kept) == len(images)
    for k, img, faces in zip(items, images, kept):
        if isinstance(faces, Exception):
            assert isinstance(faces, DOCUMENTED) and documented(faces) and k in {"nan", "bad_shape", "missing",
                                                                                  "none", "list"}, (k, faces)
        else:
            assert [f.box for f in faces] == [f.box for f in rec.predict(img)]
    try:
        out = rec.predict_batch(images)
    except DOCUMENTED as e:
        event(f'refused: {type(e).__name__}')
        assert documented(e) and set(items) & {"nan", "bad_shape", "missing", "none", "list"}, (items, e)
        return
    assert len(out) == len(images)
    for k, img, faces in zip(items, images, out):
        event('valid result')
        check_faces(faces, astro.shape if "astro" in k else np.asarray(img).shape, rec.class_names)
    # batch results equal one-by-one results
    for img, faces in zip(images, out):
        single = rec.predict(img)
        assert [f.box for f in single] == [f.box for f in faces]
        for a, b in zip(single, faces):
            assert max(abs(a.scores[k] - b.scores[k]) for k in a.scores) < 1e-5


def classify_inputs():
    stacked = arrays_with_layout(st.one_of(st.tuples(st.integers(0, 5), st.integers(0, 80), st.integers(0, 80)),
                                           st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 40),
                                                     st.integers(0, 5)),
                                           st.lists(st.integers(0, 4), max_size=5).map(tuple)))
    one = arrays_with_layout(st.one_of(st.tuples(st.integers(0, 90), st.integers(0, 90)),
                                       st.tuples(st.integers(0, 50), st.integers(0, 50), st.sampled_from([1, 3, 4, 2]))),
                             st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_, ">f4"]))
    return st.one_of(stacked.map(lambda t: (t[0], t[1])),
                     st.lists(one, max_size=4).map(lambda ts: ([t[0] for t in ts], " | ".join(t[1] for t in ts))))


@fuzz(150)
@given(inp=classify_inputs())
def test_classify(rec, inp):
    crops, desc = inp
    try:
        p = rec.classify(crops)
    except DOCUMENTED as e:
        event(f'refused: {type(e).__name__}')
        assert documented(e), (desc, e)
        return
    event('valid result')
    n = len(crops)
    assert isinstance(p, np.ndarray) and p.shape == (n, len(rec.class_names)), desc
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    if n:
        np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)


def test_classify_real_faces_match_engine(rec, fer_faces):
    """Sanity anchor for the fuzzing above: real FERPlus crops through classify agree with the
    engine on the same preprocessed batch, in every memory layout."""
    faces, _ = fer_faces
    want = rec.classify(faces[:16])
    for variant in (np.asfortranarray(faces[:16]), faces[:16][:, ::-1, ::-1][:, ::-1, ::-1], list(faces[:16]),
                    faces[:16].astype(np.float64) / 255.0, faces[:16, :, :, None]):
        np.testing.assert_allclose(rec.classify(variant), want, atol=1e-5)


# pieces a labels CSV is made of, good and bad: headers in any case, quotes, separators, line ends,
# a BOM, NULs, bytes that are not UTF-8, huge fields
CSV_PIECES = st.sampled_from([b"path", b"Label", b"label", b"PATH", b" path ", b",", b";", b"\t", b'"', b'""',
                              b"\n", b"\r\n", b"\r", b"\xef\xbb\xbf", b"\x00", b"\xff\xfe", b"a.png", b"../x.jpg",
                              b"happy", b"Angry", b"grumpy", b"", b" ", b"x" * 140_000, "é".encode(), b"\xe9"])


@fuzz(300)
@given(st.lists(CSV_PIECES, max_size=40))
def test_labels_csv_fuzz(tmp_path, pieces):
    """``pyfer evaluate``'s CSV reader (and training's manifests): rows or a ValueError naming the
    file, never another exception (a 140 KB field was a csv.Error traceback before session 34's
    review)."""
    from pyfer.evaluate import labelled_images
    from pyfer.preprocess import EMOTIONS

    path = tmp_path / "labels.csv"
    path.write_bytes(b"".join(pieces))
    try:
        rows = labelled_images(path, EMOTIONS)
    except ValueError as e:
        assert "labels.csv" in str(e), e
        event("refused")
        return
    assert rows and all(0 <= c < len(EMOTIONS) for _, c in rows)
    event("read")
