"""``pyfer.image_size``: the size each format's header announces, read before decoding, and
``MAX_IMAGE_PIXELS`` holding every format OpenCV reads (not only PNG and JPEG)."""
from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

import pyfer.recognizer as recognizer
from pyfer.files import reads_gif
from pyfer.image_size import announced_size

WIDTH, HEIGHT = 75, 47  # odd, unequal, and big enough for OpenJPEG's default of 6 resolutions
COLOUR = (np.arange(HEIGHT * WIDTH * 3).reshape(HEIGHT, WIDTH, 3) % 251).astype(np.uint8)


def encoded(ext: str, *params: int, image: np.ndarray = COLOUR) -> np.ndarray:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok, ext
    return buf.ravel()


def tiff_bytes(width: int, height: int, order: str = "<", big: bool = False, deflate: bool = False) -> bytes:
    """A valid 8-bit gray TIFF of one strip, all black: classic or BigTIFF, either byte order,
    raw or deflated (a flat strip deflates about 1000:1)."""
    strip = bytes(width * height) if not deflate else zlib.compress(bytes(width * height), 9)
    tags = [(256, width), (257, height), (258, 8), (259, 8 if deflate else 1), (262, 1), (273, 0),
            (277, 1), (278, height), (279, len(strip))]
    if big:
        head, count_format, entry_format, kind = b"II+\0" if order == "<" else b"MM\0+", "Q", "HHQQ", 16
        ifd_at = 16
        entries_size = 8 + 20 * len(tags) + 8
    else:
        head, count_format, entry_format, kind = b"II*\0" if order == "<" else b"MM\0*", "H", "HHII", 4
        ifd_at = 8
        entries_size = 2 + 12 * len(tags) + 4
    strip_at = ifd_at + entries_size
    ifd = struct.pack(order + count_format, len(tags))
    for tag, value in tags:
        ifd += struct.pack(order + entry_format, tag, kind, 1, strip_at if tag == 273 else value)
    ifd += struct.pack(order + ("Q" if big else "I"), 0)  # no next IFD
    header = head + (struct.pack(order + "HHQ", 8, 0, ifd_at) if big else struct.pack(order + "I", ifd_at))
    return header + ifd + strip


def jp2_codestream(jp2: np.ndarray) -> np.ndarray:
    """The raw codestream (.j2k) inside a JP2 file's 'jp2c' box."""
    at = jp2.tobytes().find(b"jp2c")
    return jp2[at + 4:]


