"""Daemon threads that are inside pyfer when the program exits: their calls finish first.

Once the interpreter finalizes, CPython ends a daemon thread that asks for the GIL back by
unwinding its stack (``pthread_exit``). OpenCV's Python functions take the GIL back in a C++
destructor, where that unwind is ``std::terminate``: a service whose daemon worker threads were in
``predict`` when it exited aborted with a core dump (a helper's review, session 46: 12 of 12 exits
with two threads in ``detect`` or ``predict``). pyfer's own bindings deal with a thread that comes
back late (``csrc/python/released_gil.hpp``); OpenCV's cannot be changed from here. So at exit
(``atexit``, which runs before finalization and after non-daemon threads were joined) the calls
under way on other threads get up to ``EXIT_WAIT_SECONDS`` to return, and a call that another
thread starts after that raises ``RuntimeError`` instead of running into the finalization.

The handler is registered when ``pyfer`` is imported: ``atexit`` runs handlers last registered
first, so a program's own shutdown handlers registered after ``import pyfer`` (draining a queue
of work, say) still run while pyfer's calls do.
"""
from __future__ import annotations

import atexit
import functools
import os
import threading
import time
from typing import Callable, TypeVar

# the longest a call under way may hold up the exit (a huge image, a camera read that hangs)
EXIT_WAIT_SECONDS = 10.0
# a call refused at exit waits this long first, so that a worker loop that retries does not spin
REFUSED_CALL_DELAY_SECONDS = 0.1

_state = threading.Condition()
_threads_in_calls: set[int] = set()  # the threads whose calls the exit waits for
_exiting = False
_depth = threading.local()  # this thread's nesting (predict -> detect): only the outermost counts

F = TypeVar("F", bound=Callable)


class CallInFlight:
    """``with CallInFlight():`` a pyfer call that the program's exit waits for. The main thread
    passes straight through: it is the one that exits (a call from an ``atexit`` handler runs)."""

    def __init__(self) -> None:
        self.counted = False

    def __enter__(self) -> "CallInFlight":
        depth = getattr(_depth, "n", 0)
        if not depth and threading.current_thread() is not threading.main_thread():
            with _state:
                if _exiting:
                    refused = True
                else:
                    refused = False
                    _threads_in_calls.add(threading.get_ident())
                    self.counted = True
            if refused:
                time.sleep(REFUSED_CALL_DELAY_SECONDS)
                raise RuntimeError("pyfer: the program is exiting; a call started on another thread now "
                                   "would run into the interpreter's shutdown")
        _depth.n = depth + 1
        return self

    def __exit__(self, *exc) -> None:
        _depth.n -= 1
        if self.counted:
            with _state:
                _threads_in_calls.discard(threading.get_ident())
                _state.notify_all()


def finishes_before_exit(fn: F) -> F:
    """Decorates a public entry point that reaches OpenCV or the engine (see the module's note)."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        with CallInFlight():
            return fn(*args, **kwargs)

    return call  # type: ignore[return-value]


def _let_calls_finish() -> None:
    global _exiting
    with _state:
        _exiting = True
        _state.wait_for(lambda: not _threads_in_calls, timeout=EXIT_WAIT_SECONDS)


def _after_fork_in_child() -> None:
    """The child has only the thread that forked: a lock another thread held stays free, only that
    thread's own call is still under way, and the child's own exit is still to come."""
    global _state, _exiting
    _state = threading.Condition()
    _threads_in_calls.intersection_update({threading.get_ident()})
    _exiting = False


atexit.register(_let_calls_finish)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
