"""What C libraries write straight to file descriptor 2 (libjpeg on a damaged JPEG, FFmpeg on a
WebM writer), caught in the ``pyfer`` command's own process: there it would be a bare line naming
no file, before pyfer's own. A library call leaves descriptor 2 alone (a host program's threads
would lose their stderr meanwhile), so only the command uses this."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator, Optional


def _has_descriptor_2() -> bool:
    try:
        os.fstat(2)
        return True
    except OSError:  # a service started without one (a file opened now would become descriptor 2)
        return False


def _pointed_at(target: IO[bytes]) -> Optional[int]:
    """Descriptor 2 pointed at ``target``: a copy of what it was (to put back), or None where that
    cannot be done (no descriptor left)."""
    try:
        saved = os.dup(2)
    except OSError:
        return None
    try:
        os.dup2(target.fileno(), 2)
    except OSError:
        os.close(saved)
        return None
    return saved


@contextlib.contextmanager
def caught_c_stderr(into: Optional[list] = None) -> Iterator[None]:
    """Descriptor 2 pointed at a temporary file inside the block; what was written there is
    appended to ``into`` as text (None: dropped, to the null device). Where that cannot be done
    (no descriptor 2, no writable temporary folder, no descriptor left) the block runs as is: the
    message stays bare, and the work is not lost over it."""
    caught: Optional[IO[bytes]] = None
    if _has_descriptor_2():
        try:
            caught = tempfile.TemporaryFile() if into is not None else open(os.devnull, "wb")
        except OSError:
            pass
    saved = _pointed_at(caught) if caught is not None else None
    if saved is None:
        if caught is not None:
            caught.close()
        yield
        return
    assert caught is not None
    with caught:
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if into is not None:
                caught.seek(0)
                into.append(caught.read().decode("utf-8", "replace"))