def exr_file() -> np.ndarray:
    """An EXR file, written in a child: opencv-python turns its EXR codec on only by environment."""
    code = ("import sys, cv2, numpy as np\n"
            f"ok, buf = cv2.imencode('.exr', np.ones(({HEIGHT}, {WIDTH}, 3), np.float32))\n"
            "sys.stdout.buffer.write(buf.tobytes())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                         env={"OPENCV_IO_ENABLE_OPENEXR": "1", "PATH": "/usr/bin:/bin"}, check=True).stdout
    return np.frombuffer(out, np.uint8)


def bmp_top_down(bmp: np.ndarray) -> np.ndarray:
    """The same BMP with a negative height: rows stored top-down."""
    raw = bytearray(bmp.tobytes())
    raw[22:26] = struct.pack("<i", -HEIGHT)
    return np.frombuffer(bytes(raw), np.uint8)


def with_comment(pgm: np.ndarray) -> np.ndarray:
    """A PGM with comment lines inside its header."""
    return np.frombuffer(pgm.tobytes().replace(b"P5\n", b"P5\n# made by a test\n# 9999 9999\n", 1), np.uint8)


FILES = {
    "png": lambda: encoded(".png"),
    "jpeg": lambda: encoded(".jpg"),
    "tiff": lambda: encoded(".tiff"),
    "tiff, deflated": lambda: np.frombuffer(tiff_bytes(WIDTH, HEIGHT, deflate=True), np.uint8),
    "tiff, big-endian": lambda: np.frombuffer(tiff_bytes(WIDTH, HEIGHT, ">"), np.uint8),
    "bigtiff": lambda: np.frombuffer(tiff_bytes(WIDTH, HEIGHT, big=True), np.uint8),
    "bigtiff, big-endian": lambda: np.frombuffer(tiff_bytes(WIDTH, HEIGHT, ">", big=True), np.uint8),
    "bmp": lambda: encoded(".bmp"),
    "bmp, top-down": lambda: bmp_top_down(encoded(".bmp")),
    "pbm": lambda: encoded(".pbm", image=COLOUR[:, :, 0]),
    "pgm, with comments": lambda: with_comment(encoded(".pgm", image=COLOUR[:, :, 0])),
    "ppm": lambda: encoded(".ppm"),
    "pam": lambda: encoded(".pam"),
    "pfm": lambda: encoded(".pfm", image=COLOUR.astype(np.float32) / 255),
    "hdr": lambda: encoded(".hdr", image=COLOUR.astype(np.float32) / 255),
    "jp2": lambda: encoded(".jp2"),
    "j2k codestream": lambda: jp2_codestream(encoded(".jp2")),
    "sun raster": lambda: encoded(".ras"),
    "webp, lossy": lambda: encoded(".webp"),
    "webp, lossless": lambda: encoded(".webp", cv2.IMWRITE_WEBP_QUALITY, 101),
    "webp, with alpha": lambda: encoded(".webp", image=cv2.cvtColor(COLOUR, cv2.COLOR_BGR2BGRA)),
    "avif": lambda: encoded(".avif"),
    "gif": lambda: encoded(".gif"),
}


@pytest.mark.parametrize("kind", FILES)
def test_each_format_announces_its_size_and_is_held_to_max_image_pixels(kind, monkeypatch):
    """Each format OpenCV decodes here: its header's size is read, an image of MAX_IMAGE_PIXELS
    decodes, and one pixel fewer allowed refuses it before decoding."""
    if kind == "gif" and not reads_gif():
        pytest.skip("this OpenCV has no GIF reader")
    data = FILES[kind]()
    assert announced_size(data) == (WIDTH, HEIGHT)
    monkeypatch.setattr(recognizer, "MAX_IMAGE_PIXELS", WIDTH * HEIGHT)
    assert recognizer.load_image(data.tobytes()).shape[:2] == (HEIGHT, WIDTH)
    monkeypatch.setattr(recognizer, "MAX_IMAGE_PIXELS", WIDTH * HEIGHT - 1)
    with pytest.raises(ValueError, match=f"announces {WIDTH} x {HEIGHT} pixels, more than pyfer decodes"):
        recognizer.load_image(data.tobytes())


def test_exr_announces_its_size():
    """opencv-python reads EXR only when a program turns its codec on; then it is held too."""
    assert announced_size(exr_file()) == (WIDTH, HEIGHT)


@pytest.mark.parametrize("kind", FILES)
def test_a_header_cut_short_announces_nothing(kind):
    """Any prefix of a file gives its size or None, never an exception (the decoder then
    refuses what is cut short itself)."""
    if kind == "gif" and not reads_gif():
        pytest.skip("this OpenCV has no GIF reader")
    data = FILES[kind]()
    for end in range(min(data.size, 400)):
        assert announced_size(data[:end]) in (None, (WIDTH, HEIGHT)), end


def test_a_tiff_size_tag_of_a_type_that_does_not_fit_its_field_is_skipped():
    """Fuzz finding (session 47): a classic TIFF whose ImageWidth is a LONG8, 8 bytes in a 4-byte
    field, raised struct.error out of load_image. Now the tag is skipped (libtiff refuses the file)."""
    raw = bytearray(tiff_bytes(WIDTH, HEIGHT))
    first_entry = 8 + 2
    assert struct.unpack("<H", raw[first_entry:first_entry + 2])[0] == 256
    raw[first_entry + 2:first_entry + 4] = struct.pack("<H", 16)  # LONG8
    assert announced_size(np.frombuffer(bytes(raw), np.uint8)) is None
    with pytest.raises(ValueError, match="cannot decode"):
        recognizer.load_image(bytes(raw))


def test_files_of_no_known_format_announce_nothing():
    for raw in (b"", b"BM", b"hello, world", b"\0" * 64, b"RIFF\0\0\0\0WAVEfmt ", b"\0\0\0\x18ftypmp42" + b"\0" * 16):
        assert announced_size(np.frombuffer(raw, np.uint8)) is None, raw


def test_a_valid_deflated_tiff_of_more_pixels_than_pyfer_decodes_is_refused_before_decoding(tmp_path):
    """A 390 KB valid TIFF of 20000 x 20000 pixels, deflated: refused from its header. Before,
    only PNG and JPEG were held to MAX_IMAGE_PIXELS, and it decoded in 2.3 s into 830 MB (session
    47; a 1.4 KB JPEG 2000 file of the same size took 2 GB, a Radiance HDR one 9.4 GB and 31 s)."""
    from test_frontend_robustness import load_in_a_child

    p = tmp_path / "deflate_bomb.tiff"
    p.write_bytes(tiff_bytes(20000, 20000, deflate=True))
    error, peak_mb = load_in_a_child(p)
    assert "announces 20000 x 20000 pixels, more than pyfer decodes" in error, error
    assert peak_mb < 300, f"peak RSS {peak_mb} MB"


def gif_announcing(width: int, height: int) -> bytes:
    """A 29-byte GIF whose screen and one frame are width x height, holding one pixel's data."""
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00" + b"\x3b")


def test_a_gif_announcing_more_pixels_than_its_bytes_hold_is_refused_before_decoding():
    """A 29-byte GIF of 16000 x 16000 pixels, under MAX_IMAGE_PIXELS: OpenCV took 2.4 s and 2 GB
    before failing on it (a helper's review, session 47). LZW holds at most ~2,700 pixels a byte."""
    data = gif_announcing(16000, 16000)
    assert announced_size(np.frombuffer(data, np.uint8)) == (16000, 16000)
    with pytest.raises(ValueError, match=r"its GIF header announces 16000 x 16000 pixels, more than its 29 bytes"):
        recognizer.load_image(data)


def test_a_flat_gif_packed_as_tightly_as_pillow_can_passes_the_byte_check():
    """A flat 5000 x 5000 GIF from Pillow (1,276 pixels a byte, 25 MP: over the size from which
    the check applies) is not taken for a damaged file."""
    import io

    Image = pytest.importorskip("PIL.Image")
    out = io.BytesIO()
    Image.new("L", (5000, 5000), 200).save(out, "GIF")
    data = np.frombuffer(out.getvalue(), np.uint8)
    assert 5000 * 5000 > recognizer.ALWAYS_OK_PIXELS and 5000 * 5000 / data.size > 1000
    recognizer._check_bytes_can_hold(data, "flat.gif")
