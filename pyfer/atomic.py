"""How pyfer writes files, the one place for it:

- whole or not at all where it replaces one (the model file, ``pyfer predict``'s annotated copies
  and ``--resume`` settings, ``pyfer video --summary``/``--timeline``, training's checkpoints,
  caches, results and charts: :class:`atomic_write`, :func:`write_file`, :func:`save_figure`);
- as it goes, in place (a CSV, JSON lines, a video: :func:`open_in_place`,
  :func:`open_for_writing`), and a stream named as a file (``/dev/stdout``) through its
  descriptor;
- every name resolved by :func:`real_path`, which does not follow a symlink someone else could
  have put there to choose where pyfer writes, and folders made by :func:`make_folders`."""
from __future__ import annotations

import errno
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import IO, Any, Optional, Union


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


def real_path(path: Union[str, os.PathLike, bytes]) -> str:
    """``os.path.realpath(path)``, refusing (PermissionError naming ``path``) to pass through a
    symlink that someone else could have put there to choose where pyfer writes:

    - a link another user made in a folder others may write into (sticky and group- or
      world-writable, as /tmp), unless it is that folder owner's: Linux's
      ``fs.protected_symlinks`` rule, which the kernel applies to ``open()`` only where it is on,
      and never to a file written beside a link's target and renamed over it (``pyfer video
      --summary /tmp/s.csv`` by root replaced whatever a link planted there pointed at);
    - for root, a link of another user's that leads where that user may not write (a folder of
      theirs, such as their home or a folder they made in /tmp first, is theirs to fill with
      links): root would write there on their behalf. Their links within what they own (a tree
      unpacked or bind-mounted as root) are followed.

    Components that do not exist yet stay as given. Every output pyfer writes is resolved here."""
    given = os.fsdecode(path)
    if os.name != "posix":
        return os.path.realpath(given)
    at = "/" if given.startswith("/") else os.getcwd()
    todo = [part for part in reversed(given.split("/")) if part not in ("", ".")]
    hops = 0
    owners: dict[int, str] = {}  # root only: another user's link passed through -> that link
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
            raise PermissionError(errno.EACCES, "a symlink another user made in a shared folder"
                                  f"{_which(step, given)}: not followed, as Linux's fs.protected_symlinks "
                                  "(name its target)", given)
        if os.geteuid() == 0 and st.st_uid != 0:
            owners.setdefault(st.st_uid, step)
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), given)
        target = os.readlink(step)
        if target.startswith("/"):
            at = "/"
        todo += [part for part in reversed(target.split("/")) if part not in ("", ".")]
    for uid, step in owners.items():
        if not _could_write(uid, at):
            raise PermissionError(errno.EACCES, f"a symlink of another user (uid {uid}){_which(step, given)} "
                                  "leads where that user may not write: root does not write through it "
                                  "(name its target)", given)
    return at


def _which(step: str, given: str) -> str:
    """`` (step)`` where the link is a folder on the way, not the name given."""
    return "" if step == os.path.abspath(given) else f" ({step})"


def _could_write(uid: int, path: str) -> bool:
    """Whether user ``uid`` could write ``path`` themselves: reach it (every folder above
    searchable to them) and either write the file in place or put a file there (the nearest
    folder that exists writable to them, and, where it is sticky, the file theirs or absent).
    Group rights count where the user database knows the user's groups. A question the file
    system cannot answer (a path through a file, a folder root cannot read) is left to the write
    itself, which then fails with its own error."""
    groups = _groups_of(uid)

    def may(st: os.stat_result, bits: tuple) -> bool:
        user, group, other = bits
        return bool(st.st_mode & user) if st.st_uid == uid else \
            bool(st.st_mode & group) if st.st_gid in groups else bool(st.st_mode & other)

    write = (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH)
    search = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
    try:
        try:
            file: Optional[os.stat_result] = os.stat(path)
            reach = os.path.dirname(path)
        except FileNotFoundError:  # (made on the way: judged at the nearest folder that is there)
            file, reach = None, os.path.dirname(path)
            while not os.path.exists(reach):
                reach = os.path.dirname(reach)
        where = os.stat(reach)
        folder = reach
        while True:  # every folder from there up searchable to them
            if not may(os.stat(folder), search):
                return False
            if os.path.dirname(folder) == folder:
                break
            folder = os.path.dirname(folder)
    except OSError:
        return True
    if file is not None and may(file, write):
        return True
    return may(where, write) and (file is None or not where.st_mode & stat.S_ISVTX
                                  or uid in (file.st_uid, where.st_uid))


def _groups_of(uid: int) -> set:
    try:
        import pwd

        entry = pwd.getpwuid(uid)
        return set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except (ImportError, KeyError, OSError):  # (no user database entry: groups unknown)
        return set()


def _shared(folder: os.stat_result) -> bool:
    """A folder others may write into and only owners may remove from (sticky: /tmp)."""
    return bool(folder.st_mode & stat.S_ISVTX and folder.st_mode & (stat.S_IWOTH | stat.S_IWGRP))


