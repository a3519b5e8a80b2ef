"""Data sets for training and evaluation: FERPlus (release layout), CSV manifests, RAF-DB basic.

Every loader returns a :class:`FaceSet`: uint8 faces already resized by
``pyfer.preprocess.resize_face`` (the one preprocessing definition), integer labels in
``EMOTIONS`` order, and per-image target distributions (one-hot, or FERPlus vote shares).
Decoded images are cached as ``.npz`` (default ``<repo>/.cache``, override with ``PYFER_CACHE``)
so that later runs do not spend the 2 cores on PNG decoding.

Augmentation (:func:`augment`) runs on batches of tensors, on whatever device trains.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyfer.atomic import atomic_write
from pyfer.evaluate import class_of, read_labels_csv
from pyfer.preprocess import EMOTIONS, PreprocessSpec, resize_face, to_gray

# the shared data folder beside the repository (read-only; never copied into the repo)
DEFAULT_DATA_ROOT = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus")
DEFAULT_DATA = "ferplus:" + DEFAULT_DATA_ROOT
FERPLUS_SPLITS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
RAFDB_LABELS = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger",
                7: "neutral"}


class DataError(ValueError):
    """A data set problem, with the file (and line) it comes from."""


@dataclass
class FaceSet:
    images: np.ndarray    # (N, S, S) uint8
    labels: np.ndarray    # (N,) int64, index into EMOTIONS
    targets: np.ndarray   # (N, 8) float32 target distribution (vote shares or one-hot)
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> "FaceSet":
        idx = np.asarray(idx)
        return FaceSet(self.images[idx], self.labels[idx], self.targets[idx], [self.names[i] for i in idx])

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(EMOTIONS))


def cache_dir() -> Path:
    d = Path(os.environ.get("PYFER_CACHE", Path(__file__).resolve().parents[1] / ".cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _read_gray(path: Path, where: str) -> np.ndarray:
    import cv2

    if not path.is_file():
        raise DataError(f"{where}: image file not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise DataError(f"{where}: cannot decode image {path}")
    if img.dtype != np.uint8:  # 16-bit PNGs and the like
        img = cv2.convertScaleAbs(img, alpha=255.0 / max(1, int(img.max())))
    return to_gray(img)


def _decode_all(paths: list[Path], wheres: list[str], desc: str) -> list[np.ndarray]:
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (a nohup log would fill with \r lines)
    return [_read_gray(p, w) for p, w in tqdm(list(zip(paths, wheres)), desc=desc, unit="img",
                                                   leave=False, mininterval=1.0, disable=None)]


# ----------------------------------------------------------------------------------------------
# FERPlus
# ----------------------------------------------------------------------------------------------
def read_ferplus_labels(label_csv: Path) -> tuple[list[str], np.ndarray]:
    """Parse a FER+ ``label.csv``: returns file names and the (N, 10) vote counts."""
    if not label_csv.is_file():
        raise DataError(f"FERPlus label file not found: {label_csv}")
    names, votes = [], []
    with open(label_csv, newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 12:
                raise DataError(f"{label_csv}:{lineno}: expected 12 columns (name, box, 10 vote "
                                f"counts), got {len(row)}: {row!r}")
            try:
                counts = [int(c) for c in row[2:]]
            except ValueError:
                raise DataError(f"{label_csv}:{lineno}: vote counts must be integers: {row[2:]!r}") from None
            if min(counts) < 0:
                raise DataError(f"{label_csv}:{lineno}: negative vote count: {row[2:]!r}")
            names.append(row[0])
            votes.append(counts)
    if not names:
        raise DataError(f"{label_csv}: no rows")
    return names, np.asarray(votes, dtype=np.int64)


def majority_protocol(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Barsoum et al. 2016 "majority" protocol.

    Drops single votes, keeps an image when its top class has more than half of the remaining
    votes and is an emotion (not unknown / NF). Returns (keep mask, labels, vote shares over the
    8 emotions, from the cleaned votes).
    """
    clean = np.where(votes <= 1, 0, votes)
    total = clean.sum(1)
    top = clean.argmax(1)
    keep = (clean.max(1) * 2 > total) & (top < len(EMOTIONS))
    emo = clean[:, : len(EMOTIONS)].astype(np.float32)
    shares = emo / np.maximum(emo.sum(1, keepdims=True), 1)
    return keep, top, shares


