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


def tiff_size(data: np.ndarray) -> Optional[Size]:
    """From ImageWidth (256) and ImageLength (257) in the first IFD, the page OpenCV reads; classic
    TIFF and BigTIFF, either byte order."""
    head = bytes(data[:16])
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 16:
        return None
    version = struct.unpack(order + "H", head[2:4])[0]
    if version == 42:
        ifd, count_format, entry_size, value_at = struct.unpack(order + "I", head[4:8])[0], "H", 12, 8
    elif version == 43:  # BigTIFF: 8-byte offsets and counts
        ifd, count_format, entry_size, value_at = struct.unpack(order + "Q", head[8:16])[0], "Q", 20, 12
    else:
        return None
    count_size = struct.calcsize(count_format)
    if ifd + count_size > data.size:
        return None
    count = struct.unpack(order + count_format, bytes(data[ifd:ifd + count_size]))[0]
    width = height = None
    for i in range(min(count, (data.size - ifd - count_size) // entry_size)):
        entry = bytes(data[ifd + count_size + i * entry_size:ifd + count_size + (i + 1) * entry_size])
        tag, kind = struct.unpack(order + "HH", entry[:4])
        value_format = {3: "H", 4: "I", 16: "Q"}.get(kind, "")  # SHORT, LONG, LONG8
        if tag not in (256, 257) or not value_format or struct.calcsize(value_format) > entry_size - value_at:
            continue  # (a LONG8 in a classic TIFF's 4-byte field: fuzz finding, session 47)
        value = struct.unpack(order + value_format, entry[value_at:value_at + struct.calcsize(value_format)])[0]
        if tag == 256:
            width = value
        else:
            height = value
    return (width, height) if width is not None and height is not None else None


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


_PNM_FIELD = re.compile(rb"(?:\s|#[^\n\r]*)*(\d+)(?=\s)")  # (whitespace ends a number)


def pnm_size(data: np.ndarray) -> Optional[Size]:
    """From the text header of PBM/PGM/PPM (P1-P6) and PFM (PF, Pf): the two numbers after the
    magic, with comments skipped; PAM (P7): its WIDTH and HEIGHT lines."""
    head = data[:4096].tobytes()
    if head[:2] == b"P7":
        end = head.find(b"ENDHDR")
        if end < 0:
            return None
        fields = dict(re.findall(rb"^(WIDTH|HEIGHT)[ \t]+(\d+)", head[:end], re.M))
        if b"WIDTH" not in fields or b"HEIGHT" not in fields:
            return None
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    width = _PNM_FIELD.match(head, 2)
    height = _PNM_FIELD.match(head, width.end()) if width else None
    return (int(width.group(1)), int(height.group(1))) if width and height else None


_HDR_RESOLUTION = re.compile(rb"([-+])([XY]) +(\d+) +([-+])([XY]) +(\d+)\s")


def hdr_size(data: np.ndarray) -> Optional[Size]:
    """From the resolution line of a Radiance HDR file ("-Y 480 +X 640"), after the header's
    blank line."""
    head = data[:65536].tobytes()
    blank = head.find(b"\n\n")
    found = _HDR_RESOLUTION.match(head, blank + 2) if blank >= 0 else None
    if found is None or found.group(2) == found.group(5):
        return None
    sizes = {found.group(2): int(found.group(3)), found.group(5): int(found.group(6))}
    return sizes[b"X"], sizes[b"Y"]


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
