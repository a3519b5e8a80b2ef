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


def has_descriptor_2() -> bool:
    try:
        os.fstat(2)
        return True
    except OSError:  # no file descriptor 2 (a service started without one): nothing to catch
        return False


@contextlib.contextmanager
def caught_c_stderr(into: Optional[list] = None) -> Iterator[None]:
    """Descriptor 2 pointed at a temporary file inside the block; what was written there is
    appended to ``into`` as text (None: dropped). Without a descriptor 2 the block runs as is."""
    if not has_descriptor_2():
        yield
        return
    sys.stderr.flush()  # (Python's own buffered lines go out before, not into the file)
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if into is not None:
                caught.seek(0)
                into.append(caught.read().decode("utf-8", "replace"))
