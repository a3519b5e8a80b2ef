"""The pixel size an encoded image's header announces, read before decoding.

OpenCV's readers allocate the whole image as soon as they have read a header, and most formats
pack a flat image far smaller than its pixels (a 1.4 KB JPEG 2000 file of 20000 x 20000 pixels
took 2 GB to decode, a 25 MB Radiance HDR 9.4 GB), so ``pyfer.recognizer.decode_image`` holds
every format to ``MAX_IMAGE_PIXELS`` by the size read here. One reader per format OpenCV decodes;
each takes the file's bytes (a uint8 array) and gives (width, height), or None when the header
is not there or cut short (the decoder then refuses the file itself).
"""
from __future__ import annotations

import re
import struct
from typing import Callable, Iterator, Optional

import numpy as np

Size = tuple[int, int]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
J2K_SIGNATURE = b"\xff\x4f\xff\x51"  # a raw codestream: SOC, then SIZ
SUN_RASTER_SIGNATURE = b"\x59\xa6\x6a\x95"
EXR_SIGNATURE = b"\x76\x2f\x31\x01"


def png_size(data: np.ndarray) -> Optional[Size]:
    """From the IHDR chunk, which the PNG standard puts first."""
    buf = data.data
    if len(buf) < 24 or bytes(buf[12:16]) != b"IHDR":
        return None
    return int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[20:24], "big")


