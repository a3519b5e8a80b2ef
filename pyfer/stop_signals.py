"""Ctrl-C (SIGINT) and SIGTERM handled by pyfer's own code for a while: the one place that swaps
their handlers and puts the old ones back (``pyfer.video``'s frame writes, the training tools)."""
from __future__ import annotations

import signal
import threading
from typing import Callable

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM") if hasattr(signal, name))


class StopHandlers:
    """While held, ``handler`` is SIGINT's and SIGTERM's; the handlers before are in ``previous``
    and are put back at the end, also when a signal lands between two swaps. Only in the main
    thread (Python sets handlers nowhere else: elsewhere nothing is swapped), and a handler set
    outside Python (``getsignal`` gives None: it could not be put back) is left alone."""

    def __init__(self, handler: Callable) -> None:
        self.handler = handler
        self.previous: dict = {}

    def __enter__(self) -> "StopHandlers":
        if threading.current_thread() is not threading.main_thread():
            return self
        try:
            for signum in STOP_SIGNALS:
                if signal.getsignal(signum) is not None:
                    self.previous[signum] = signal.signal(signum, self.handler)
        except BaseException:  # a stop between two swaps (or a subinterpreter): nothing left swapped
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}
