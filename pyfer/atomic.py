"""Files written whole or not at all: the one place pyfer replaces a file it writes (the model
file, ``pyfer predict --resume``'s settings, ``pyfer video --summary``/``--timeline``)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Any, Union


class atomic_write:
    """``with atomic_write(path) as f:`` writes a file of its own next to ``path`` and moves it
    over ``path`` only when the block succeeds: a failure or a stop (Ctrl-C) leaves the old file
    whole (or none), never half a new one, and a reader never sees a half-written file. A
    symlink's target is what is replaced, with the old file's permissions (a new file gets the
    umask's); a device or pipe (``/dev/stdout``) is written as it is. The temporary file's name is
    unique, so two writers of one path never write into each other's file."""

    def __init__(self, path: Union[str, os.PathLike], binary: bool = False):
        self.path = Path(os.path.realpath(path))
        special = self.path.exists() and not self.path.is_file()  # a device, a FIFO: never replaced
        self.mode = None if special or not self.path.exists() else self.path.stat().st_mode & 0o7777
        self.tmp = None
        if special:
            fd = os.open(self.path, os.O_WRONLY)
        else:
            self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self.f: IO[Any] = os.fdopen(fd, "wb") if binary else \
            os.fdopen(fd, "w", newline="", encoding="utf-8", errors="surrogateescape")

    def __enter__(self) -> IO[Any]:
        return self.f

    def __exit__(self, kind, value, tb) -> None:
        try:
            self.f.close()
            if kind is None and self.tmp is not None:
                if self.mode is not None:
                    os.chmod(self.tmp, self.mode)
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)
