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
from typing import IO, Iterator, Optional, Sequence

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


def _records(data: bytes) -> Iterator[tuple[list[str], int]]:
    """The CSV records of ``data``, each with the byte offset where it ends (csv.reader reads a
    line at a time, and further lines only inside a quoted field)."""
    offset = 0

    def lines() -> Iterator[str]:
        nonlocal offset
        for line in data.splitlines(keepends=True):
            offset += len(line)
            yield line.decode("utf-8", "surrogateescape")

    for row in csv.reader(lines()):
        yield row, offset


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
             input_keys: Sequence[str]) -> tuple[IO[str], set[str], list[str]]:
    """The ``--csv`` file opened for this run, locked, its header written where it starts afresh:
    ``(file, keys of the images it already has, notes for stderr)``. The keys are ``file_key``s,
    as ``input_keys`` are. Raises ResumeError (nothing changed) when it cannot go on."""
    settings = json.loads(json.dumps(settings))  # as the sidecar gives them back (lists, not tuples)
    regular = not os.path.exists(path) or os.path.isfile(path)
    if resume and not regular:
        raise ResumeError(f"--resume needs --csv to be a file, and {path} is not a regular file")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # appended to (and emptied or cut once it is locked): "w" would empty it before the lock
    f = open(path, "a" if regular else "w", newline="", encoding="utf-8", errors="surrogateescape")
    try:
        if regular:
            _lock(f, path)
        done: set[str] = set()
        notes: list[str] = []
        keep = 0
        if resume:
            keep, done, notes = _resume_point(path, header, settings, input_keys)
        if regular:
            f.flush()
            os.truncate(f.fileno(), keep)
        if keep == 0:
            csv.writer(f).writerow(header)
            f.flush()
        if resume:
            _write_sidecar(path, settings)
        else:
            sidecar_path(path).unlink(missing_ok=True)  # it described the rows just emptied
        return f, done, notes
    except BaseException:
        f.close()
        raise


def _resume_point(path: str, header: Sequence[str], settings: dict,
                  input_keys: Sequence[str]) -> tuple[int, set[str], list[str]]:
    """(the byte offset to keep the file up to, the keys of its images, notes)."""
    data = Path(path).read_bytes()
    if not data:
        return 0, set(), []
    records = list(_records(data))
    if records[0][0] != list(header):
        raise ResumeError(f"--resume: {path} does not have this run's columns (another version or other "
                          "weights?): name a new --csv file, or leave out --resume to start it afresh")
    rows = records[1:]
    cut = None  # the path (or its start) of a row cut short while it was written
    if rows and (not data.endswith(b"\n") or len(rows[-1][0]) != len(header)):
        cut = (rows.pop()[0] or [""])[0]
    for i, (row, _) in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ResumeError(f"--resume: {path} row {i} has {len(row)} fields, not {len(header)}: "
                              "not a file that pyfer predict wrote")
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
    keys = [file_key(Path(row[0]), cwd) for row, _ in rows]
    wanted = set(input_keys)
    if keys and not wanted & set(keys):
        raise ResumeError(f"--resume: none of the {len(set(keys))} image(s) in {path} is among this run's "
                          "inputs: give the PATHs of the first run, or name a new --csv file")
    keep = len(keys)
    # the last whole image is done again where a row of its own may be missing: a stop between two
    # of its rows, or a row cut short whose path is (the start of) its own. A cut row of another
    # image shows that it was complete.
    last_may_be_short = cut is None or rows[-1][0][0].startswith(cut) if rows else False
    if keys and keys[-1] in wanted and last_may_be_short:
        while keep and keys[keep - 1] == keys[-1]:
            keep -= 1
    elif keys and last_may_be_short:
        notes.append(f"the last image of {path}, {rows[-1][0][0]}, is not among this run's inputs: its rows "
                     "are kept as they are")
    offset = rows[keep - 1][1] if keep else records[0][1]
    return offset, set(keys[:keep]), notes


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


def _write_sidecar(path: str, settings: dict) -> None:
    """The settings and the folder of the first run (kept when there is one), written whole."""
    recorded = _read_sidecar(path) if sidecar_path(path).exists() else None
    cwd = recorded["cwd"] if recorded is not None else os.getcwd()
    target = sidecar_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"cwd": cwd, "settings": settings}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
