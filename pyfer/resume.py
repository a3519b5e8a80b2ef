"""The ``--csv`` file of ``pyfer predict``, and going on with an interrupted run (``--resume``).

The CSV is opened for appending and locked (POSIX ``flock``), so that two runs never write one
file. A run without ``--resume`` empties it; a run with ``--resume`` keeps the images already in
it, after three checks that refuse rather than mix or lose rows:

- the settings (weights, detector, framing, flip, prior shift, ...) must be the first run's. They
  are kept beside the CSV in ``FILE.resume.json`` (with the folder the run started from) by every
  run given ``--resume``, including the first: give ``--resume`` from the start of a long job;
- the PATHs must name the images of the file (matched as files, wherever the run starts from);
- the file must be one that ``pyfer predict`` wrote (its header, whole rows).

What is cut short is dropped: a last row without its line end or with missing fields, and all
rows of the last image when it is among this run's inputs and may lack a row (a stop between its
rows, or inside a row of its own: a row cut inside another image's path shows it was complete). The file is truncated in place (a symlink, a hard link and its
permissions stay as they are), and the rest is appended.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional, Sequence

from pyfer.atomic import atomic_write, make_folders, open_for_writing, open_in_place, written_in_place

SIDECAR_SUFFIX = ".resume.json"


class ResumeError(ValueError):
    """A ``--csv`` file that a run cannot go on with, or cannot take; nothing was changed."""


def file_key(p: Path, cwd: Optional[str] = None) -> str:
    """One key per file: its folder resolved (relative to ``cwd``, else this process's), its own
    name kept (a symlinked file is an input of its own)."""
    if cwd is not None and not p.is_absolute():
        p = Path(cwd) / p
    return os.path.normcase(os.path.join(os.path.realpath(p.parent), p.name))


def sidecar_path(csv_path: str) -> Path:
    return Path(csv_path + SIDECAR_SUFFIX)


def _records(lines: Iterable[bytes]) -> Iterator[tuple[list[str], int, bool]]:
    """The CSV records of a file's ``lines`` (bytes, their line ends kept), each with the byte
    offset where it ends and whether it ends with a line end (csv.reader reads a line at a time,
    and further lines only inside a quoted field)."""
    offset, ended = 0, True

    def decoded() -> Iterator[str]:
        nonlocal offset, ended
        for line in lines:
            offset += len(line)
            ended = line.endswith(b"\n")
            yield line.decode("utf-8", "surrogateescape")

    for row in csv.reader(decoded()):
        yield row, offset, ended


def _lock(f: IO[str], path: str) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: not locked
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ResumeError(f"--csv {path}: another pyfer run is writing it") from None
    except OSError:  # a file system without locks: not locked
        pass


def open_csv(path: str, header: Sequence[str], resume: bool, settings: dict,
             inputs: Sequence[Path]) -> tuple[IO[str], set[str], list[str]]:
    """The ``--csv`` file opened for this run, locked, its header written where it starts afresh:
    ``(file, the file_keys of the images it already has, notes for stderr)``. ``inputs``: this
    run's image paths, as given. Raises ResumeError (nothing changed) when it cannot go on."""
    settings = json.loads(json.dumps(settings))  # as the sidecar gives them back (lists, not tuples)
    # (/dev/stdout redirected to a file is a stream: emptying that file lost what the shell had put there)
    regular = not written_in_place(path) and (not os.path.exists(path) or os.path.isfile(path))
    if resume and not regular:
        raise ResumeError(f"--resume needs --csv to be a file, and {path} is not a regular file")
    make_folders(Path(path).parent)
    # appended to (and emptied or cut once it is locked): "w" would empty it before the lock
    f = os.fdopen(open_for_writing(path, append=True), "a", newline="", encoding="utf-8", errors="surrogateescape") \
        if regular else open_in_place(path)
    try:
        if regular:
            _lock(f, path)
        done: set[str] = set()
        notes: list[str] = []
        keep = 0
        if resume:
            keep, done, notes, first_cwd = _resume_point(path, header, settings, inputs)
            _write_sidecar(path, settings, first_cwd or os.getcwd())  # before the file changes: a failure loses nothing
        else:
            sidecar_path(path).unlink(missing_ok=True)  # it described the rows emptied below
        if regular:
            f.flush()
            os.truncate(f.fileno(), keep)
        if keep == 0:
            csv.writer(f).writerow(header)
            f.flush()
        return f, done, notes
    except BaseException:
        f.close()
        raise


def _resume_point(path: str, header: Sequence[str], settings: dict,
                  inputs: Sequence[Path]) -> tuple[int, set[str], list[str], Optional[str]]:
    """(the byte offset to keep the file up to, the keys of its images, notes, the folder its
    sidecar records or None). Reads the file as a stream, keeping each row's path and end only
    (a job of millions of faces)."""
    try:
        with open(path, "rb") as f:
            records = _records(f)
            first = next(records, None)
            if first is None or (not first[2] and ",".join(header).startswith(",".join(first[0]))):
                return 0, set(), [], None  # empty, or its header cut short: written afresh
            if first[0] != list(header):
                raise ResumeError(f"--resume: {path} does not have this run's columns (another version or other "
                                  "weights?): name a new --csv file, or leave out --resume to start it afresh")
            header_end = first[1]
            rows: list[tuple[str, int]] = []  # (path, end offset) of each whole row
            cut = None  # the path (or its start) of a last row cut short while it was written
            for n, (row, end, ended) in enumerate(records, start=2):
                if cut is not None:  # a row before this one was short: not the last, so not cut
                    raise ResumeError(f"--resume: {path} row {n - 1} has {cut[1]} fields, not {len(header)}: "
                                      "not a file that pyfer predict wrote")
                if len(row) != len(header) or not ended:
                    cut = ((row or [""])[0], len(row))
                    continue
                rows.append((row[0], end))
    except csv.Error as e:
        raise ResumeError(f"--resume: {path} is not a CSV file pyfer predict wrote: {e}") from None
    recorded = _read_sidecar(path)
    notes = []
    if recorded is None:
        if rows:
            notes.append(f"{path} was started without --resume, so the settings of its rows are not known: "
                         "they are taken as this run's")
        cwd = None
    else:
        differ = sorted(k for k in set(recorded["settings"]) | set(settings)
                        if recorded["settings"].get(k) != settings.get(k))
        if differ:
            raise ResumeError(f"--resume: {path} was written with other settings ({', '.join(differ)}): give "
                              "the first run's options, or name a new --csv file")
        cwd = recorded["cwd"]
        if rows and cwd != os.getcwd() and any(not p.is_absolute() for p in inputs):
            # the rows added would be read from the first run's folder at the next resume
            raise ResumeError(f"--resume: {path} was started in {cwd}: go on from there, or give the PATHs as "
                              "absolute paths")
    keys = [file_key(Path(p), cwd) for p, _ in rows]
    wanted = {file_key(p) for p in inputs}
    if keys and not wanted & set(keys):
        raise ResumeError(f"--resume: none of the {len(set(keys))} image(s) in {path} is among this run's "
                          "inputs: give the PATHs of the first run, or name a new --csv file")
    keep = len(keys)
    # the last whole image is done again where a row of its own may be missing: a stop between two
    # of its rows, or a row cut short whose path is (the start of) its own. A cut row of another
    # image shows that it was complete.
    last_may_be_short = bool(rows) and (cut is None or rows[-1][0].startswith(cut[0]))
    if keys and keys[-1] in wanted and last_may_be_short:
        while keep and keys[keep - 1] == keys[-1]:
            keep -= 1
    elif keys and last_may_be_short:
        notes.append(f"the last image of {path}, {rows[-1][0]}, is not among this run's inputs: its rows "
                     "are kept as they are")
    offset = rows[keep - 1][1] if keep else header_end
    return offset, set(keys[:keep]), notes, cwd


def _read_sidecar(path: str) -> Optional[dict]:
    try:
        recorded = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ResumeError(f"--resume: cannot read {sidecar_path(path)}: {e}") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("settings"), dict) \
            or not isinstance(recorded.get("cwd"), str):
        raise ResumeError(f"--resume: {sidecar_path(path)} is not what pyfer predict writes")
    return recorded


def _write_sidecar(path: str, settings: dict, cwd: str) -> None:
    """The settings and ``cwd``, the folder of the file's first run, written whole."""
    with atomic_write(sidecar_path(path)) as f:
        f.write(json.dumps({"cwd": cwd, "settings": settings}, indent=1) + "\n")
