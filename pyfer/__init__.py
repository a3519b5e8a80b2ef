"""pyfer: facial expression recognition with a distilled ShuffleNetV2 and a fused C++ engine.

Heavy pieces (the compiled engine, OpenCV) load on first use so that ``import pyfer`` stays fast.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

import pyfer.exit_gate  # noqa: F401  (registers its exit handler now: pyfer/exit_gate.py)
from pyfer.preprocess import EMOTIONS

if TYPE_CHECKING:  # what type checkers and IDEs see ("X as X": exported); at run time, _LAZY below
    from pyfer.engine import Engine as Engine, build_info as build_info
    from pyfer.facenorm import FaceFraming as FaceFraming
    from pyfer.recognizer import Face as Face, Recognizer as Recognizer, default_weights_path as default_weights_path
    from pyfer.video import draw_faces as draw_faces
    from pyfer.yunet import YuNetDetector as YuNetDetector

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


if not TYPE_CHECKING:  # hidden from checkers, which would take any name (a typo too) for one of these
    def __getattr__(name: str):
        if name in _LAZY:
            value = getattr(import_module(_LAZY[name]), name)
            globals()[name] = value
            return value
        raise AttributeError(f"module 'pyfer' has no attribute {name!r}")
