"""What the training tools' command lines share: where ``--out`` writes, and how bad input is told."""
from __future__ import annotations

import atexit
import sys
from contextlib import contextmanager
from pathlib import Path

from pyfer.atomic import make_folders, real_path


def output_path(stem: str | Path, suffix: str) -> Path:
    """``--out`` is a stem the suffix is appended to: ``results/lr0.002`` gives ``results/lr0.002.md``
    (``Path.with_suffix`` would take ``.002`` for a suffix and write ``results/lr0.md``)."""
    stem = Path(stem)
    return stem.with_name(stem.name + suffix)


def make_output_folder(folder: str | Path) -> Path:
    """Make ``folder`` before a tool's work (an output that cannot be written fails at once, not
    after minutes); the folders made here that are still empty when the process ends (the work
    failed on bad input) are removed again, so a failed run leaves no empty folder behind. Only
    empty folders are removed, never a file. Returns the folder, resolved."""
    real = Path(real_path(folder))
    missing = []  # deepest first
    p = real
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    make_folders(folder)
    if missing:
        atexit.register(_remove_empty, missing)
    return real


def _remove_empty(folders: list[Path]) -> None:
    for p in folders:
        try:
            p.rmdir()  # only an empty folder: refused when the run wrote anything into it
        except OSError:
            return


@contextmanager
def reported_errors():
    """Bad input ends a tool with one ``error: ...`` line on stderr and exit status 2, not a
    traceback: missing or unreadable files (OSError) and files or data that are not what they
    should be (ValueError, which DataError and CheckpointError are)."""
    try:
        yield
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
