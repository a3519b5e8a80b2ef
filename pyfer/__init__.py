"""pyfer: facial expression recognition with a distilled ShuffleNetV2 and a fused C++ engine.

Heavy pieces (the compiled engine, OpenCV) load on first use so that ``import pyfer`` stays fast.
"""
from __future__ import annotations

from importlib import import_module

from pyfer.preprocess import EMOTIONS

__version__ = "0.1.0"  # the one home of the version (pyproject.toml reads it)

# public name -> module that defines it
_LAZY = {
    "Engine": "pyfer.engine",
    "build_info": "pyfer.engine",
    "Recognizer": "pyfer.recognizer",
    "Face": "pyfer.recognizer",
    "default_weights_path": "pyfer.recognizer",
    "YuNetDetector": "pyfer.yunet",
    "FaceFraming": "pyfer.facenorm",
    "draw_faces": "pyfer.video",
}

__all__ = ["EMOTIONS", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pyfer' has no attribute {name!r}")
