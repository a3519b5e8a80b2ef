"""Writes the small seed corpora of the fuzz targets under tests/fuzz/corpus/ (committed; rerun
to regenerate: ``python tests/fuzz/make_seeds.py``). Deterministic. The image seeds need numpy
and OpenCV; the others only the standard library and the shipped weights' header.

corpus/json          JSON documents: the shipped model's header (12 KB) and small edge cases
corpus/safetensors   whole small safetensors files (F32/F16/BF16/I8 tensors, metadata, a
                     pyfer-metadata file that reaches the architecture checks)
corpus/metadata      `pyfer` metadata documents (the shipped one and variants)
corpus/yunet         small YuNet detector files (the shipped network at 4-8 channels, and a
                     one-level one) for the YuNet loader and forward pass
corpus/image         tiny images in every format OpenCV decodes for us (PNG 8/16-bit, gray+alpha,
                     JPEG, BMP, TIFF, WebP, PPM/PGM, ...) for the load_image fuzzer
"""
from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = HERE / "corpus"
WEIGHTS = REPO / "pyfer" / "models" / "tsnet_student.safetensors"
YUNET = REPO / "pyfer" / "models" / "yunet.safetensors"


def put(kind: str, name: str, data: bytes) -> None:
    d = CORPUS / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def real_header() -> tuple[bytes, dict]:
    with open(WEIGHTS, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = f.read(n)
    return h, json.loads(h)


def st_file(tensors: dict, meta: dict | None = None, pad: int = 0) -> bytes:
    """tensors: name -> (dtype, shape, raw bytes); offsets laid out in order."""
    header, data, at = {}, b"", 0
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [at, at + len(raw)]}
        data += raw
        at += len(raw)
    if meta is not None:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode() + b" " * pad
    return struct.pack("<Q", len(h)) + h + data


def yunet_file(desc: dict, width: int, dtype: str = "F32") -> bytes:
    """A YuNet file of the network ``desc`` (the shipped file's `yunet` metadata layout) with every
    backbone, stage and lateral conv ``width`` channels wide: what YuNetModel::load reads, small."""
    tensors = {}

    def conv(name: str, cout: int, cin: int, k: int) -> None:
        for suffix, shape in ((".weight", (cout, cin, k, k)), (".bias", (cout,))):
            n = 1
            for d in shape:
                n *= d
            values = [((i * 5) % 11 - 5) / 20 for i in range(n)]
            raw = struct.pack(f"<{n}e" if dtype == "F16" else f"<{n}f", *values)
            tensors[name + suffix] = (dtype, shape, raw)

    def unit(name: str, cin: int, cout: int) -> None:
        conv(name + ".conv1", cout, cin, 1)
        conv(name + ".conv2", cout, 1, 3)  # depthwise

    conv(desc["stem"], width, 3, 3)
    for stage in desc["stages"]:
        for u in stage["units"]:
            unit(u, width, width)
    for li, level in enumerate(desc["levels"]):
        unit(level["lateral"], width, width)
        for head in desc["heads"]:
            unit(f"{head['module']}.{li}", width, head["channels"])
    return st_file(tensors, {"yunet": json.dumps(desc)})