def _planted(link: os.stat_result, folder: str) -> bool:
    """Whether a symlink (``link``, its lstat) in ``folder`` is another user's in a shared folder
    that is not that folder owner's: Linux's fs.protected_symlinks rule (the same test as
    :func:`_foreign_in_shared`, for a link)."""
    return _foreign_in_shared(link, os.stat(folder))


def _foreign_in_shared(file: os.stat_result, folder: os.stat_result) -> bool:
    """Another user's file in a shared folder (:func:`_shared`) that is not the folder owner's:
    Linux's fs.protected_regular and protected_fifos rule for opening it to write. Its owner
    could read or change what is written, or make it a FIFO that nobody reads (a hang)."""
    return _shared(folder) and file.st_uid not in (os.geteuid(), folder.st_uid)


def sticky_and_not_ours(path: Union[str, os.PathLike]) -> bool:
    """Whether the name ``path`` may not be renamed over or removed by this user: another user's
    file (or symlink: the name is what is judged) in a sticky folder (/tmp) that is not ours
    either. The kernel's permission, which root passes; not a protection rule of pyfer's."""
    if not hasattr(os, "geteuid") or os.geteuid() == 0:
        return False
    folder = os.stat(os.path.dirname(os.path.abspath(path)))
    return bool(folder.st_mode & stat.S_ISVTX) and os.geteuid() not in (os.lstat(path).st_uid, folder.st_uid)


def another_user_s_in_a_shared_folder(real: Union[str, os.PathLike]) -> bool:
    """Whether the existing file ``real`` (a name :func:`real_path` resolved) is one
    :func:`open_for_writing` refuses."""
    try:
        return _foreign_in_shared(os.lstat(real), os.stat(os.path.dirname(os.fspath(real))))
    except OSError:
        return False


def make_folders(folder: Union[str, os.PathLike]) -> Path:
    """``mkdir -p`` of ``folder`` resolved by :func:`real_path` first (no folder is made at the end
    of a link that is then refused); returns the resolved folder."""
    real = Path(real_path(folder))
    real.mkdir(parents=True, exist_ok=True)
    return real


def open_for_writing(path: Union[str, os.PathLike], append: bool = False) -> int:
    """A descriptor of the file ``path`` opened to be written in place: created if new, never
    emptied here (the caller truncates once it knows what it has). The name is resolved by
    :func:`real_path` and opened without following a link put in its place since (O_NOFOLLOW);
    another user's file in a shared folder (:func:`_foreign_in_shared`) is refused, judged on
    what was opened."""
    given = os.fsdecode(path)
    real = real_path(given)
    refused = PermissionError(errno.EACCES, "another user's file in a shared folder (sticky, as /tmp): not "
                              "written (as Linux's fs.protected_regular)", given)
    try:
        folder = os.stat(os.path.dirname(real) or ".")
        try:
            if _foreign_in_shared(os.lstat(real), folder):  # before opening: a FIFO would block the open
                raise refused
        except FileNotFoundError:
            pass
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
                     | (os.O_APPEND if append else 0), 0o666)
    except OSError as e:
        raise _naming(e, given) from None
    if _foreign_in_shared(os.fstat(fd), folder):  # (swapped between the look and the open)
        os.close(fd)
        raise refused
    return fd


def open_in_place(path: Union[str, os.PathLike]) -> IO[str]:
    """A text file written as it goes (a CSV, JSON lines), opened empty; a stream name
    (``/dev/stdout``, ``/dev/fd/N``: :func:`written_in_place`) is written through the descriptor
    it names, after what the shell had put there. Other names are opened by
    :func:`open_for_writing`."""
    number = descriptor_named(os.fsdecode(path))
    if number is not None:
        fd = _dup_named(number, os.fsdecode(path))
    else:
        fd = open_for_writing(path)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
    return os.fdopen(fd, "w", newline="", encoding="utf-8", errors="surrogateescape")


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
        self.given = os.fsdecode(path)
        self.tmp: Path | None = None
        self.mode: int | None = None
        number = descriptor_named(self.given)
        try:
            real = real_path(self.given) if number is None else ""
            if number is not None:
                fd = _dup_named(number, self.given)
            elif written_in_place(real):  # a device, a FIFO
                fd = open_for_writing(self.given, append=True)
            else:
                self.path = Path(real)
                if self.path.exists():  # (not set-user-ID and the like: the writer is the owner now)
                    self.mode = self.path.stat().st_mode & 0o777
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


def write_file(path: Union[str, os.PathLike], data: Union[str, bytes]) -> None:
    """``path`` replaced whole by ``data`` (text as UTF-8, or bytes), through :class:`atomic_write`."""
    with atomic_write(path, binary=isinstance(data, bytes)) as f:
        f.write(data)


def save_figure(fig: Any, path: Union[str, os.PathLike], **savefig: Any) -> None:
    """A matplotlib figure saved whole to ``path`` (:class:`atomic_write`), in the format its suffix
    names (PNG without one); ``savefig``: more of ``Figure.savefig``'s arguments (dpi, ...)."""
    with atomic_write(path, binary=True) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".").lower() or "png", **savefig)