def plurality_protocol(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The majority protocol's faces plus those without a majority whose top cleaned vote is still
    an emotion (ties included): for training on the vote shares, never for measuring. The label is
    the top emotion (the first in class order on a tie); same returns as :func:`majority_protocol`."""
    _, top, shares = majority_protocol(votes)
    keep = (top < len(EMOTIONS)) & (shares.sum(1) > 0)  # shares are all 0 when no emotion vote is left
    return keep, shares.argmax(1), shares


PROTOCOLS = {"majority": majority_protocol, "plurality": plurality_protocol}


def ferplus_label_file(root: str | Path, split: str) -> Path:
    """``root``'s ``label.csv`` of FERPlus ``split``: a DataError where the folder or the file is missing."""
    folder = Path(root) / FERPLUS_SPLITS[split]
    if not folder.is_dir():
        raise DataError(f"FERPlus folder not found: {folder} (expected the FER+ release layout: "
                        f"{'/'.join(FERPLUS_SPLITS.values())} each with label.csv)")
    label_csv = folder / "label.csv"
    if not label_csv.is_file():
        raise DataError(f"FERPlus label file not found: {label_csv}")
    return readable(label_csv, "FERPlus label file")


def ferplus_raw(root: str | Path, split: str,
                protocol: str = "majority") -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, list[str]]]:
    """FERPlus ``split`` after the ``protocol`` (majority, or plurality for training): the 48x48
    uint8 frames as released and (labels, vote shares, file names). Decoding is cached."""
    root = Path(root)
    if split not in FERPLUS_SPLITS:
        raise ValueError(f"split must be one of {sorted(FERPLUS_SPLITS)}, got {split!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {sorted(PROTOCOLS)}, got {protocol!r}")
    label_csv = ferplus_label_file(root, split)
    folder = label_csv.parent
    names, votes = read_ferplus_labels(label_csv)
    keep, labels, shares = PROTOCOLS[protocol](votes)
    idx = np.flatnonzero(keep)
    names = [names[i] for i in idx]

    # keyed by the label file's content, so a copy of the data set elsewhere reuses the cache
    key = hashlib.sha1(label_csv.read_bytes()).hexdigest()[:12]
    which = split if protocol == "majority" else f"{split}_{protocol}"
    cache = cache_dir() / f"ferplus_{which}_{key}.npz"
    if cache.is_file():
        raw = np.load(cache)["images"]
    else:
        wheres = [f"{label_csv}:{i + 1}" for i in idx]
        decoded = _decode_all([folder / n for n in names], wheres, f"decode FERPlus {split}")
        raw = np.stack([resize_face(d, 48) for d in decoded])
        with atomic_write(cache, binary=True) as f:  # (two processes may decode at once: pytest -n)
            np.savez_compressed(f, images=raw)
    return raw, (labels[idx].astype(np.int64), shares[idx], names)


def ferplus_prior(root: str | Path = DEFAULT_DATA_ROOT) -> np.ndarray:
    """Class frequencies of FERPlus train after the majority protocol: the training prior, each at
    least 1e-6 (a class a custom set lacks would give log(0) and NaN scores after a shift)."""
    _, (labels, _, _) = ferplus_raw(root, "train")
    return np.maximum(np.bincount(labels, minlength=len(EMOTIONS)) / len(labels), 1e-6)


def load_ferplus(root: str | Path, split: str, prep: PreprocessSpec, protocol: str = "majority") -> FaceSet:
    """FERPlus ``split`` ("train", "valid", "test") under ``root`` (the release layout)."""
    raw, (labels, shares, names) = ferplus_raw(root, split, protocol)
    images = np.stack([resize_face(im, prep.input_size) for im in raw])
    return FaceSet(images, labels, shares, names)


