"""What the training tools' command lines share: where ``--out`` writes, and how bad input is told."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path


def output_path(stem: str | Path, suffix: str) -> Path:
    """``--out`` is a stem the suffix is appended to: ``results/lr0.002`` gives ``results/lr0.002.md``
    (``Path.with_suffix`` would take ``.002`` for a suffix and write ``results/lr0.md``)."""
    stem = Path(stem)
    return stem.with_name(stem.name + suffix)


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


def run_tool(main) -> None:
    """A tool's entry point: Ctrl-C (or SIGTERM's KeyboardInterrupt) ends it with one line and
    exit status 130, not a traceback. ``training.train`` has its own (it says how to resume)."""
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
