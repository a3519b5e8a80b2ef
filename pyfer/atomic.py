"""How pyfer writes files: whole or not at all where it replaces one (the model file, ``pyfer
predict``'s annotated copies and ``--resume`` settings, ``pyfer video --summary``/``--timeline``,
the training caches: :class:`atomic_write`), and a stream named as a file (``/dev/stdout``) in
place, through its descriptor (:func:`open_in_place`)."""
from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import IO, Any, Union


def written_in_place(path: Union[str, os.PathLike]) -> bool:
    """A stream, not a file to replace: a name of a descriptor (``/dev/stdout``, ``/dev/fd/N``:
    redirected to a file, it must append to what the shell opened), or an existing file that is
    not a regular one (a device such as /dev/null, a FIFO). A regular file, or a new one, is not
    (also under /dev/shm)."""
    if descriptor_named(os.fspath(path)) is not None:
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # not there (a new file), or not a name the system takes
        return False


def descriptor_named(path: str) -> int | None:
    """The descriptor ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` or ``/proc/self/fd/N``
    names: written through a copy of it (opening the name again on Linux starts at offset 0 of a
    file the shell opened with ``>>``, over what it held)."""
    if os.name != "posix":
        return None
    named = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}.get(os.path.abspath(path))
    if named is not None:
        return named
    head, _, tail = os.path.abspath(path).rpartition("/")
    return int(tail) if head in ("/dev/fd", "/proc/self/fd") and tail.isdigit() else None


def real_path(path: Union[str, os.PathLike]) -> str:
    """``os.path.realpath(path)``, refusing to follow a symlink that another user made in a folder
    everyone may write into (sticky and world-writable, as /tmp): PermissionError naming ``path``.
    Linux's ``fs.protected_symlinks`` refuses those to ``open()``, but a file written beside its
    target and renamed over it never opens the name: without this, ``pyfer video --summary
    /tmp/s.csv`` would replace wherever a link planted there pointed (root's /etc/passwd, the
    user's ~/.bashrc). The rule is the kernel's: a link in such a folder is followed only when it
    is the follower's or the folder owner's. Components that do not exist yet stay as given."""
    given = os.fspath(path)
    if os.name != "posix":
        return os.path.realpath(given)
    at = "/" if given.startswith("/") else os.getcwd()
    todo = [part for part in reversed(given.split("/")) if part not in ("", ".")]
    hops = 0
    while todo:
        part = todo.pop()
        if part == "..":
            at = os.path.dirname(at)
            continue
        step = os.path.join(at, part)
        try:
            st = os.lstat(step)
        except OSError:  # not there yet (a new file), or not searchable: as realpath, taken as it is
            at = step
            continue
        if not stat.S_ISLNK(st.st_mode):
            at = step
            continue
        if _planted(st, at):
            which = "" if step == os.path.abspath(given) else f" ({step})"
            raise PermissionError(errno.EACCES, f"a symlink another user made in a folder everyone may write "
                                  f"into{which}: not followed, as Linux's fs.protected_symlinks does", given)
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), given)
        target = os.readlink(step)
        if target.startswith("/"):
            at = "/"
        todo += [part for part in reversed(target.split("/")) if part not in ("", ".")]
    return at


def _planted(link: os.stat_result, folder: str) -> bool:
    """Whether a symlink (``link``, its lstat) in ``folder`` is one the kernel's
    fs.protected_symlinks rule would not follow."""
    where = os.stat(folder)
    everyones = where.st_mode & stat.S_ISVTX and where.st_mode & stat.S_IWOTH
    return bool(everyones) and link.st_uid not in (os.geteuid(), where.st_uid)


def open_in_place(path: Union[str, os.PathLike]) -> IO[str]:
    """A text file written as it goes (a CSV, JSON lines), opened empty; a stream name
    (``/dev/stdout``, ``/dev/fd/N``: :func:`written_in_place`) is written through the descriptor
    it names, after what the shell had put there."""
    number = descriptor_named(os.fspath(path))
    if number is None:
        real_path(path)  # (a link another user planted in /tmp: refused, where the kernel may follow it)
        return open(path, "w", newline="", encoding="utf-8", errors="surrogateescape")
    return os.fdopen(_dup_named(number, os.fspath(path)), "w", newline="", encoding="utf-8",
                     errors="surrogateescape")


def _dup_named(number: int, path: str) -> int:
    """A copy of descriptor ``number`` (named by ``path``), after what Python holds for it (its
    stdout or stderr) has gone out; an error names ``path`` (a /dev/fd/N that is not open)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and _fileno(stream) == number:
            stream.flush()
    try:
        return os.dup(number)
    except OSError as e:
        raise _naming(e, path) from None


def _fileno(stream) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # (a notebook's or a test's stand-in stream)
        return None


def _naming(e: OSError, path: str) -> OSError:
    """``e`` naming the user's path, not the temporary file's."""
    return e if e.errno is None else type(e)(e.errno, e.strerror, path)


class atomic_write:
    """``with atomic_write(path) as f:`` writes a file of its own next to ``path``, flushed to
    the disk, and moves it over ``path`` only when the block succeeds: a failure, a stop (Ctrl-C)
    or a power cut leaves the old file whole (or none), never half a new one, and a reader never
    sees a half-written file. A symlink's target is what is replaced, with the old file's
    permissions (a new file gets the umask's; the owner is the writer, and a hard link to the old
    file keeps the old content); a device, a pipe or a name under /dev or /proc
    (``/dev/stdout``) is written in place. The temporary file's name is unique, so two writers
    of one path never write into each other's file. Errors name ``path``."""

    def __init__(self, path: Union[str, os.PathLike], binary: bool = False):
        self.given = os.fspath(path)
        self.tmp: Path | None = None
        self.mode: int | None = None
        try:
            if written_in_place(self.given):
                number = descriptor_named(self.given)
                fd = _dup_named(number, self.given) if number is not None else \
                    os.open(self.given, os.O_WRONLY | os.O_APPEND | getattr(os, "O_BINARY", 0))
            else:
                self.path = Path(real_path(self.given))
                if self.path.exists():
                    self.mode = self.path.stat().st_mode & 0o7777
                self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
                # O_BINARY: Windows would otherwise write each \n as \r\n
                fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as e:
            raise _naming(e, self.given) from None
        try:
            self.f: IO[Any] = os.fdopen(fd, "wb") if binary else \
                os.fdopen(fd, "w", newline="", encoding="utf-8", errors="surrogateescape")
        except BaseException:  # (also a Ctrl-C here: no descriptor or file left behind)
            os.close(fd)
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)
            raise

    def __enter__(self) -> IO[Any]:
        return self.f

    def __exit__(self, kind, value, tb) -> None:
        try:
            if kind is None and self.tmp is not None:
                self.f.flush()
                os.fsync(self.f.fileno())  # the bytes on the disk before the name points at them
            self.f.close()
            if kind is None and self.tmp is not None:
                if self.mode is not None:
                    os.chmod(self.tmp, self.mode)
                os.replace(self.tmp, self.path)
        except OSError as e:
            raise _naming(e, self.given) from None
        finally:
            if not self.f.closed:
                self.f.close()
            if self.tmp is not None:
                self.tmp.unlink(missing_ok=True)