# ----------------------------------------------------------------------------------------------
# Generic manifest and RAF-DB
# ----------------------------------------------------------------------------------------------
def label_index(name: str, where: str) -> int:
    """A class name or its common form (``pyfer.evaluate.class_of``: what ``pyfer evaluate`` reads)."""
    index = class_of(name, EMOTIONS)
    if index is None:
        raise DataError(f"{where}: unknown label {name!r}; expected one of {', '.join(EMOTIONS)}")
    return index


def _faceset(paths, labels, wheres, prep: PreprocessSpec, desc: str) -> FaceSet:
    decoded = _decode_all(paths, wheres, desc)
    images = np.stack([resize_face(d, prep.input_size) for d in decoded])
    labels = np.asarray(labels, dtype=np.int64)
    onehot = np.eye(len(EMOTIONS), dtype=np.float32)[labels]
    return FaceSet(images, labels, onehot, [str(p) for p in paths])


def load_manifest(csv_path: str | Path, root: str | Path | None, prep: PreprocessSpec) -> FaceSet:
    """CSV with a ``path,label`` header; paths relative to ``root`` (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"manifest not found: {csv_path}")
    root = Path(root) if root is not None else csv_path.parent
    if not root.is_dir():
        raise DataError(f"manifest root folder not found: {root}")
    try:
        rows = read_labels_csv(csv_path, root)  # as pyfer evaluate reads a CSV
    except ValueError as exc:
        raise DataError(str(exc)) from None
    paths, labels, wheres = [], [], []
    for path, label, line in rows:
        wheres.append(f"{csv_path}:{line}")
        labels.append(label_index(label, wheres[-1]))
        paths.append(path)
    return _faceset(paths, labels, wheres, prep, f"decode {csv_path.name}")


def rafdb_label_list(root: str | Path) -> Path:
    """RAF-DB's ``EmoLabel/list_patition_label.txt`` under ``root``: a DataError where it is missing."""
    list_file = Path(root) / "EmoLabel" / "list_patition_label.txt"
    if not list_file.is_file():
        raise DataError(f"RAF-DB label list not found: {list_file}")
    return readable(list_file, "RAF-DB label list")


def load_rafdb(root: str | Path, split: str, prep: PreprocessSpec) -> FaceSet:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/<name>_aligned.jpg``."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"RAF-DB split must be 'train' or 'test', got {split!r}")
    list_file = rafdb_label_list(root)
    paths, labels, wheres = [], [], []
    for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{list_file}:{lineno}"
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB_LABELS:
            raise DataError(f"{where}: expected '<name>.jpg <1-7>', got {line!r}")
        if not parts[0].startswith(split + "_"):
            continue
        stem, ext = os.path.splitext(parts[0])
        paths.append(root / "Image" / "aligned" / f"{stem}_aligned{ext}")
        labels.append(EMOTIONS.index(RAFDB_LABELS[int(parts[1])]))
        wheres.append(where)
    if not paths:
        raise DataError(f"{list_file}: no {split} rows")
    return _faceset(paths, labels, wheres, prep, f"decode RAF-DB {split}")


SPLIT_SOURCES = ("ferplus", "rafdb")  # KIND:DIR data sets with splits; anything else is a manifest CSV


def is_split_source(source: str) -> bool:
    """Whether ``source`` names a data set with splits (``ferplus:DIR``, ``rafdb:DIR``), not a manifest."""
    kind, _, path = source.partition(":")
    return kind in SPLIT_SOURCES and bool(path)


def load_dataset(source: str, prep: PreprocessSpec, split: str = "valid", root: str | None = None,
                 protocol: str = "majority") -> FaceSet:
    """``ferplus:DIR`` (which faces: ``protocol``), ``rafdb:DIR``, or a manifest CSV path (with
    optional ``root``)."""
    kind, _, path = source.partition(":")
    if kind == "ferplus" and path:
        return load_ferplus(path, split, prep, protocol)
    if kind == "rafdb" and path:
        return load_rafdb(path, "test" if split == "valid" else split, prep)
    return load_manifest(manifest_file(source), root, prep)


