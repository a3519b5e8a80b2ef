"""What the training tools' command lines share: where ``--out`` writes, and how bad input is told."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from pyfer.stop_signals import StopHandlers


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


class StopSignals:
    """While held: SIGTERM (``kill``, ``timeout``) and SIGINT raise KeyboardInterrupt as Ctrl-C
    does, in the main thread, so that a tool stops with a message and its files finished; SIGINT
    too because a background job (``nohup ... &`` in a script) starts with it ignored, so that
    ``kill -INT`` and ``timeout -s INT`` would do nothing. ``exit_status`` is the shell's: 130
    for SIGINT, 143 for SIGTERM (as the ``pyfer`` command gives). Elsewhere than the main thread,
    and for a handler set outside Python (which could not be put back), nothing is changed."""

    def __enter__(self) -> "StopSignals":
        import signal

        self.signum = signal.SIGINT  # (a KeyboardInterrupt from Python's own Ctrl-C handler)
        self.handlers = StopHandlers(self._stop).__enter__()
        return self

    def _stop(self, signum, frame):
        self.signum = signum
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        self.handlers.__exit__()

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)


@contextmanager
def error_lines():
    """A tool that stops on bad input with ``SystemExit("message")`` ends with one ``error:
    message`` line and exit status 2, as ``reported_errors`` gives (Python's own way prints the
    bare message and exits 1, which a script cannot tell from a crash). Applied at the entry point
    only: ``main()`` called from Python still raises the message."""
    try:
        yield
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"error: {exc.code}", file=sys.stderr)
            raise SystemExit(2) from None
        raise


def run_tool(main) -> None:
    """A tool's entry point: Ctrl-C, ``kill`` or ``timeout`` ends it with one line and exit
    status 130 (SIGINT) or 143 (SIGTERM), not a traceback; bad input with one ``error:`` line
    (``error_lines``). ``training.train`` handles stops itself (it says how to resume)."""
    with StopSignals() as stop, error_lines():
        try:
            main()
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(stop.exit_status) from None
