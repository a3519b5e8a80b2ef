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
from typing import Callable, Optional

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


def jpeg_size(data: np.ndarray) -> Optional[Size]:
    """From the frame header (SOFn), walking the segments before it."""
    buf = data.data  # a memoryview of the bytes, no copy
    pos, n = 2, len(buf)
    while pos + 4 <= n:
        if buf[pos] != 0xFF:  # stray bytes between segments: the decoder skips them (with a warning)
            pos += 1
            continue
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        length = int.from_bytes(buf[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > n:
                return None
            return int.from_bytes(buf[pos + 7:pos + 9], "big"), int.from_bytes(buf[pos + 5:pos + 7], "big")
        if marker == 0xDA:  # scan data before any frame header
            return None
        pos += 2 + length
    return None


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


# what OpenCV's PxM/PAM readers skip between fields: whitespace, and "#" comments to a line end
_WHITESPACE = re.compile(rb"[ \t\n\r\v\f]*")
_LINE_END = re.compile(rb"[\n\r]")
_DIGITS = re.compile(rb"[0-9]*")
MAX_HEADER_DIGITS = 12  # a longer number overflows OpenCV's int: the file is refused there


def _pnm_numbers(buf, pos: int, count: int) -> Optional[list[int]]:
    """``count`` numbers from ``pos`` as OpenCV's PxM ReadNumber reads them: whitespace and comments
    skipped, a number ended by any other byte. Linear in the bytes read (a regex that skipped both
    in one pattern backtracked exponentially: 40 comments hung a call, a helper's review)."""
    numbers = []
    while len(numbers) < count:
        while True:
            pos = _WHITESPACE.match(buf, pos).end()
            if pos < len(buf) and buf[pos] == 0x23:  # "#": a comment to the line's end
                end = _LINE_END.search(buf, pos)
                if end is None:
                    return None
                pos = end.end()
            else:
                break
        digits = _DIGITS.match(buf, pos)
        if not digits.group() or digits.end() >= len(buf) or len(digits.group()) > MAX_HEADER_DIGITS:
            return None  # no number, one that may go on past a cut, or an overflow OpenCV refuses
        numbers.append(int(digits.group()))
        pos = digits.end()
    return numbers


_PAM_FIELD = re.compile(rb"([^ \t\v\f]*)[ \t\v\f]*(.*)", re.S)  # a name, whitespace, its value


def _pam_size(buf) -> Optional[Size]:
    """WIDTH and HEIGHT of a PAM header as OpenCV's reader takes them: lines of a name and a value
    (read as atoi does) up to ENDHDR, comments skipped, the last of repeated fields."""
    fields: dict[bytes, int] = {}
    pos = 2
    while pos < len(buf):
        pos = _WHITESPACE.match(buf, pos).end()
        end = _LINE_END.search(buf, pos)
        if end is None:
            return None
        line, pos = bytes(buf[pos:end.start()]), end.end()
        if line.startswith(b"#"):
            continue
        name, value = _PAM_FIELD.match(line).groups()
        if name == b"ENDHDR":
            break
        number = re.match(rb"[+-]?([0-9]+)", value)
        if name in (b"WIDTH", b"HEIGHT") and number and len(number.group(1)) <= MAX_HEADER_DIGITS:
            fields[name] = int(number.group(1))
    else:
        return None
    return (fields[b"WIDTH"], fields[b"HEIGHT"]) if len(fields) == 2 else None


def pnm_size(data: np.ndarray) -> Optional[Size]:
    """From the text header of PBM/PGM/PPM (P1-P6) and PFM (PF, Pf): the two numbers after the
    magic; PAM (P7): its WIDTH and HEIGHT lines."""
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
    """From a Radiance HDR header as OpenCV reads it: its first line, then lines up to a blank one
    (one whose first byte is a newline or NUL), then the size line ("-Y 480 +X 640")."""
    buf = data.data
    _, pos = _fgets(buf, 0)
    while True:
        line, pos = _fgets(buf, pos)
        if not line:
            return None
        if line[:1] in (b"\n", b"\0"):
            break
    line = _fgets(buf, pos)[0]
    found = _HDR_SIZE.match(line)
    if found is None or found.end() == len(line):  # (no size line, or one cut short)
        return None
    if max(len(found.group(1)), len(found.group(2))) > MAX_HEADER_DIGITS + 1:
        return None
    height, width = int(found.group(1)), int(found.group(2))
    return (width, height) if width >= 0 and height >= 0 else None


def _j2k_codestream_size(data: np.ndarray, start: int) -> Optional[Size]:
    """From the SIZ segment that follows SOC: the reference grid less the image offset."""
    if start + 24 > data.size or data[start:start + 4].tobytes() != J2K_SIGNATURE:
        return None
    x_size, y_size, x_offset, y_offset = struct.unpack(">IIII", data[start + 8:start + 24].tobytes())
    return max(x_size - x_offset, 0), max(y_size - y_offset, 0)


def jp2_size(data: np.ndarray) -> Optional[Size]:
    """From the codestream's SIZ segment, which the decoder allocates by: in a raw codestream
    (.j2k) at the start, in a JP2 file inside its 'jp2c' box."""
    if data[:4].tobytes() == J2K_SIGNATURE:
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


def exr_size(data: np.ndarray) -> Optional[Size]:
    """From the header's dataWindow attribute (name, type, size, then four int32: xMin, yMin,
    xMax, yMax). opencv-python ships this reader off; it reads EXR when a program turns it on."""
    head = data[:65536].tobytes()
    at = head.find(b"dataWindow\0box2i\0")
    if at < 0 or at + 37 > len(head):
        return None
    x_min, y_min, x_max, y_max = struct.unpack("<iiii", head[at + 21:at + 37])
    return max(x_max - x_min + 1, 0), max(y_max - y_min + 1, 0)


def webp_size(data: np.ndarray) -> Optional[Size]:
    """From the first chunk: the canvas of an extended file (VP8X), else the frame of a lossy
    (VP8) or lossless (VP8L) one."""
    if data.size < 30 or data[8:12].tobytes() != b"WEBP":
        return None
    kind, chunk = data[12:16].tobytes(), data[20:30].tobytes()
    if kind == b"VP8X":
        return int.from_bytes(chunk[4:7], "little") + 1, int.from_bytes(chunk[7:10], "little") + 1
    if kind == b"VP8 " and chunk[3:6] == b"\x9d\x01\x2a":
        return int.from_bytes(chunk[6:8], "little") & 0x3FFF, int.from_bytes(chunk[8:10], "little") & 0x3FFF
    if kind == b"VP8L" and chunk[0] == 0x2F:
        bits = int.from_bytes(chunk[1:5], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


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


def avif_size(data: np.ndarray) -> Optional[Size]:
    """The largest image spatial extent ('ispe', meta/iprp/ipco) of any item: the primary image,
    a grid's output, or its alpha plane."""
    sizes = []
    for kind, start, end in _boxes(data, 0, data.size):
        if kind != b"meta":
            continue
        for kind, start, end in _boxes(data, start + 4, end):  # (meta is a full box: version, flags)
            if kind != b"iprp":
                continue
            for kind, start, end in _boxes(data, start, end):
                if kind != b"ipco":
                    continue
                for kind, start, end in _boxes(data, start, end):
                    if kind == b"ispe" and end - start >= 12:
                        sizes.append(struct.unpack(">II", data[start + 4:start + 12].tobytes()))
    return max(sizes, key=lambda size: size[0] * size[1]) if sizes else None


def gif_size(data: np.ndarray) -> Optional[Size]:
    """The logical screen's size, which OpenCV's reader allocates."""
    if data.size < 10:
        return None
    return int.from_bytes(data[6:8].tobytes(), "little"), int.from_bytes(data[8:10].tobytes(), "little")


# (first bytes, reader); the first match is the file's format, as OpenCV's own sniffing does
_READERS: tuple[tuple[tuple[bytes, ...], Callable[[np.ndarray], Optional[Size]]], ...] = (
    ((PNG_SIGNATURE,), png_size),
    ((b"\xff\xd8",), jpeg_size),
    ((b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"), tiff_size),
    ((b"BM",), bmp_size),
    ((b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"PF", b"Pf"), pnm_size),
    ((b"#?",), hdr_size),
    ((JP2_SIGNATURE, J2K_SIGNATURE), jp2_size),
    ((SUN_RASTER_SIGNATURE,), sun_raster_size),
    ((EXR_SIGNATURE,), exr_size),
    ((b"GIF87a", b"GIF89a"), gif_size),
    ((b"RIFF",), webp_size),
)


def announced_size(data: np.ndarray) -> Optional[Size]:
    """(width, height) that an encoded image's header announces; None for a file of no format
    OpenCV reads, or a header cut short."""
    head = data[:16].tobytes()
    for signatures, reader in _READERS:
        if head.startswith(signatures):
            return reader(data)
    if head[4:8] == b"ftyp":  # AVIF (HEIF): its brand follows; the readers sniff it the same way
        return avif_size(data)
    return None