def manifest_file(source: str) -> Path:
    """``source`` as a manifest CSV: a DataError where it is a folder or missing."""
    if Path(source).is_dir():
        raise DataError(f"{source} is a folder, not a manifest CSV: give ferplus:{source} (the FER+ release "
                        f"layout) or rafdb:{source}")
    if not Path(source).is_file():
        raise DataError(f"manifest not found: {source} (a data source is ferplus:DIR, rafdb:DIR or a manifest CSV)")
    return readable(Path(source), "manifest")


def readable(path: Path, what: str) -> Path:
    """``path``, once a byte of it has been read: a file that is there but may not be read (its
    mode, an ACL, a network share's rights) is a DataError now, before a tool makes its output
    folder, not an OSError when the file is parsed."""
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise DataError(f"{what} cannot be read: {path}: {e.strerror or e}") from None
    return path


def check_source(source: str, split: str = "valid") -> None:
    """The checks :func:`load_dataset` makes before it reads anything (the same DataError), without
    parsing: where a source's folder, label file or manifest is missing or cannot be read, a tool
    can say so before it makes its output folder."""
    kind, _, path = source.partition(":")
    if kind == "ferplus" and path:
        ferplus_label_file(path, split)
    elif kind == "rafdb" and path:
        rafdb_label_list(path)
    else:
        manifest_file(source)


# ----------------------------------------------------------------------------------------------
# Augmentation (batched tensors, any device)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentSpec:
    max_rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.08        # fraction of the image size
    flip: bool = True
    brightness: float = 0.2        # +- in units of the [0, 1] intensity range
    contrast: tuple[float, float] = (0.8, 1.2)
    erase_prob: float = 0.25       # random erasing of one rectangle (occlusion robustness)
    # what real photos do to a face beyond framing and light (0 = off; see ROBUST_AUGMENT)
    gamma: float = 0.0             # gamma drawn log-uniformly in [1/(1+g), 1+g]
    blur_prob: float = 0.0         # Gaussian blur, sigma in [0.4, 1.5] px
    noise_prob: float = 0.0        # Gaussian noise, std in [0.01, 0.06]
    lowres_prob: float = 0.0       # down to 12-32 px and back up (small faces in photos)
    jpeg_prob: float = 0.0         # JPEG round trip at quality 15-60 (on the CPU, OpenCV)


# The generalization recipe (issue 13): wider framing jitter, gamma, blur, noise, low resolution,
# JPEG and more occlusion, on top of the basic spec.
ROBUST_AUGMENT = AugmentSpec(max_rotate_deg=15.0, scale=(0.85, 1.15), max_shift=0.1, brightness=0.25,
                             contrast=(0.6, 1.4), erase_prob=0.4, gamma=0.6, blur_prob=0.2, noise_prob=0.2,
                             lowres_prob=0.2, jpeg_prob=0.2)
AUGMENTS = {"basic": AugmentSpec(), "robust": ROBUST_AUGMENT}


