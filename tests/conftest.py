"""Shared fixtures: real face data from ../shared/data, weights and a Recognizer on the real engine."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SFEW = DATA / "sfew_train"
FERPLUS = DATA / "ferplus"
ASTRONAUT = REPO / "examples" / "astronaut.png"
# the astronaut's face in examples/astronaut.png (Haar box, checked by eye)
ASTRONAUT_FACE = (109, 40, 64, 64)
SHIPPED_WEIGHTS = REPO / "pyfer" / "models" / "tsnet_student.safetensors"


def pyfer_subprocess(*args, cwd=REPO, prefix=(), timeout=300, env=None) -> subprocess.CompletedProcess:
    """``pyfer ARGS`` in a child interpreter, ``prefix`` before it (setpriv, say). Output is UTF-8,
    decoded leniently: it may hold file names that are not valid UTF-8. A crash of the interpreter
    is a negative status; a hang raises TimeoutExpired instead of blocking the suite."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([*prefix, sys.executable, "-m", "pyfer", *map(str, args)], cwd=cwd, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=timeout, env=env)


@pytest.fixture(scope="session")
def sfew_dir() -> Path:
    if not (SFEW / "manifest.csv").is_file():
        pytest.skip(f"SFEW data not found at {SFEW} (needs ../shared/data next to the repo)")
    return SFEW


@pytest.fixture(scope="session")
def ferplus_dir() -> Path:
    if not (FERPLUS / "FER2013Valid").is_dir():
        pytest.skip(f"FERPlus data not found at {FERPLUS} (needs ../shared/data next to the repo)")
    return FERPLUS


@pytest.fixture(scope="module")
def photos(sfew_dir, ferplus_dir) -> dict:
    """The synthetic group photos of scripts/group_photos.py (real FERPlus and SFEW faces pasted
    on backgrounds, with their true boxes), by name."""
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    import group_photos

    return {p.name: p for p in group_photos.build()}


CPU_ISAS = ["portable", "avx2", "avx512"]  # every CPU kernel set pyfer has


def isa_params(build_info: dict) -> list:
    """pytest params for every CPU kernel set: the ones this build or this CPU cannot run are
    skipped with the reason, so a missing ISA shows in the report instead of silently passing."""
    isa = build_info["isa"]
    return [pytest.param(name, marks=pytest.mark.skipif(
        name not in isa["runnable"],
        reason=f"{name}: not in this build" if name not in isa["compiled"] else
               f"{name}: this CPU cannot run it (it has {isa['detected']})")) for name in CPU_ISAS]


def rel_err(got, want) -> float:
    """Largest absolute error, relative to the reference's largest magnitude (at least 1)."""
    return float(np.max(np.abs(got - want)) / max(1.0, float(np.max(np.abs(want)))))


@pytest.fixture(scope="session")
def sfew_rows(sfew_dir) -> list[tuple[Path, str]]:
    """(path, label) of every SFEW image, in manifest order."""
    with open(sfew_dir / "manifest.csv") as f:
        return [(sfew_dir / r["path"], r["label"]) for r in csv.DictReader(f)]


