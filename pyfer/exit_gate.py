"""Daemon threads that are inside pyfer when the program exits: their calls finish first.

Once the interpreter finalizes, CPython ends a daemon thread that asks for the GIL back by
unwinding its stack (``pthread_exit``). OpenCV's Python functions take the GIL back in a C++
destructor, where that unwind is ``std::terminate``: a service whose daemon worker threads were in
``predict`` when it exited aborted with a core dump (a helper's review, session 46: 12 of 12 exits
with two threads in ``detect`` or ``predict``). pyfer's own engine calls deal with it in C++
(``csrc/python/released_gil.hpp``); OpenCV's cannot be changed from here. So at exit (``atexit``,
which runs before finalization and after non-daemon threads were joined) no pyfer call starts on
another thread any more (it waits for good: the process is ending), and the calls already under
way get up to ``EXIT_WAIT_SECONDS`` to return.
"""
from __future__ import annotations

import atexit
import functools
import os
import threading
from typing import Callable, TypeVar

# the longest a call under way may hold up the exit (a huge image, a camera read that hangs)
EXIT_WAIT_SECONDS = 10.0

_state = threading.Condition()
_threads_in_calls: set[int] = set()  # the threads whose calls the exit waits for
_exiting = False
_depth = threading.local()  # this thread's nesting (predict -> detect): only the outermost counts

F = TypeVar("F", bound=Callable)


class call_before_exit:
    """``with call_before_exit():`` a pyfer call that the program's exit waits for. The main thread
    passes straight through: it is the one that exits (a call from an ``atexit`` handler runs)."""

    def __enter__(self) -> "call_before_exit":
        self.counted = False
        depth = getattr(_depth, "n", 0)
        _depth.n = depth + 1
        if depth or threading.current_thread() is threading.main_thread():
            return self
        with _state:
            while _exiting:
                _state.wait()
            _threads_in_calls.add(threading.get_ident())
        self.counted = True
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
        with call_before_exit():
            return fn(*args, **kwargs)

    return call  # type: ignore[return-value]


def _let_calls_finish() -> None:
    global _exiting
    with _state:
        _exiting = True
        _state.wait_for(lambda: not _threads_in_calls, timeout=EXIT_WAIT_SECONDS)


def _after_fork_in_child() -> None:
    """The child has only the thread that forked: a lock another thread held stays free, and only
    that thread's own call is still under way."""
    global _state
    _state = threading.Condition()
    _threads_in_calls.intersection_update({threading.get_ident()})


atexit.register(_let_calls_finish)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