def augment(x_u8, prep: PreprocessSpec, spec: AugmentSpec, gen):
    """uint8 (B, 1, S, S) tensor -> augmented, normalised float32 tensor, seeded by ``gen``."""
    import torch
    import torch.nn.functional as F

    b = x_u8.shape[0]
    dev = x_u8.device
    x = x_u8.float() / 255.0

    def rand(*shape):
        return torch.rand(*shape, device=dev, generator=gen)

    def chosen(p):  # (B, 1, 1, 1) mask of the images an effect applies to
        return (rand(b) < p).view(-1, 1, 1, 1)

    angle = (rand(b) * 2 - 1) * math.radians(spec.max_rotate_deg)
    scale = spec.scale[0] + rand(b) * (spec.scale[1] - spec.scale[0])
    shift = (rand(b, 2) * 2 - 1) * spec.max_shift * 2  # affine_grid coordinates span [-1, 1]
    flip = torch.where(rand(b) < 0.5, -1.0, 1.0) if spec.flip else torch.ones(b, device=dev)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    s = x.shape[-1]

    if spec.lowres_prob > 0:
        low = int(12 + rand(1).item() * 20)  # one size per batch
        small = F.interpolate(x, size=(low, low), mode="area")
        x = torch.where(chosen(spec.lowres_prob), F.interpolate(small, size=(s, s), mode="bilinear",
                                                                align_corners=False), x)
    if spec.blur_prob > 0:
        sigma = 0.4 + rand(1).item() * 1.1
        r = torch.arange(-3, 4, device=dev, dtype=x.dtype)
        k = torch.exp(-r ** 2 / (2 * sigma ** 2))
        k = k / k.sum()
        xp = F.pad(x, (3, 3, 3, 3), mode="replicate")
        blurred = F.conv2d(F.conv2d(xp, k.view(1, 1, 1, 7)), k.view(1, 1, 7, 1))
        x = torch.where(chosen(spec.blur_prob), blurred, x)
    if spec.gamma > 0:
        g = torch.exp((rand(b, 1, 1, 1) * 2 - 1) * math.log1p(spec.gamma))
        x = x.clamp_min(1e-4) ** g

    mean = x.mean((1, 2, 3), keepdim=True)
    contrast = spec.contrast[0] + rand(b, 1, 1, 1) * (spec.contrast[1] - spec.contrast[0])
    bright = (rand(b, 1, 1, 1) * 2 - 1) * spec.brightness
    x = ((x - mean) * contrast + mean + bright).clamp(0, 1)

    if spec.noise_prob > 0:
        std = 0.01 + rand(b, 1, 1, 1) * 0.05
        noise = torch.randn(x.shape, device=dev, generator=gen) * std
        x = torch.where(chosen(spec.noise_prob), (x + noise).clamp(0, 1), x)
    if spec.jpeg_prob > 0:
        x = _jpeg(x, chosen(spec.jpeg_prob).view(-1), rand(b) * 45 + 15)

    if spec.erase_prob > 0:
        ys = torch.arange(s, device=dev).view(1, s, 1)
        xs = torch.arange(s, device=dev).view(1, 1, s)
        h = (rand(b) * 0.3 + 0.1) * s
        w = (rand(b) * 0.3 + 0.1) * s
        y0 = rand(b) * (s - h)
        x0 = rand(b) * (s - w)
        box = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + h).view(-1, 1, 1)) &
               (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + w).view(-1, 1, 1)))
        box &= (rand(b) < spec.erase_prob).view(-1, 1, 1)
        x = torch.where(box.unsqueeze(1), rand(b, 1, 1, 1).expand_as(x), x)
    return (x - prep.mean) / prep.std


def _jpeg(x, which, quality):
    """JPEG round trip (OpenCV, on the CPU) of the images ``which`` selects; x in [0, 1]."""
    import cv2
    import torch

    idx = torch.nonzero(which).flatten().tolist()
    if not idx:
        return x
    out = x.clone()
    imgs = (x[idx, 0] * 255).round().to(torch.uint8).cpu().numpy()
    for j, i in enumerate(idx):
        ok, buf = cv2.imencode(".jpg", imgs[j], [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
        out[i, 0] = torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)).to(x.device).float() / 255
    return out


def clahe_crops(images: np.ndarray, clip: float = 2.0, tiles: int = 4) -> np.ndarray:
    """(N, S, S) uint8 crops -> the same after contrast-limited adaptive histogram equalization
    (clip limit ``clip``, ``tiles`` x ``tiles`` tiles): lifts shadows and flattens hard light."""
    import cv2

    op = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles))
    return np.stack([op.apply(im) for im in images]) if len(images) else images.copy()


def to_model_input(x_u8, prep: PreprocessSpec):
    """uint8 (B, 1, S, S) tensor -> normalised float32, without augmentation (evaluation)."""
    return (x_u8.float() / 255.0 - prep.mean) / prep.std
