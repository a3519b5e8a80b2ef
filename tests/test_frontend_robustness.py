"""Bad input to the front end (issue 18, item 5): ``Recognizer.predict``, ``pyfer predict`` on
folders, ``pyfer video``. Every input gets a result, a clear error or a reported skip -- no
crash, no hang (subprocesses run under a timeout), nothing lost (every good image / readable
frame is in the output).

* folders with truncated, empty, garbage, mis-named files, a sub-folder and a FIFO named like
  images, a dangling symlink (fixed cases in a subprocess; random folders with hypothesis);
* an image with 300 faces; 1x1 (and 1xN / Nx1) images; a 20000x20000 image;
* video with corrupt frames (garbage inside one frame, over a chunk header, truncated file),
  empty and non-video files.

Three bugs found here (a pixel-limit header gave ``cv2.error`` and a CLI traceback; a corrupt
MJPG frame ended ``pyfer video`` silently) were fixed in the front end; their tests are the last
three below the folder tests and ``test_video_garbage_inside_one_frame`` (RELIABILITY.md, "Front
end: bad input").
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ASTRONAUT, ASTRONAUT_FACE, SHIPPED_WEIGHTS, pyfer_subprocess

pytest.importorskip("pyfer._engine")
import pyfer  # noqa: E402
from pyfer.cli import main  # noqa: E402

TIMEOUT = 300  # s for one CLI subprocess: a hang fails the test instead of blocking the suite
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


@pytest.fixture(scope="module")
def rec():
    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip("shipped weights missing")
    return pyfer.Recognizer(SHIPPED_WEIGHTS)


@pytest.fixture(scope="module")
def astronaut():
    return cv2.imread(str(ASTRONAUT))


def cli(*args, timeout=TIMEOUT):
    """``pyfer ARGS`` in a subprocess: (exit status, stdout, stderr)."""
    p = pyfer_subprocess(*args, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def no_traceback(err: str) -> None:
    assert "Traceback" not in err, err[-3000:]


def bmp_header(w: int, h: int) -> bytes:
    """A 70-byte BMP whose header announces w x h pixels (24-bit) with no pixel data behind it."""
    row = ((w * 3 + 3) // 4) * 4
    return (b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, (row * h) & 0xFFFFFFFF, 2835, 2835, 0, 0)
            + b"\0" * 16)


# -- folders ---------------------------------------------------------------------------------
def bad_files(astronaut) -> dict[str, bytes]:
    jpg = cv2.imencode(".jpg", astronaut)[1].tobytes()
    png = cv2.imencode(".png", astronaut)[1].tobytes()
    rng = np.random.default_rng(0)
    return {
        "trunc_half.jpg": jpg[: len(jpg) // 2],
        "trunc_header.jpg": jpg[:20],
        "trunc_half.png": png[: len(png) // 2],
        "trunc_header.png": png[:30],
        "empty.jpg": b"",
        "garbage.png": rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "text.jpeg": b"this is not an image\n" * 20,
        "png_named.bmp": png[:100],
        "one_byte.webp": b"R",
    }


def test_folder_with_unreadable_and_truncated_files(tmp_path, astronaut):
    """``pyfer predict DIR --json``: the good images all come out, each bad file is named on
    stderr, exit status 1, no traceback; sub-folders, FIFOs and dangling links named like images
    are skipped (not opened: a FIFO would block)."""
    d = tmp_path / "photos"
    d.mkdir()
    good = ["a_good.png", "m_good.jpg", "z_good.bmp"]
    for name in good:
        cv2.imwrite(str(d / name), astronaut)
    bad = bad_files(astronaut)
    for name, data in bad.items():
        (d / name).write_bytes(data)
    (d / "folder.jpg").mkdir()
    os.mkfifo(d / "pipe.png")
    (d / "dangling.jpg").symlink_to(d / "does_not_exist.jpg")
    unreadable = d / "no_permission.png"
    unreadable.write_bytes(cv2.imencode(".png", astronaut)[1].tobytes())
    unreadable.chmod(0)
    can_read = os.access(unreadable, os.R_OK)  # root reads it anyway
    t0 = time.perf_counter()
    rc, out, err = cli("predict", d, "--json", "--weights", SHIPPED_WEIGHTS)
    dt = time.perf_counter() - t0
    no_traceback(err)
    rows = [json.loads(s) for s in out.splitlines()]
    got = {Path(r["image"]).name: r for r in rows if "faces" in r}
    expect_ok = set(good) | ({unreadable.name} if can_read else set())
    assert set(got) == expect_ok, (sorted(got), err)
    # each file that could not be read has a line with its error (a folder, pipe or dangling link is no image)
    errors = {Path(r["image"]).name for r in rows if "error" in r}
    assert errors == set(bad) | ({unreadable.name} if not can_read else set()), (sorted(errors), err)
    for name in expect_ok:
        assert len(got[name]["faces"]) == 1, got[name]
    assert rc == 1, (rc, err)
    for name in list(bad) + ([] if can_read else [unreadable.name]):
        assert any(name in line for line in err.splitlines()), (name, err)
    for skipped in ("folder.jpg", "pipe.png", "dangling.jpg"):
        assert skipped not in out
    assert f"{len(expect_ok)} image(s)" in err and f"{len(bad) + (not can_read)} failed" in err, err
    print(f"\nfolder: {len(expect_ok)} good, {len(bad)} bad -> rc {rc} in {dt:.1f} s")


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(["good", "trunc", "empty", "garbage", "flipped"]), min_size=1, max_size=7),
       cut=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_random_folders(tmp_path_factory, astronaut, kinds, cut, seed):
    """Random folders of good, truncated, empty, garbage and byte-flipped images through the
    in-process CLI: every good image is in the output, every failure is reported, the exit status
    says whether anything failed; a flipped image either decodes (and is in the output) or is
    reported."""
    d = tmp_path_factory.mktemp("rand")
    rng = np.random.default_rng(seed)
    small = cv2.resize(astronaut, (160, 160))
    names = []
    for i, kind in enumerate(kinds):
        ext = [".jpg", ".png", ".bmp"][i % 3]
        data = cv2.imencode(ext, small)[1].tobytes()
        if kind == "trunc":
            data = data[: max(1, int(len(data) * cut * 0.95))]
        elif kind == "empty":
            data = b""
        elif kind == "garbage":
            data = rng.integers(0, 256, int(50 + 4000 * cut), dtype=np.uint8).tobytes()
        elif kind == "flipped":
            b = bytearray(data)
            for j in rng.integers(0, len(b), 1 + int(10 * cut)):
                b[j] ^= int(rng.integers(1, 256))
            data = bytes(b)
        name = f"{i:02d}_{kind}{ext}"
        (d / name).write_bytes(data)
        names.append(name)
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["predict", str(d), "--json", "--weights", str(SHIPPED_WEIGHTS), "--detector", "haar"])
    lines = [json.loads(s) for s in out.getvalue().splitlines()]
    done = {Path(r["image"]).name for r in lines if "faces" in r}
    assert {Path(r["image"]).name for r in lines if "error" in r} == {n for n in names if n in err.getvalue()}
    reported = {n for n in names if n in err.getvalue()}
    assert done | reported == set(names), (names, done, reported)  # nothing lost
    assert not done & reported
    assert {n for n in names if "_good" in n} <= done
    assert {n for n in names if "_empty" in n} <= reported
    assert rc == (1 if reported else 0)


# -- many faces, tiny and huge images ------------------------------------------------------------
def face_tile(astronaut, size=80):
    x, y, w, h = ASTRONAUT_FACE
    return cv2.resize(astronaut[max(0, y - 16):y + h + 16, max(0, x - 16):x + w + 16], (size, size))


def test_hundreds_of_faces(rec, astronaut):
    """A 15 x 20 grid of faces (300, 80 px each, 1600x1200): all found, each box in its own cell,
    valid scores (the time is printed: speed is for the benchmarks)."""
    tile = face_tile(astronaut)
    grid = np.tile(tile, (15, 20, 1))
    t0 = time.perf_counter()
    faces = rec.predict(grid)
    dt = time.perf_counter() - t0
    assert len(faces) >= 290, len(faces)  # 300 measured
    cells = set()
    for f in faces:
        x, y, w, h = f.box
        assert 0 <= x and 0 <= y and x + w <= grid.shape[1] and y + h <= grid.shape[0], f.box
        cells.add(((y + h // 2) // 80, (x + w // 2) // 80))
        assert abs(sum(f.scores.values()) - 1) < 1e-4 and f.label in f.scores
    assert len(cells) == len(faces)  # one face per cell, no duplicates
    print(f"\n{len(faces)} of 300 faces in {dt:.2f} s")


def test_hundreds_of_faces_cli(tmp_path, astronaut):
    """The same grid as a file through ``pyfer predict --csv -``: one row per face."""
    p = tmp_path / "crowd.png"
    cv2.imwrite(str(p), np.tile(face_tile(astronaut), (15, 20, 1)))
    rc, out, err = cli("predict", p, "--csv", "-", "--weights", SHIPPED_WEIGHTS)
    no_traceback(err)
    assert rc == 0, err
    assert len(out.splitlines()) - 1 >= 290


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 3), (1, 1, 4), (1, 5000, 3), (5000, 1), (2, 2, 3), (3, 7)])
def test_tiny_and_thin_images(rec, shape):
    img = np.full(shape, 128, np.uint8)
    assert rec.predict(img) == []
    assert rec.predict_batch([img, img]) == [[], []]


def test_one_pixel_files_cli(tmp_path):
    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif"):
        cv2.imwrite(str(tmp_path / f"px{ext}"), np.full((1, 1, 3), 200, np.uint8))
    rc, out, err = cli("predict", tmp_path, "--json", "--weights", SHIPPED_WEIGHTS)
    no_traceback(err)
    rows = [json.loads(s) for s in out.splitlines()]
    assert rc == 0 and len(rows) == 5 and all(r["faces"] == [] for r in rows), (rc, out, err)


def test_20000x20000_image(rec, astronaut):
    """A 20000x20000 BGR image (1.2 GB): no face in a flat one; one 400 px face pasted far from
    the corner is found where it is (~10 s, ~2 GB)."""
    big = np.full((20000, 20000, 3), 128, np.uint8)
    t0 = time.perf_counter()
    assert rec.predict(big) == []
    big[9000:9400, 12000:12400] = cv2.resize(face_tile(astronaut), (400, 400))
    faces = rec.predict(big)
    dt = time.perf_counter() - t0
    assert len(faces) == 1, [f.box for f in faces]
    x, y, w, h = faces[0].box
    assert 12000 <= x + w / 2 <= 12400 and 9000 <= y + h / 2 <= 9400, faces[0].box
    print(f"\n20000x20000: two predicts in {dt:.1f} s")
    del big


def test_20000x20000_file_cli(tmp_path):
    """A 20000x20000 gray PNG file (a few hundred KB on disk, 400 MB decoded) through the CLI: over
    the default MAX_IMAGE_PIXELS (2^28) it is refused in one line; with PYFER_MAX_IMAGE_PIXELS
    raised it decodes and is searched."""
    p = tmp_path / "huge.png"
    assert cv2.imwrite(str(p), np.full((20000, 20000), 90, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    rc, out, err = cli("predict", p, "--json", "--weights", SHIPPED_WEIGHTS)
    no_traceback(err)
    assert rc == 1 and "PYFER_MAX_IMAGE_PIXELS" in err, (rc, out, err)
    assert "PYFER_MAX_IMAGE_PIXELS" in json.loads(out)["error"]  # its --json line says why
    p2 = pyfer_subprocess("predict", p, "--json", "--weights", SHIPPED_WEIGHTS, timeout=TIMEOUT,
                          env={"PYFER_MAX_IMAGE_PIXELS": str(20000 * 20000)})
    no_traceback(p2.stderr)
    assert p2.returncode == 0 and json.loads(p2.stdout)["faces"] == [], (p2.returncode, p2.stdout, p2.stderr)
    bad = pyfer_subprocess("predict", p, "--weights", SHIPPED_WEIGHTS, timeout=TIMEOUT,
                           env={"PYFER_MAX_IMAGE_PIXELS": "lots"})
    no_traceback(bad.stderr)
    assert bad.returncode != 0 and "PYFER_MAX_IMAGE_PIXELS must be a whole number" in bad.stderr, bad.stderr


def test_header_announcing_too_many_pixels_is_a_value_error(rec, tmp_path):
    p = tmp_path / "bomb.bmp"
    p.write_bytes(bmp_header(40000, 40000))  # 70 bytes announcing 1.6 G pixels
    with pytest.raises(ValueError):
        rec.predict(p)


def test_folder_with_a_pixel_bomb_cli(tmp_path, astronaut):
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a_bomb.bmp").write_bytes(bmp_header(40000, 40000))
    cv2.imwrite(str(d / "b_good.png"), astronaut)
    rc, out, err = cli("predict", d, "--json", "--weights", SHIPPED_WEIGHTS)
    assert rc == 1 and "Traceback" not in err, err[-2000:]
    assert [(Path(r["image"]).name, "faces" in r) for r in map(json.loads, out.splitlines())] == [
        ("a_bomb.bmp", False), ("b_good.png", True)]


def png_chunk(kind: bytes, data: bytes, length: int | None = None) -> bytes:
    """A PNG chunk; ``length``: what its length field announces (default: the data's)."""
    import zlib

    return (struct.pack(">I", len(data) if length is None else length) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def png_with_chunk_length(n: int) -> bytes:
    """A 1x1 PNG whose IDAT chunk announces n bytes of data (the file holds 10)."""
    import zlib

    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(b"\0\0"), length=n) + png_chunk(b"IEND", b""))