def yunet_seeds() -> None:
    """corpus/yunet: the shipped detector's network at 4 and 8 channels (F32, F16), and a
    two-stage, one-level network."""
    with open(YUNET, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        desc = json.loads(json.loads(f.read(n))["__metadata__"]["yunet"])
    put("yunet", "shipped_layout_w8.safetensors", yunet_file(desc, 8))
    put("yunet", "shipped_layout_w4_f16.safetensors", yunet_file(desc, 4, "F16"))
    small = {"format": 1, "input_multiple": 8, "stem": "stem",
             "stages": [{"pool": False, "units": ["s0"]}, {"pool": True, "units": ["s1a", "s1b"]}],
             "levels": [{"stride": 4, "stage": 1, "lateral": "lat"}],
             "heads": [{"name": "cls", "module": "cls", "channels": 1, "sigmoid": True},
                       {"name": "bbox", "module": "bbox", "channels": 4, "sigmoid": False}]}
    put("yunet", "one_level.safetensors", yunet_file(small, 4))


def main() -> None:
    hdr, hj = real_header()
    meta = hj["__metadata__"]["pyfer"]
    m = json.loads(meta)

    # --- JSON
    put("json", "student_header.json", hdr)
    small = [b"{}", b"[]", b'{"a":[1,2.5,-3e2,true,false,null,"x\\u00e9\\ud83d\\ude00"]}',
             b'"\\"\\\\\\/\\b\\f\\n\\r\\t"', b"[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]", b"-0.0e+00",
             '{"k\u00e9y":"\u4e2d\u6587"}'.encode(), b"123456789012345678901234567890",
             b' \t\r\n{ "a" : { "b" : [ ] } } ']
    for i, s in enumerate(small):
        put("json", f"small_{i:02d}.json", s)
    put("json", "metadata.json", meta.encode())

    # --- metadata documents
    put("metadata", "student.json", meta.encode())
    variants = {
        "teacher": dict(m, arch="effresnet18", stem="imagenet", in_channels=3),
        "no_class_names": {k: v for k, v in m.items() if k != "class_names"},
        "minimal": {"arch": "shufflenetv2", "stem": "small", "num_classes": 2, "in_channels": 1,
                    "preprocess": {"input_size": 8}},
        "version2": dict(m, format_version=2),
    }
    for k, v in variants.items():
        put("metadata", f"{k}.json", json.dumps(v).encode())

    # --- safetensors files
    f32 = struct.pack("<6f", 0.0, 1.0, -2.5, 3.4e38, float("inf"), float("nan"))
    f16 = bytes.fromhex("003c00bc007c00fc01000000")  # 1, -1, inf, -inf, subnormal, 0
    bf16 = bytes.fromhex("803f80bf807f80ff01000000")
    put("safetensors", "f32.safetensors", st_file({"a": ("F32", (2, 3), f32)}))
    put("safetensors", "mixed.safetensors", st_file({"h": ("F16", (6,), f16), "b": ("BF16", (2, 3), bf16),
                                                     "i": ("I8", (4,), b"\x01\x02\x03\x04"),
                                                     "s": ("F32", (), f32[:4])},
                                                    {"note": "x"}, pad=5))
    put("safetensors", "empty_tensor.safetensors", st_file({"z": ("F32", (0, 4), b"")}))
    # the data checksum the loader verifies (pyfer/weights_file.py): right, and one bit off
    crc = zlib.crc32(f32)
    put("safetensors", "crc_ok.safetensors", st_file({"a": ("F32", (2, 3), f32)}, {"data_crc32": f"{crc:08x}"}))
    put("safetensors", "crc_bad.safetensors", st_file({"a": ("F32", (2, 3), f32)}, {"data_crc32": f"{crc ^ 1:08x}"}))
    # the header checksum: its own digits read as zeros (the loader searches for the field)
    unstamped = st_file({"a": ("F32", (2, 3), f32)}, {"data_crc32": f"{crc:08x}", "header_crc32": "00000000"})
    hcrc = zlib.crc32(unstamped[:8 + struct.unpack("<Q", unstamped[:8])[0]])
    put("safetensors", "hcrc_ok.safetensors", unstamped.replace(b'"header_crc32":"00000000"', b'"header_crc32":"%08x"' % hcrc))
    put("safetensors", "hcrc_bad.safetensors", unstamped.replace(b'"header_crc32":"00000000"', b'"header_crc32":"%08x"' % (hcrc ^ 1)))
    # the shipped metadata with the first real tensors (the stem): reaches the tensor checks
    stem = {}
    for name in ("stem.conv.weight", "stem.conv.bias"):
        e = hj[name]
        n = 1
        for d in e["shape"]:
            n *= d
        stem[name] = ("F32", tuple(e["shape"]), struct.pack(f"<{n}f", *[(i % 7) / 7 for i in range(n)]))
    put("safetensors", "student_stem.safetensors", st_file(stem, {"pyfer": meta}))
    put("safetensors", "meta_only.safetensors", st_file({}, {"pyfer": json.dumps(variants["minimal"])}))

    yunet_seeds()

    # --- images (numpy + OpenCV)
    try:
        import cv2
        import numpy as np
    except ImportError:
        print("numpy/OpenCV missing: image seeds not written", file=sys.stderr)
        return
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    gray = bgr[:, :, 1].copy()
    bgra = np.dstack([bgr, gray])
    g16 = (gray.astype(np.uint16) * 257)
    seeds = {
        "bgr.png": (".png", bgr), "gray.png": (".png", gray), "bgra.png": (".png", bgra),
        "gray16.png": (".png", g16), "bgr16.png": (".png", np.dstack([g16] * 3)),
        "bgr.jpg": (".jpg", bgr), "gray.jpg": (".jpg", gray), "bgr.bmp": (".bmp", bgr),
        "gray.bmp": (".bmp", gray), "bgr.tiff": (".tiff", bgr), "gray16.tiff": (".tiff", g16),
        "bgr.webp": (".webp", bgr), "bgr.ppm": (".ppm", bgr), "gray.pgm": (".pgm", gray),
        "bgr.ras": (".ras", bgr), "1x1.png": (".png", gray[:1, :1]),
        "gray.pbm": (".pbm", gray), "bgra.pam": (".pam", bgra), "bgr.pfm": (".pfm", bgr.astype(np.float32) / 255),
        "bgr.hdr": (".hdr", bgr.astype(np.float32) / 255), "bgr.avif": (".avif", bgr), "bgr.gif": (".gif", bgr),
        # OpenJPEG's 6 resolution levels need 32 px or more a side
        "bgr.jp2": (".jp2", cv2.resize(bgr, (40, 33), interpolation=cv2.INTER_NEAREST)),
    }
    for name, (ext, img) in seeds.items():
        try:
            ok, buf = cv2.imencode(ext, img)
        except cv2.error:  # a codec this OpenCV lacks (GIF before 4.11)
            ok = False
        if ok:
            put("image", name, buf.tobytes())
    # gray + alpha PNG (2 channels): written by hand, OpenCV does not encode it
    rows = b"".join(b"\x00" + bytes(v for px in zip(gray[y], gray[y]) for v in px) for y in range(gray.shape[0]))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", gray.shape[1], gray.shape[0], 8, 4, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    put("image", "gray_alpha.png", png)
    for kind in sorted(p.name for p in CORPUS.iterdir()):
        files = list((CORPUS / kind).iterdir())
        digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(files))).hexdigest()[:12]
        print(f"{kind}: {len(files)} files, {sum(p.stat().st_size for p in files)} bytes ({digest})")


if __name__ == "__main__":
    main()
