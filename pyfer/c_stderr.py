"""What C libraries write straight to file descriptor 2 (libjpeg on a damaged JPEG, FFmpeg on a
WebM writer), caught in the ``pyfer`` command's own process: there it would be a bare line naming
no file, before pyfer's own. A library call leaves descriptor 2 alone (a host program's threads
would lose their stderr meanwhile), so only the command uses this."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator, Optional


@contextlib.contextmanager
def caught_c_stderr(into: Optional[list] = None) -> Iterator[None]:
    """Descriptor 2 pointed at a temporary file inside the block; what was written there is
    appended to ``into`` as text (None: dropped, to the null device). Where that cannot be done
    (no descriptor 2, as in a service started without one; no writable temporary folder) the
    block runs as is: the message stays bare, and the work is not lost over it."""
    try:
        os.fstat(2)
        caught = tempfile.TemporaryFile() if into is not None else open(os.devnull, "wb")
    except OSError:
        yield
        return
    with caught:
        if sys.stderr is not None:
            sys.stderr.flush()  # (Python's own buffered lines go out before, not into the file)
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if into is not None:
                caught.seek(0)
                into.append(caught.read().decode("utf-8", "replace"))