def load_in_a_child(path: Path) -> tuple[str, int]:
    """``load_image(path)`` in a fresh interpreter: (its ValueError's message, "" if none; its peak
    RSS in MB). VmHWM is that process's own peak; ru_maxrss would carry over the forking pytest's."""
    code = ("import sys\n"
            "from pyfer.recognizer import load_image\n"
            "try:\n    load_image(sys.argv[1])\n    print()\nexcept ValueError as e:\n    print(e)\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "print(int(hwm.split()[1]) // 1024)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=TIMEOUT, env=ENV).stdout.splitlines()
    assert len(out) == 2, out
    return out[0], int(out[1])


# fuzz finding 5 (session 22, RELIABILITY.md), as CI's fuzzer wrote it: no IDAT, an IEND holding
# 10 bytes, then a chunk announcing 0xfffffd07 bytes; OpenCV 4.14 reads on past an IEND that
# comes before any pixel data (also an empty one), and took 4.2 GB
PNG_HUGE_CHUNK_AFTER_EARLY_IEND = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7f9b55"
    "0000000a49454e44081d6368020000840083fffffffffffffd0749454e44ae426082")


# the second case is fuzz finding 4 (session 11, RELIABILITY.md): the file ends inside the huge
# chunk's header-plus-data, 42 bytes in all, so the chunk check's loop (which wanted 12 bytes of
# header and CRC) never looked at it, and OpenCV 4.14 took 3.1 GB
@pytest.mark.parametrize("content", [png_with_chunk_length(0x7FFF0000), png_with_chunk_length(0xC000000A)[:42],
                                     PNG_HUGE_CHUNK_AFTER_EARLY_IEND],
                         ids=["whole_file", "cut_inside_the_chunk", "after_an_iend_before_any_idat"])
def test_png_announcing_a_huge_chunk_costs_no_memory(tmp_path, content):
    """A PNG whose IDAT length field announces gigabytes: a ValueError, and the process may
    not grow by gigabytes on the way (measured in a subprocess: peak RSS under 600 MB)."""
    p = tmp_path / "chunk_bomb.png"
    p.write_bytes(content)
    error, peak_mb = load_in_a_child(p)
    assert error.startswith("cannot decode"), error
    assert peak_mb < 600, f"peak RSS {peak_mb} MB for a 57-byte file"


def flat_png(w: int, h: int) -> bytes:
    """A valid all-black 1-bit PNG: a few bytes per row once deflated, w x h pixels decoded."""
    import zlib

    z = zlib.compressobj(9)
    row = bytes(1 + (w + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


def test_a_valid_png_of_more_pixels_than_pyfer_decodes_is_refused_before_decoding(tmp_path):
    """A 109 KB valid PNG of 30000 x 30000 pixels: refused from its header. OpenCV allows up to
    2^30 pixels and took 4 s and 1.8 GB of memory to decode it (a 2.6 MB colour one: 20 s, 5.2 GB;
    a helper's review, session 46)."""
    p = tmp_path / "deflate_bomb.png"
    p.write_bytes(flat_png(30000, 30000))
    error, peak_mb = load_in_a_child(p)
    assert "announces 30000 x 30000 pixels, more than pyfer decodes" in error, error
    assert peak_mb < 600, f"peak RSS {peak_mb} MB"


def test_max_image_pixels_is_the_line(monkeypatch):
    """``pyfer.recognizer.MAX_IMAGE_PIXELS`` is what a PNG's and a JPEG's header are held to (every
    other format: tests/test_image_size.py): at it an image decodes, one pixel row over it is
    refused."""
    import pyfer.recognizer as r

    monkeypatch.setattr(r, "MAX_IMAGE_PIXELS", 40 * 30)
    assert r.load_image(flat_png(40, 30)).shape == (30, 40)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((30, 40), np.uint8))
    assert r.load_image(jpeg.tobytes()).shape[:2] == (30, 40)
    with pytest.raises(ValueError, match="announces 40 x 31 pixels, more than pyfer decodes"):
        r.load_image(flat_png(40, 31))
    ok, jpeg = cv2.imencode(".jpg", np.zeros((31, 40), np.uint8))
    with pytest.raises(ValueError, match="announces 40 x 31 pixels, more than pyfer decodes"):
        r.load_image(jpeg.tobytes())


def test_header_announcing_20000x20000_without_data(rec, tmp_path):
    """A 70-byte BMP announcing 20000x20000 pixels (under OpenCV's limit): a clear ValueError."""
    p = tmp_path / "liar.bmp"
    p.write_bytes(bmp_header(20000, 20000))
    with pytest.raises(ValueError, match="decode"):
        rec.predict(p)


# -- video -----------------------------------------------------------------------------------
N_FRAMES = 24


@pytest.fixture(scope="module")
def mjpg_video(tmp_path_factory, astronaut):
    """An MJPG AVI of N_FRAMES frames (one JPEG per frame, so single frames can be damaged) and
    the offset of each frame's JPEG start."""
    p = tmp_path_factory.mktemp("video") / "clip.avi"
    img = cv2.resize(astronaut, (256, 256))
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (256, 256))
    for i in range(N_FRAMES):
        w.write(np.roll(img, 2 * i, axis=1))
    w.release()
    raw = p.read_bytes()
    soi = [i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] == 0xD8]
    assert len(soi) == N_FRAMES
    return raw, soi