@pytest.fixture(scope="session")
def sfew_faces(sfew_rows) -> list[np.ndarray]:
    """12 SFEW faces (BGR 181x143), spread over the manifest (all classes)."""
    import cv2

    return [cv2.imread(str(p)) for p, _ in sfew_rows[:: len(sfew_rows) // 12][:12]]


def ferplus_valid(ferplus_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``n`` FER2013Valid images kept by the FERPlus majority protocol: (n,48,48) uint8, labels."""
    import cv2

    imgs, labels = [], []
    with open(ferplus_dir / "FER2013Valid" / "label.csv") as f:
        for row in csv.reader(f):
            votes = np.array([int(v) for v in row[2:12]])
            votes[votes <= 1] = 0
            k = int(votes.argmax())
            if votes.sum() == 0 or votes[k] <= votes.sum() / 2 or k >= 8:
                continue
            imgs.append(cv2.imread(str(ferplus_dir / "FER2013Valid" / row[0]), cv2.IMREAD_GRAYSCALE))
            labels.append(k)
            if len(imgs) == n:
                break
    return np.stack(imgs), np.array(labels)


@pytest.fixture(scope="session")
def fer_faces(ferplus_dir) -> tuple[np.ndarray, np.ndarray]:
    return ferplus_valid(ferplus_dir, 64)


@pytest.fixture
def one_torch_thread():
    """PyTorch on one thread: on a 2-core machine shared with other work, two threads can make a
    small network's forward pass a hundred times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_TRAIN_LABELS = [i % 8 for i in range(17)]  # every class twice, neutral three times


@pytest.fixture
def tiny_sets(tmp_path, monkeypatch) -> tuple[str, Path]:
    """Data for the training tools in a second: a FERPlus release layout (train: TINY_TRAIN_LABELS,
    valid: each class twice) and an SFEW-like manifest without contempt (SFEW and RAF-DB lack it),
    48x48 noise images with 10 votes for their class, decoded into a cache of their own.
    Returns (the ``ferplus:DIR`` source, the manifest)."""
    import cv2

    monkeypatch.setenv("PYFER_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    fer = tmp_path / "ferplus"
    for split, labels in (("FER2013Train", TINY_TRAIN_LABELS), ("FER2013Valid", [i % 8 for i in range(16)])):
        (fer / split).mkdir(parents=True)
        rows = []
        for i, label in enumerate(labels):
            cv2.imwrite(str(fer / split / f"fer{i}.png"), rng.integers(0, 256, (48, 48), np.uint8))
            rows.append(f'fer{i}.png,"(0, 0, 48, 48)",' + ",".join("10" if c == label else "0" for c in range(10)))
        (fer / split / "label.csv").write_text("\n".join(rows) + "\n")
    sfew = tmp_path / "sfew"
    sfew.mkdir()
    rows = ["path,label"]
    for i in range(14):
        cv2.imwrite(str(sfew / f"s{i}.png"), rng.integers(0, 256, (60, 48, 3), np.uint8))
        rows.append(f"s{i}.png,{('neutral', 'happy', 'surprise', 'sad', 'angry', 'disgust', 'fear')[i % 7]}")
    (sfew / "manifest.csv").write_text("\n".join(rows) + "\n")
    return f"ferplus:{fer}", sfew / "manifest.csv"


@pytest.fixture(scope="session")
def trained() -> bool:
    """True when the shipped (trained) weights are present: accuracy checks run only then."""
    return SHIPPED_WEIGHTS.is_file()


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory, trained) -> Path:
    """The shipped weights, or (before they exist) a randomly initialised student exported in the
    same format, so that everything but accuracy can still be tested."""
    if trained:
        return SHIPPED_WEIGHTS
    try:
        from training.export import export_model
        from training.models import ModelSpec, build_student
        import torch
    except ImportError as e:
        pytest.skip(f"no shipped weights and cannot export stand-in weights ({e})")
    from pyfer.preprocess import PreprocessSpec

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("weights") / "student_random.safetensors"
    return export_model(build_student().eval(), ModelSpec("shufflenetv2"), PreprocessSpec(), out)


@pytest.fixture(scope="session")
def engine_module():
    try:
        import pyfer.engine as m

        m.Engine  # noqa: B018
    except (ImportError, AttributeError) as e:
        pytest.skip(f"the compiled pyfer engine is not available ({e}); build it with pip install -e .")
    return m


@pytest.fixture(scope="session")
def recognizer(engine_module, weights_path):
    import pyfer

    return pyfer.Recognizer(weights_path, threads=1)


def paste(canvas: np.ndarray, face: np.ndarray, x: int, y: int, width: int) -> tuple[int, int, int, int]:
    """Paste a (tight) SFEW ``face`` resized to ``width`` at (x, y), with a 25% edge-replicated
    surround so that the head has context like in a photo; returns the box of the face itself."""
    import cv2

    h = round(face.shape[0] * width / face.shape[1])
    p = width // 4
    patch = cv2.copyMakeBorder(cv2.resize(face, (width, h), interpolation=cv2.INTER_AREA), p, p, p, p,
                               cv2.BORDER_REPLICATE)
    ph, pw = patch.shape[:2]
    y0, x0 = y - p, x - p
    sy, sx = max(0, -y0), max(0, -x0)
    ey, ex = min(ph, canvas.shape[0] - y0), min(pw, canvas.shape[1] - x0)
    canvas[y0 + sy:y0 + ey, x0 + sx:x0 + ex] = patch[sy:ey, sx:ex]
    return x, y, width, h


def iou(a, b) -> float:
    from pyfer.video import iou as _iou

    return _iou(a, b)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` (long soaks, 8x500 threads, kill-and-resume) are opt-in: they run with
    ``-m slow`` or PYFER_SLOW=1, so the default suite stays within CI's budget."""
    import os

    if "slow" in (config.getoption("-m") or "") or os.environ.get("PYFER_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or PYFER_SLOW=1")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


def pytest_sessionstart(session):
    """Under scripts/sanitize.sh and tsan.sh, every test process (each pytest-xdist worker too)
    checks that the engine it imports is the instrumented build the script staged: a worker
    that found an ordinary one would test nothing under the sanitizer."""
    import os

    expected = os.environ.get("PYFER_EXPECT_ENGINE")
    if not expected:
        return
    import pyfer._engine as e

    if os.path.realpath(e.__file__) != os.path.realpath(expected):
        raise pytest.UsageError(f"this test process imported {e.__file__}, not the staged {expected}")