# In a JPEG's entropy-coded data FF 00 is a stuffed byte, FF D0-D7 a restart marker and FF FF
# fill: anything else after FF is the marker that ends the scan
_JPEG_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def jpeg_markers(data: np.ndarray) -> Iterator[tuple[int, int]]:
    """(marker, offset of its FF) of each marker after SOI, walked as libjpeg walks them: stray
    bytes between segments and fill bytes skipped, a segment's length stepped over, a scan's
    entropy-coded data read to the marker that ends it. Stops where the bytes run out."""
    buf = np.ascontiguousarray(data, np.uint8).data  # (re searches contiguous buffers only)
    pos, n = 2, len(buf)
    while pos + 2 <= n:
        if buf[pos] != 0xFF:  # stray bytes between segments: the decoder skips them (with a warning)
            pos += 1
            continue
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        yield marker, pos
        if marker in (0xD8, 0x01, 0x00) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2  # (FF 00 is no marker at all: libjpeg scans on past it, and so does this)
            continue
        if pos + 4 > n:
            return
        pos += 2 + int.from_bytes(buf[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # a scan: its data runs to the next marker
            end = _JPEG_SCAN_END.search(buf, pos)
            if end is None:
                return
            pos = end.start()


def jpeg_size(data: np.ndarray) -> Optional[Size]:
    """From the frame header (SOFn), the first marker segment of its kind."""
    n = data.size
    for marker, at in jpeg_markers(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > n:
                return None
            return int.from_bytes(data[at + 7:at + 9].tobytes(), "big"), int.from_bytes(data[at + 5:at + 7].tobytes(), "big")
        if marker == 0xDA:  # scan data before any frame header
            return None
    return None


def jpeg_ends_early(data: np.ndarray) -> bool:
    """Whether a JPEG's bytes end before its end-of-image marker (EOI): a cut-short file, which
    OpenCV refuses without saying why. The first EOI ends the image: bytes after it (a Motion
    Photo's video, a camera's trailer) are not looked at."""
    return all(marker != 0xD9 for marker, _ in jpeg_markers(data))


# TIFF field types libtiff takes an image's size as (BYTE, SHORT, LONG, SBYTE, SSHORT, SLONG,
# LONG8, SLONG8), as struct formats
_TIFF_SIZE_TYPES = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 16: "Q", 17: "q"}
TIFF_MAX_ENTRIES = 4096  # libtiff refuses a directory of more ("sanity check on directory count")


def tiff_size(data: np.ndarray) -> Optional[Size]:
    """From ImageWidth (256) and ImageLength (257) in the first IFD, the page OpenCV reads, as
    libtiff reads them: classic TIFF and BigTIFF, either byte order, any integer type, a value too
    wide for its entry read where the entry points, the first of duplicate tags."""
    head = bytes(data[:16])
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 16:
        return None
    version = struct.unpack(order + "H", head[2:4])[0]
    if version == 42:
        ifd, count_format, entry_size, field = struct.unpack(order + "I", head[4:8])[0], "H", 12, "I"
    elif version == 43:  # BigTIFF: 8-byte offsets and counts
        ifd, count_format, entry_size, field = struct.unpack(order + "Q", head[8:16])[0], "Q", 20, "Q"
    else:
        return None
    count_size, field_size = struct.calcsize(count_format), struct.calcsize(field)
    if ifd + count_size > data.size:
        return None
    count = struct.unpack(order + count_format, bytes(data[ifd:ifd + count_size]))[0]
    if count > TIFF_MAX_ENTRIES:
        return None
    sizes: dict[int, int] = {}
    for i in range(min(count, (data.size - ifd - count_size) // entry_size)):
        at = ifd + count_size + i * entry_size
        entry = bytes(data[at:at + entry_size])
        tag, kind = struct.unpack(order + "HH", entry[:4])
        value_format = _TIFF_SIZE_TYPES.get(kind)
        if tag not in (256, 257) or tag in sizes or value_format is None:
            continue
        if struct.unpack(order + field, entry[4:4 + field_size])[0] != 1:  # (the value count: as wide as a field)
            return None  # libtiff wants one value
        width = struct.calcsize(value_format)
        value_bytes = entry[4 + field_size:4 + field_size + width]
        if width > field_size:  # (a LONG8 in a classic TIFF: stored where the entry points)
            where = struct.unpack(order + field, entry[4 + field_size:4 + 2 * field_size])[0]
            value_bytes = bytes(data[where:where + width])
            if len(value_bytes) < width:
                return None
        value = struct.unpack(order + value_format, value_bytes)[0]
        if value < 0:
            return None  # libtiff refuses it
        sizes[tag] = value
        if len(sizes) == 2:
            return sizes[256], sizes[257]
    return None


def bmp_size(data: np.ndarray) -> Optional[Size]:
    """From the DIB header: 16-bit sizes in the old OS/2 one (12 bytes), signed 32-bit ones
    (negative height: rows top-down) in the others."""
    if data.size < 26:
        return None
    header_size = int.from_bytes(data[14:18].tobytes(), "little")
    if header_size == 12:
        return int.from_bytes(data[18:20].tobytes(), "little"), int.from_bytes(data[20:22].tobytes(), "little")
    width, height = struct.unpack("<ii", data[18:26].tobytes())
    return abs(width), abs(height)


def _run(pattern: "re.Pattern[bytes]", buf, pos: int = 0) -> "re.Match[bytes]":
    """``pattern.match`` for a pattern that also matches no bytes: never None."""
    found = pattern.match(buf, pos)
    assert found is not None
    return found


_C_NUMBER = re.compile(rb"[ \t\n\r\v\f]*([+-]?)0*([0-9]*)")


def c_int(text: bytes) -> int:
    """``text`` as C's atoi reads it into an int (glibc: strtol, clamped to a long, then cut to
    32 bits): leading whitespace, a sign, digits up to any other byte; 0 without digits."""
    sign, digits = _run(_C_NUMBER, text).groups()
    value = int(digits[:20]) if digits else 0  # (past 19 digits a long is clamped anyway)
    value = max(-value, -(1 << 63)) if sign == b"-" else min(value, (1 << 63) - 1)
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


# what OpenCV's PxM/PAM readers skip between fields: whitespace, and "#" comments to a line end
_WHITESPACE = re.compile(rb"[ \t\n\r\v\f]*")
_LINE_END = re.compile(rb"[\n\r]")
_DIGITS = re.compile(rb"[0-9]*")
MAX_HEADER_DIGITS = 12  # of a number's digits after its leading zeros, more than any int has


def _pnm_numbers(buf, pos: int, count: int) -> Optional[list[int]]:
    """``count`` numbers from ``pos`` as OpenCV's PxM ReadNumber reads them: whitespace and comments
    skipped, a number ended by any other byte. Linear in the bytes read (a regex that skipped both
    in one pattern backtracked exponentially: 40 comments hung a call, a helper's review)."""
    numbers: list[int] = []
    while len(numbers) < count:
        while True:
            pos = _run(_WHITESPACE, buf, pos).end()
            if pos < len(buf) and buf[pos] == 0x23:  # "#": a comment to the line's end
                end = _LINE_END.search(buf, pos)
                if end is None:
                    return None
                pos = end.end()
            else:
                break
        digits = _run(_DIGITS, buf, pos)
        if not digits.group() or digits.end() >= len(buf):
            return None  # no number, or one that may go on past a cut
        value = int(digits.group().lstrip(b"0")[:MAX_HEADER_DIGITS] or b"0")
        if value > (1 << 31) - 1:
            return None  # ReadNumber refuses more than INT_MAX
        numbers.append(value)
        pos = digits.end() + 1  # ReadNumber eats the byte that ends a number, whatever it is ("#" too)
    return numbers


PAM_FIELDS = (b"WIDTH", b"HEIGHT", b"DEPTH", b"MAXVAL", b"TUPLTYPE", b"ENDHDR")
_PAM_NAME = re.compile(rb"[^ \t\n\r\v\f]{0,8}")  # OpenCV takes up to 8 bytes of a field's name
_PAM_VALUE = re.compile(rb"[^\n\r]{0,255}[\n\r]")  # then up to 255 of its value, ended by a line end


def _pam_size(buf) -> Optional[Size]:
    """WIDTH and HEIGHT of a PAM header as OpenCV's ReadPAMHeaderLine takes them, up to ENDHDR:
    comments skipped; a name, then (unless a line end follows it) any whitespace, line ends too,
    then the value to the line's end, read as atoi does; the last of repeated fields. An unknown
    or overlong name ends OpenCV's reading (the file is refused), and so this one's."""
    fields: dict[bytes, int] = {}
    pos = 2
    while True:
        pos = _run(_WHITESPACE, buf, pos).end()
        if pos >= len(buf):
            return None
        if buf[pos] == 0x23:  # "#": a comment to the line's end
            end = _LINE_END.search(buf, pos)
            if end is None:
                return None
            pos = end.end()
            continue
        match = _run(_PAM_NAME, buf, pos)
        pos = match.end()
        name = match.group().split(b"\0")[0]  # (OpenCV compares names with strncmp: a NUL ends one)
        if pos >= len(buf) or buf[pos] not in b" \t\n\r\v\f" or name not in PAM_FIELDS:
            return None
        if name == b"ENDHDR":
            break
        if buf[pos] in b"\n\r":  # a name without a value
            pos += 1
            continue
        pos = _run(_WHITESPACE, buf, pos).end()
        value = _PAM_VALUE.match(buf, pos)
        if value is None:
            return None
        if name in (b"WIDTH", b"HEIGHT"):
            fields[name] = c_int(value.group()[:-1])
        pos = value.end()
    if len(fields) < 2 or min(fields.values()) <= 0:
        return None
    return fields[b"WIDTH"], fields[b"HEIGHT"]


PFM_MAX_TOKEN = 2048  # OpenCV's PFM reader reads a number as the bytes up to whitespace, 2048 at most
_PFM_TOKEN = re.compile(rb"[^ \t\n\r\v\f]{0,2048}")


def pfm_size(data: np.ndarray) -> Optional[Size]:
    """From a PFM header as OpenCV's own PFM reader reads it: "PF" or "Pf" and a newline, then the
    width and the height, each the bytes up to one whitespace byte, read as atoi does (so "+40",
    "40.0", "040" and "40x" are 40)."""
    buf = data.data
    if bytes(buf[:3]) not in (b"PF\n", b"Pf\n"):
        return None
    numbers, pos = [], 3
    for _ in range(2):
        token = _run(_PFM_TOKEN, buf, pos)
        if token.end() >= len(buf):
            return None
        numbers.append(c_int(token.group()))
        pos = token.end() + (len(token.group()) < PFM_MAX_TOKEN)  # (a full token ends with no byte eaten)
    return (numbers[0], numbers[1]) if min(numbers) > 0 else None


def pnm_size(data: np.ndarray) -> Optional[Size]:
    """From the text header of PBM/PGM/PPM (P1-P6): the two numbers after the magic, as OpenCV's
    ReadNumber reads them; PAM (P7): its WIDTH and HEIGHT lines."""
    buf = data.data  # a memoryview of the bytes, no copy (the regexes read it as it is)
    if bytes(buf[:2]) == b"P7":
        return _pam_size(buf)
    numbers = _pnm_numbers(buf, 2, 2)
    return (numbers[0], numbers[1]) if numbers else None


_NEWLINE = re.compile(rb"\n")
HDR_LINE_BUFFER = 128  # OpenCV's Radiance reader reads its header with fgets into 128 bytes
# it reads the size line with sscanf("-Y %d +X %d"): each space any whitespace or none, each
# number with an optional sign; it refuses the other orientations
_HDR_SIZE = re.compile(rb"-Y[ \t\n\r\v\f]*([+-]?[0-9]+)[ \t\n\r\v\f]*\+X[ \t\n\r\v\f]*([+-]?[0-9]+)")


def _fgets(buf, pos: int) -> tuple[bytes, int]:
    """The line C's fgets reads from ``pos`` into HDR_LINE_BUFFER bytes (a longer line comes in
    pieces, and a piece can be a lone newline), and the position after it."""
    end = _NEWLINE.search(buf, pos, min(len(buf), pos + HDR_LINE_BUFFER - 1))
    stop = end.end() if end else min(len(buf), pos + HDR_LINE_BUFFER - 1)
    return bytes(buf[pos:stop]), stop


def hdr_size(data: np.ndarray) -> Optional[Size]:
    """From a Radiance HDR header as OpenCV reads it: its first line, then lines up to a blank one,
    then the size line ("-Y 480 +X 640")."""
    buf = data.data
    _, pos = _fgets(buf, 0)
    while True:
        line, pos = _fgets(buf, pos)
        if not line:
            return None
        if line[:1] == b"\n":
            break
    line = _fgets(buf, pos)[0]
    found = _HDR_SIZE.match(line)
    # (no size line, or one the file's end cut: fgets' own cut at its buffer's end is no end)
    if found is None or (found.end() == len(line) and len(line) < HDR_LINE_BUFFER - 1):
        return None
    height, width = c_int(found.group(1)), c_int(found.group(2))
    return (width, height) if width > 0 and height > 0 else None


_SIZ = re.compile(rb"\xff\x51")


def _j2k_codestream_size(data: np.ndarray, start: int) -> Optional[Size]:
    """From the SIZ segment after SOC: the reference grid less the image offset. OpenJPEG skips
    unknown markers and the 2-byte words after them up to SIZ, and so does this."""
    if data[start:start + 2].tobytes() != J2K_SIGNATURE[:2]:
        return None
    pos = start + 2
    # the first SIZ marker on a 2-byte word after SOC (a C-speed search: a codestream without one
    # is scanned to its end)
    pos = next((m.start() for m in _SIZ.finditer(data.data, pos) if (m.start() - pos) % 2 == 0), data.size)
    if pos + 22 > data.size:
        return None
    x_size, y_size, x_offset, y_offset = struct.unpack(">IIII", data[pos + 6:pos + 22].tobytes())
    return max(x_size - x_offset, 0), max(y_size - y_offset, 0)


def jp2_size(data: np.ndarray) -> Optional[Size]:
    """From the codestream's SIZ segment, which the decoder allocates by: in a raw codestream
    (.j2k) at the start, in a JP2 file inside its 'jp2c' box."""
    if data[:2].tobytes() == J2K_SIGNATURE[:2]:
        return _j2k_codestream_size(data, 0)
    for kind, start, _ in _boxes(data, 0, data.size):
        if kind == b"jp2c":
            return _j2k_codestream_size(data, start)
    return None


def sun_raster_size(data: np.ndarray) -> Optional[Size]:
    if data.size < 12:
        return None
    width, height = struct.unpack(">II", data[4:12].tobytes())
    return width, height


EXR_MULTIPART = 0x1000  # a version flag: several headers, each ended by an empty name
# OpenEXR reads a value of these types as this many bytes, whatever the size before it says: a
# file whose size differs is refused here (walking on by either would lose the header)
EXR_FIXED_SIZES = {b"box2i": 16, b"box2f": 16, b"compression": 1, b"envmap": 1, b"float": 4, b"double": 8,
                   b"int": 4, b"lineOrder": 1, b"v2i": 8, b"v2f": 8, b"v3i": 12, b"v3f": 12, b"m33f": 36,
                   b"m44f": 64, b"keycode": 28, b"timecode": 8, b"rational": 8, b"tiledesc": 9,
                   b"chromaticities": 32, b"deepImageState": 1}


def _exr_chlist_length(buf, pos: int) -> int:
    """The bytes a channel list takes as OpenEXR reads it (names and 16 bytes each, to an empty
    name), whatever its size says; -1 where the file ends first."""
    start = pos
    while pos < len(buf) and buf[pos] != 0:
        name_end = _NUL.search(buf, pos)
        if name_end is None:
            return -1
        pos = name_end.end() + 16
    return pos + 1 - start if pos < len(buf) else -1


def exr_size(data: np.ndarray) -> Optional[Size]:
    """The largest dataWindow (box2i: xMin, yMin, xMax, yMax) of the header's attributes, walked
    one by one (name, type, size, value) to the empty name that ends a header; every part's of a
    multi-part file. opencv-python ships this reader off; it reads EXR when a program turns it on."""
    buf = data.data
    if len(buf) < 8:
        return None
    multipart = int.from_bytes(buf[4:8], "little") & EXR_MULTIPART
    sizes, pos = [], 8
    while pos < len(buf):
        if buf[pos] == 0:  # the end of a header (of the last one, unless a multi-part file goes on)
            if not multipart or (pos + 1 < len(buf) and buf[pos + 1] == 0):
                break
            pos += 1
            continue
        name_end = _NUL.search(buf, pos)
        type_end = _NUL.search(buf, name_end.end()) if name_end is not None else None
        if name_end is None or type_end is None or type_end.end() + 4 > len(buf):
            return None
        size = int.from_bytes(buf[type_end.end():type_end.end() + 4], "little", signed=True)
        value_at = type_end.end() + 4
        kind = bytes(buf[name_end.end():type_end.start()])
        if size < 0 or value_at + size > len(buf) or size != EXR_FIXED_SIZES.get(kind, size):
            return None
        if kind == b"chlist" and _exr_chlist_length(buf, value_at) != size:
            return None
        if kind == b"preview":  # OpenEXR reads its width x height RGBA pixels
            width, height = struct.unpack("<II", bytes(buf[value_at:value_at + 8]).ljust(8, b"\0"))
            if 8 + 4 * width * height != size:
                return None
        if kind == b"box2i" and bytes(buf[pos:name_end.start()]) == b"dataWindow":
            x_min, y_min, x_max, y_max = struct.unpack("<iiii", bytes(buf[value_at:value_at + 16]))
            sizes.append((max(x_max - x_min + 1, 0), max(y_max - y_min + 1, 0)))
        pos = value_at + size
    return max(sizes, key=lambda size: size[0] * size[1]) if sizes else None


_NUL = re.compile(rb"\0")


def _vp8_size(head: bytes) -> Optional[Size]:
    """The frame size of a VP8L (lossless: 0x2F, then 14-bit width - 1 and height - 1) or VP8 key
    frame (a 3-byte tag, the start code 9D 01 2A, 14-bit width and height) bitstream."""
    if head[:1] == b"\x2f" and len(head) >= 5:
        bits = int.from_bytes(head[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if len(head) >= 10 and head[3:6] == b"\x9d\x01\x2a" and not head[0] & 1:
        return int.from_bytes(head[6:8], "little") & 0x3FFF, int.from_bytes(head[8:10], "little") & 0x3FFF
    return None


def webp_size(data: np.ndarray) -> Optional[Size]:
    """As libwebp's WebPGetFeatures, which OpenCV sniffs WebP with, with RIFF/WEBP around the
    chunks or without: the canvas of an extended file (VP8X), else, after any ALPH chunks, the
    frame of the VP8 or VP8L chunk, or of a bare bitstream where a chunk header should be."""
    buf = data.data
    pos = 12 if bytes(buf[:4]) == b"RIFF" and bytes(buf[8:12]) == b"WEBP" else 0
    if bytes(buf[pos:pos + 4]) == b"VP8X" and len(buf) >= pos + 18:
        canvas = bytes(buf[pos + 12:pos + 18])
        return int.from_bytes(canvas[:3], "little") + 1, int.from_bytes(canvas[3:], "little") + 1
    while bytes(buf[pos:pos + 4]) == b"ALPH" and pos + 8 <= len(buf):
        size = int.from_bytes(buf[pos + 4:pos + 8], "little")
        pos += 8 + size + (size & 1)
    if bytes(buf[pos:pos + 4]) in (b"VP8 ", b"VP8L"):
        pos += 8
    return _vp8_size(bytes(buf[pos:pos + 10]))


def _boxes(data: np.ndarray, start: int, end: int):
    """(type, content start, content end) of each ISO base media box in data[start:end]."""
    pos = start
    while pos + 8 <= end:
        length, kind = struct.unpack(">I4s", data[pos:pos + 8].tobytes())
        header = 8
        if length == 1 and pos + 16 <= end:  # a 64-bit length follows
            length, header = struct.unpack(">Q", data[pos + 8:pos + 16].tobytes())[0], 16
        elif length == 0:  # the last box, running to the end
            length = end - pos
        if length < header:
            return
        yield kind, pos + header, min(pos + length, end)
        pos += length


def _box_contents(data: np.ndarray, start: int, end: int, path: tuple[bytes, ...]):
    """(start, end) of the contents of each box reached through the box types of ``path``, one
    nesting level each ('meta' is a full box: its version and flags are skipped)."""
    if not path:
        yield start, end
        return
    for kind, inner, outer in _boxes(data, start, end):
        if kind == path[0]:
            yield from _box_contents(data, inner + (4 if kind == b"meta" else 0), outer, path[1:])


def avif_size(data: np.ndarray) -> Optional[Size]:
    """The largest of the image spatial extents ('ispe', meta/iprp/ipco: the primary image, a
    grid's output, an alpha plane) and, for an image sequence, of its tracks' headers ('tkhd',
    moov/trak: 16.16 fixed point; libavif scales its frames to them)."""
    sizes = [struct.unpack(">II", data[start + 4:start + 12].tobytes())
             for start, end in _box_contents(data, 0, data.size, (b"meta", b"iprp", b"ipco", b"ispe"))
             if end - start >= 12]
    for start, end in _box_contents(data, 0, data.size, (b"moov", b"trak", b"tkhd")):
        at = start + (88 if data[start] == 1 else 76)  # (version 1 has 64-bit times)
        if at + 8 <= end:
            width, height = struct.unpack(">II", data[at:at + 8].tobytes())
            sizes.append((-(-width >> 16), -(-height >> 16)))
    return max(sizes, key=lambda size: size[0] * size[1]) if sizes else None


def gif_size(data: np.ndarray) -> Optional[Size]:
    """The logical screen's size, which OpenCV's reader allocates."""
    if data.size < 10:
        return None
    return int.from_bytes(data[6:8].tobytes(), "little"), int.from_bytes(data[8:10].tobytes(), "little")


# (name, first bytes, reader) of the formats OpenCV tries before WebP, and of those it tries after,
# in its order: the first match is the file's format. Any file libwebp takes is WebP to OpenCV (a
# bare VP8 frame can start like a PGM), so those after it are also read as WebP, the larger taken.
Reader = Callable[[np.ndarray], Optional[Size]]
_BEFORE_WEBP: tuple[tuple[str, tuple[bytes, ...], Reader], ...] = (
    ("BMP", (b"BM",), bmp_size),
    ("GIF", (b"GIF87a", b"GIF89a"), gif_size),
    ("Radiance HDR", (b"#?",), hdr_size),
    ("JPEG", (b"\xff\xd8",), jpeg_size),
)
_AFTER_WEBP: tuple[tuple[str, tuple[bytes, ...], Reader], ...] = (
    ("Sun raster", (SUN_RASTER_SIGNATURE,), sun_raster_size),
    ("PNM", (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7"), pnm_size),
    ("PFM", (b"PF", b"Pf"), pfm_size),
    ("TIFF", (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), tiff_size),
    ("PNG", (PNG_SIGNATURE,), png_size),
    ("JPEG 2000", (JP2_SIGNATURE, J2K_SIGNATURE[:2]), jp2_size),
    ("OpenEXR", (EXR_SIGNATURE,), exr_size),
)


def _larger(a: Optional[Size], b: Optional[Size]) -> Optional[Size]:
    return a if b is None else b if a is None else max(a, b, key=lambda size: size[0] * size[1])


def read_header(data: np.ndarray) -> tuple[Optional[str], Optional[Size]]:
    """(the format an encoded image's first bytes name, the (width, height) its header
    announces): (None, None) for a file of no format OpenCV reads; (name, None) where the header
    is cut short, damaged, or parsed otherwise than this module can follow, which pyfer refuses
    (letting OpenCV decide would let a header these readers misread past ``MAX_IMAGE_PIXELS``)."""
    head = data[:16].tobytes()
    for name, signatures, reader in _BEFORE_WEBP:
        if head.startswith(signatures):
            return name, reader(data)
    if head[4:8] == b"ftyp":  # AVIF (HEIF): its brand follows (OpenCV tries AVIF after GIF)
        return "AVIF", avif_size(data)
    webp = webp_size(data)
    for name, signatures, reader in _AFTER_WEBP:
        if head.startswith(signatures):
            return name, _larger(reader(data), webp)
    return ("WebP", webp) if webp is not None else (None, None)


def announced_size(data: np.ndarray) -> Optional[Size]:
    """(width, height) that an encoded image's header announces; None for a file of no format
    OpenCV reads, or a header cut short (``read_header`` tells the two apart)."""
    return read_header(data)[1]
