"""Public wrapper of the compiled C++ engine (``pyfer._engine``).

    >>> import pyfer
    >>> eng = pyfer.Engine("student.safetensors")          # device="cpu", threads=None
    >>> logits = eng.forward(x)                             # x: float32 (N, C, H, W)
    >>> eng.input_shape, eng.class_names, eng.info()

``device="cuda"`` (or ``"cuda:N"``) runs the CUDA backend (docs/cuda.md) when the build has it
(``build_info()["cuda"]``) and a GPU is usable (``cuda_devices()``); otherwise it raises
ValueError (CPU-only build) or RuntimeError (no usable GPU). ``threads``/``isa`` are CPU-only.

``threads=None`` uses every CPU this process may use (its affinity: taskset, a container's
cpuset), no more than its cgroup's CPU quota rounded up (``docker --cpus 1.5``: 2), for
batches, split over images; a batch of one always runs on one thread. Under a quota, more
threads only help calls that come now and then (scripts/bench_cpu_quota.py;
docs/recognizer.md). A Recognizer's "predict" is a batch of two (the face and
its mirror). After ``os.fork()`` a child gets a pool of its own on its first batch; a fork waits
for engine calls that other threads have in flight (with the GIL held: every Python thread waits
too; RELIABILITY.md, Concurrency).

``isa`` ("auto", "avx512", "avx2", "portable", "ref") is for tests and benchmarks: "auto" picks by CPUID (``build_info()["isa"]`` says what it picked and why) unless the environment
sets ``PYFER_ISA`` (avx512, avx2 or portable; ``PYFER_FORCE_PORTABLE=1`` is portable); a forced kernel set the build or CPU lacks raises ValueError;
"ref" runs the plain-loop reference implementation (slow).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pyfer.exit_gate import finishes_before_exit

__all__ = ["Engine", "build_info", "cuda_devices", "softmax"]


def _ext():
    try:
        from pyfer import _engine
    except ImportError as e:  # pragma: no cover - depends on the build
        raise ImportError(
            "pyfer's compiled engine (pyfer._engine) is missing: build it with "
            "`pip install .` (or the editable dev build in DEVELOPERS.md, \"Build and test\")"
        ) from e
    return _engine


def file_sha256(path) -> str:
    """The hex sha256 of a file's contents (weights are identified by it: ``pyfer info``, and
    training's caches of teacher answers), read in 1 MiB chunks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_info() -> dict[str, Any]:
    """Build facts: ``version``, ``isa`` ({compiled, runnable, detected, selected, why}), ``cuda`` (bool:
    a CUDA build, not a usable GPU: :func:`cuda_devices`), ``default_threads`` (what ``threads=None``
    gives an engine here: ``usable_cpus``, the affinity mask, capped by ``cpu_limit``, the cgroup's CPU
    quota in CPUs, or None)."""
    return dict(_ext().build_info())


def cuda_devices() -> tuple[int, str]:
    """``(count, reason)``: CUDA devices usable by ``Engine(..., device="cuda")``; ``reason`` says
    why there are none (CPU-only build, no driver, no GPU). The first CUDA call happens here or in
    ``Engine(device="cuda")``, never at import."""
    fn = getattr(_ext(), "_cuda_devices", None)
    if fn is None:
        return 0, "this pyfer build has no CUDA support"
    n, why = fn()
    return int(n), str(why)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities along ``axis``, in float32 (float64 stays float64)."""
    z = np.asarray(logits)
    z = z.astype(np.result_type(z.dtype, np.float32))
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


_REFUSED_KINDS = {"b": "bool", "O": "object", "c": "complex", "S": "bytes", "U": "str", "V": "void",
                  "M": "datetime", "m": "timedelta"}


class Engine:
    """Facial-expression network loaded from a pyfer ``.safetensors`` export."""

    def __init__(self, weights_path, device: str = "cpu", threads: int | None = None, isa: str = "auto"):
        path = os.fspath(weights_path)
        if not isinstance(device, str):
            raise TypeError(f"device must be a string such as 'cpu', got {device!r}")
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
                raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        if not Path(path).exists():
            raise FileNotFoundError(f"no weights file at {path}")
        self._path = path
        self._impl = _ext().Engine(path, device, 0 if threads is None else int(threads), isa)
        self._meta = json.loads(self._impl.meta_json)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self._impl.input_shape
        return c, h, w

    @property
    def num_classes(self) -> int:
        return int(self._impl.num_classes)

    @property
    def class_names(self) -> list[str]:
        return list(self._impl.class_names)

    @property
    def preprocess(self) -> dict:
        return dict(self._meta.get("preprocess", {}))

    @property
    def metadata(self) -> dict:
        return dict(self._meta)

    def info(self) -> dict[str, Any]:
        return dict(self._impl.info())

    def __repr__(self) -> str:
        i = self.info()
        return (f"Engine({self._path!r}, arch={i['architecture']}, stem={i['stem']}, "
                f"input={i['input_shape']}, isa={i['isa']}, threads={i['threads']})")

    # -- inference --------------------------------------------------------------------------
    def _as_input(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor
                x = x.detach().cpu().numpy()
            else:
                x = np.asarray(x)
        kind = x.dtype.kind
        if kind in _REFUSED_KINDS:
            raise TypeError(f"Engine.forward cannot take a {_REFUSED_KINDS[kind]} array "
                            f"(dtype {x.dtype}); pass float32 (other real numeric dtypes are converted)")
        if kind not in "fiu":
            raise TypeError(f"Engine.forward: unsupported dtype {x.dtype}")
        c, h, w = self.input_shape
        if x.ndim != 4:
            raise ValueError(f"Engine.forward expects a 4-D (N, C, H, W) array of shape (N, {c}, {h}, {w}), "
                             f"got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("Engine.forward got an empty batch (N = 0)")
        if x.shape[1:] != (c, h, w):
            raise ValueError(f"Engine.forward expects shape (N, {c}, {h}, {w}), got {x.shape}")
        # converts other dtypes and copies non-contiguous / misaligned / byte-swapped arrays
        return np.require(x, dtype=np.float32, requirements=["C", "A"])

    @finishes_before_exit
    def forward(self, x) -> npt.NDArray[np.float32]:
        """float32 (N, C, H, W) -> float32 logits (N, num_classes). Releases the GIL."""
        return self._impl.forward(self._as_input(x))

    __call__ = forward

    def predict_proba(self, x) -> np.ndarray:
        return softmax(self.forward(x))

    @finishes_before_exit
    def profile(self, x, reps: int = 5) -> list:
        """Per-block wall times (best of ``reps``) for one group of images, single thread."""
        return list(self._impl.profile(self._as_input(x), int(reps)))