def readable_frames(path: Path) -> int:
    """Frames OpenCV can decode when it keeps reading past failures."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    for _ in range(N_FRAMES + 5):
        ok, _f = cap.read()
        n += ok
    cap.release()
    return n


def run_video(path: Path):
    rc, out, err = cli("video", path, "--jsonl", "-", "--no-progress", "--weights", SHIPPED_WEIGHTS)
    no_traceback(err)
    rows = [json.loads(s) for s in out.splitlines()]
    assert [r["frame"] for r in rows] == list(range(len(rows)))
    return rc, rows, err


def damaged(tmp_path, raw: bytes, name: str) -> Path:
    p = tmp_path / name
    p.write_bytes(raw)
    return p


def test_video_garbage_over_a_chunk_header(tmp_path, mjpg_video):
    raw, soi = mjpg_video
    b = bytearray(raw)
    b[soi[8] - 8:soi[8] + 1200] = np.random.default_rng(1).integers(0, 256, 1208, dtype=np.uint8).tobytes()
    p = damaged(tmp_path, bytes(b), "chunk.avi")
    rc, rows, err = run_video(p)
    assert rc == 0 and len(rows) == readable_frames(p) == N_FRAMES - 1


def test_video_truncated(tmp_path, mjpg_video):
    raw, soi = mjpg_video
    p = damaged(tmp_path, raw[: soi[15] + 500], "truncated.avi")
    rc, rows, err = run_video(p)
    assert rc == 0 and len(rows) == readable_frames(p) >= 15, (len(rows), err[-500:])


def test_video_garbage_inside_one_frame(tmp_path, mjpg_video):
    raw, soi = mjpg_video
    b = bytearray(raw)
    b[soi[8] + 200:soi[8] + 1200] = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    p = damaged(tmp_path, bytes(b), "inside.avi")
    n = readable_frames(p)
    assert n == N_FRAMES - 1  # OpenCV itself skips just the damaged frame
    rc, rows, err = run_video(p)
    assert len(rows) == n or (rc != 0 and "frame" in err), (len(rows), n, rc, err[-500:])


@pytest.mark.parametrize("content", [b"", b"not a video\n" * 50, b"RIFF\x00\x00\x00\x00AVI LIST"])
def test_video_not_a_video(tmp_path, content):
    p = tmp_path / "bad.avi"
    p.write_bytes(content)
    rc, out, err = cli("video", p, "--jsonl", "-", "--no-progress", "--weights", SHIPPED_WEIGHTS)
    no_traceback(err)
    assert rc == 2 and "cannot open video" in err and out == "", (rc, out, err)


def jpeg_variants() -> dict[str, tuple[bytes, int]]:
    """name -> (file bytes, where its first end-of-image marker ends): JPEGs as encoders write
    them (baseline, progressive, restart markers, gray, a whole JPEG inside an APP segment as a
    thumbnail) and as phones and cameras leave them (a Motion Photo's video after the image,
    another SOI after it)."""
    import random

    img = cv2.imread(str(ASTRONAUT))
    enc = {"baseline": [], "progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
           "restarts": [cv2.IMWRITE_JPEG_RST_INTERVAL, 2], "low_quality": [cv2.IMWRITE_JPEG_QUALITY, 5]}
    files = {k: cv2.imencode(".jpg", img, v)[1].tobytes() for k, v in enc.items()}
    files["gray"] = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))[1].tobytes()
    base = files["baseline"]
    thumb = cv2.imencode(".jpg", cv2.resize(img, (32, 32)))[1].tobytes()
    files["thumbnail_in_app2"] = base[:2] + b"\xff\xe2" + (len(thumb) + 2).to_bytes(2, "big") + thumb + base[2:]
    cases = {k: (v, len(v)) for k, v in files.items()}
    rng = random.Random(0)  # a video's bytes hold scan markers (FF DA) with no EOI after them
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(rng.getrandbits(8) for _ in range(4000)) + b"\xff\xda\x00\x08"
    cases["motion_photo"] = (base + video, len(base))
    cases["trailer_with_soi"] = (base + b"\xff\xd8\xff\xe0 camera data", len(base))
    return cases


def test_jpeg_ends_early_marks_exactly_the_cut_files():
    """Every cut before the first end-of-image marker's last byte is found, and no cut at or
    after it: data after the image (a video, a trailer) is never taken for the image's own."""
    from pyfer.recognizer import jpeg_ends_early

    for name, (data, eoi_end) in jpeg_variants().items():
        for cut in sorted({*range(2, eoi_end, max(1, eoi_end // 97)), eoi_end - 2, eoi_end - 1}):
            assert jpeg_ends_early(np.frombuffer(data[:cut], np.uint8)), (name, cut, eoi_end)
        for cut in (eoi_end, len(data)):
            assert not jpeg_ends_early(np.frombuffer(data[:cut], np.uint8)), (name, cut, eoi_end)


def test_a_cut_short_jpeg_is_refused_saying_so(tmp_path):
    """OpenCV refuses a JPEG without its end marker and says nothing; pyfer's error says that the
    file ends early. A whole file with a Motion Photo's video after the image is read."""
    from pyfer.recognizer import load_image

    cases = jpeg_variants()
    data, eoi_end = cases["progressive"]
    with pytest.raises(ValueError, match="the JPEG data ends before the image does"):
        load_image(data[:eoi_end * 3 // 4])
    motion = tmp_path / "motion.jpg"
    motion.write_bytes(cases["motion_photo"][0])
    assert load_image(motion).shape == cv2.imread(str(ASTRONAUT)).shape
