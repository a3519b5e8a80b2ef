"""The ``pyfer`` command (also ``python -m pyfer``).

    pyfer predict PATH...|- [--recursive] [--csv FILE [--resume]] [--json] [--out FILE | --out-dir DIR]
    pyfer video SOURCE [--out annotated.mp4] [--jsonl faces.jsonl|-] [--summary faces.csv] [--timeline faces.png]
                    [--max-frames N] [--no-smoothing] [--no-scene-cuts]
    pyfer evaluate FOLDER|CSV [--json FILE|-] [--limit N]
    pyfer bench ...                 (see pyfer bench --help)
    pyfer info
    pyfer --version

Exit statuses of ``pyfer predict`` (and the other commands):

    0  every input was read and processed (an image without faces is a success)
    1  at least one input was missing, unreadable or not an image, or an annotated copy could not
       be written during the run; each is reported on stderr and skipped, all other inputs are
       still processed and written
    2  usage or setup error, nothing processed: bad option, weights or detector model not
       loadable, device not available, unsupported output format, output folder not writable,
       an output (``--out``, ``--csv``, ``--jsonl``) naming an input, two outputs naming the same
       file, an existing output file that may not be written; for ``pyfer video``, a source that
       is missing, a folder, unreadable, cannot be opened or gives no frame, a source or ``--out``
       whose file name is not valid UTF-8 (OpenCV cannot open it), ``--max-frames`` below 1
   74  an output file or stdout could not be written during the run (a full disk, a device error)
  130  interrupted (Ctrl-C); what was written so far is complete up to the last image (``--resume``
       goes on with a ``--csv`` file), or frame (an annotated video is finalised; Ctrl-C is how a
       camera session ends: status 0)
  141  stdout was closed by its reader (``pyfer predict DIR --json | head``): stopped quietly, as
       a process ended by SIGPIPE
  143  terminated (SIGTERM: ``kill``, ``timeout``, ``docker stop``; POSIX), stopped as Ctrl-C stops
       it (a camera too) within TERMINATE_GRACE_S, else ended where it is (not ``pyfer bench``,
       which SIGTERM just ends)
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import functools
import glob
import importlib.util
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, ContextManager, Iterator, Optional, Sequence

from pyfer.atomic import (another_user_s_in_a_shared_folder, atomic_write, descriptor_named, make_folders,
                          open_in_place, real_path, sticky_and_not_ours, written_in_place)
from pyfer.c_stderr import caught_c_stderr
from pyfer.files import VIDEO_CODECS, image_files, is_image_name, mark_annotated, without_annotated_copies
from pyfer.resume import ResumeError, file_key, open_csv, sidecar_path

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141
EXIT_OUTPUT_FAILED = 74  # sysexits' EX_IOERR: an output (a file or stdout) could not be written
EXIT_TERMINATED = 128 + 15  # SIGTERM, as a shell reports a process it ended

GRAY_ONLY_TYPES = (".pgm", ".pbm")  # OpenCV writes these from one channel: annotated copies go gray
VIDEO_EXTENSIONS = tuple(VIDEO_CODECS)  # what ``pyfer video --out`` can write
EXIT_STATUS_HELP = ("exit status: 0 all inputs processed; 1 some inputs missing or unreadable, or an "
                    "annotated copy not written (each reported on stderr, the rest still processed); 2 usage "
                    "or setup error, nothing processed; 74 an output could not be written (disk full, I/O "
                    "error); 130 interrupted; 141 stdout closed by its reader; 143 terminated (SIGTERM), "
                    "outputs finished as for 130")
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
PROGRESS_MIN_IMAGES = 10  # --progress auto: a bar for runs of at least this many images (on a terminal)
STDIN = Path("-")  # ``pyfer predict -``: one image piped to stdin (``curl -s URL | pyfer predict -``);
# a file named "-" is ./- (read as the absolute path, never as stdin)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be: the same clean stop (rows
    flushed, an annotated video finalised), then exit status 143."""


TERMINATE_GRACE_S = 5.0  # after SIGTERM, the clean stop's time limit; then the process just ends


def _raise_terminated(signum, frame):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM during the clean-up ends it at once
    raise Terminated()


class _SigtermAsCtrlC:
    """For the run of a command: SIGTERM raises :class:`Terminated` in the main thread. Python runs
    that handler only between bytecodes, and a call blocked in C (OpenCV opening a named pipe or
    a stalled stream) would then never end: the signal also wakes a watcher thread (through
    ``signal.set_wakeup_fd``), which ends the process with status 143 if the clean stop has not
    finished within ``TERMINATE_GRACE_S``. Left alone outside the main thread, on Windows (no
    clean stop there), and where a handler or a wakeup fd is already set (a host program's)."""

    def __enter__(self):
        import signal
        import threading

        self.active = False
        if (os.name != "posix" or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
            return self
        read_end, self.write_end = os.pipe()
        os.set_blocking(self.write_end, False)
        if signal.set_wakeup_fd(self.write_end, warn_on_full_buffer=False) != -1:  # someone else's
            signal.set_wakeup_fd(-1)
            os.close(read_end), os.close(self.write_end)
            return self
        self.finished = threading.Event()
        threading.Thread(target=self._watch, args=(read_end,), name="pyfer-sigterm", daemon=True).start()
        signal.signal(signal.SIGTERM, _raise_terminated)
        self.active = True
        return self

    def _watch(self, read_end: int) -> None:
        import signal

        with os.fdopen(read_end, "rb", buffering=0) as wakeups:
            while data := wakeups.read(64):
                if signal.SIGTERM in data:
                    if not self.finished.wait(TERMINATE_GRACE_S):
                        os._exit(EXIT_TERMINATED)
                    return

    def __exit__(self, *exc) -> None:
        import signal

        if self.active:
            self.finished.set()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            os.close(self.write_end)  # the watcher reads the end of its pipe and returns


class UsageError(Exception):
    """A problem with the command line or the set-up: reported in one line, exit status 2."""


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", help="a .safetensors weights file (default: the shipped student)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (needs a CUDA build and a GPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of the engine and of YuNet on it (default: every CPU this process may use, as "
                        "taskset or a cpuset allows, "
                        "no more than a cgroup CPU quota rounded up)")
    p.add_argument("--detector", default="yunet", choices=["yunet", "yunet-tilted", "haar", "mediapipe", "none"],
                   help="face detector (default yunet); yunet-tilted also finds heads tilted 30-45 degrees "
                        "in large photos (about 3x the detection time); 'none' treats each whole image as one face")
    p.add_argument("--min-face", type=float, default=None, metavar="PX",
                   help="smallest face to search for and report, in image pixels (default: report every face "
                        "found; yunet searches from 60 px, less in small images)")
    p.add_argument("--score-threshold", type=float, default=None, metavar="T",
                   help="detection score threshold, above 0 and below 1 (yunet default 0.6; mediapipe 0.5)")
    p.add_argument("--no-flip", dest="flip", action="store_false",
                   help="skip the mirror image: about half the expression engine's time, about 1 point "
                        "of accuracy (docs/recognizer.md)")
    p.add_argument("--prior-shift", type=float, default=None, metavar="S",
                   help="how much of the training class prior the scores keep: 0 favours the rare "
                        "expressions (anger, disgust, fear, contempt), 1 neutral and happiness "
                        "(default: the weights' own, 0.4 for the shipped student)")


def _recognizer(args):
    from pyfer.recognizer import Recognizer

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    try:
        return Recognizer(args.weights, device=args.device, threads=args.threads,
                          detector=None if args.detector == "none" else args.detector,
                          min_face=args.min_face, score_threshold=args.score_threshold, flip=args.flip,
                          prior_shift=args.prior_shift)
    except (OSError, ValueError, TypeError, RuntimeError, ImportError) as e:
        # no weights, CPU-only build or no GPU for --device cuda, bad detector settings, ...
        raise UsageError(_flag_names(str(e)) if isinstance(e, ValueError) else str(e)) from None


# Recognizer's parameters that the command line sets, by the flag a user typed; a name is
# replaced only as a word of its own, not inside a path such as runs/min_face_sweep/
PARAMETER_AS_WORD = re.compile(r"(?<![\w/\\.-])(min_face|score_threshold|prior_shift|threads)(?![\w/\\.-])")


def _flag_names(message: str) -> str:
    """A Recognizer ValueError as the command line's user reads it: flags, not parameter names."""
    return PARAMETER_AS_WORD.sub(lambda m: "--" + m.group(1).replace("_", "-"), message)


def _resolved(path, what: str, named: str) -> Path:
    """``path`` resolved by pyfer.atomic.real_path; a link it will not follow is a usage error."""
    try:
        return Path(real_path(path))
    except PermissionError as e:
        raise UsageError(f"{what} {named}: {e.strerror}") from None


def _check_writable_folder(folder: Path, what: str, named: str) -> None:
    """Fail now, before anything is processed or created, if ``folder`` (given as ``what named``)
    could not be written into: it, or the nearest folder above it that exists, must be a writable
    folder (the rest is created later)."""
    _resolved(folder, what, named)
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{what} {named}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {named}: the folder {folder} is not writable")


def _check_writable_file(path: str, what: str, replaced: bool = True) -> None:
    """Fail now, before a long run, if the file ``path`` could not be written at its end.
    ``replaced``: written beside and renamed over (``pyfer.atomic.atomic_write``), so its real
    folder must take a new file and the file must be the user's to replace; else written in place
    (a CSV, JSON lines, a video), where an existing writable file is enough. A stream name
    (``/dev/stdout``) is always written in place."""
    number = descriptor_named(path)
    if number is not None:
        try:
            os.fstat(number)
        except OSError:
            raise UsageError(f"{what} {path}: descriptor {number} is not open") from None
    if Path(path).is_dir():
        raise UsageError(f"{what} {path} is a folder; name a file")
    real = _resolved(path, what, path)  # (also written in place: Linux follows such a link unless told not to)
    exists = Path(path).exists()
    if exists and not os.access(path, os.W_OK):
        raise UsageError(f"{what} {path}: the file is not writable")
    if exists and not replaced and another_user_s_in_a_shared_folder(real):
        raise UsageError(f"{what} {path}: another user's file in a shared folder ({real.parent}, sticky): not "
                         "written in place, as Linux's fs.protected_regular")
    if written_in_place(path) or (exists and not replaced):
        return
    _check_writable_folder(real.parent, what, path)
    if exists and sticky_and_not_ours(real):
        raise UsageError(f"{what} {path}: another user's file in a folder only its owners may replace "
                         f"files in ({real.parent}, sticky)")


MATPLOTLIB_MIN = (3, 9)  # the timeline's hatched layers (a list of hatches in stackplot)


def _need_matplotlib(flag: str) -> None:
    """Refuse now, not after a whole video, where matplotlib is missing or too old."""
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"{flag} needs matplotlib (pip install 'matplotlib>=3.9')")
    from importlib.metadata import PackageNotFoundError, version

    try:
        have = tuple(int(part) for part in re.findall(r"\d+", version("matplotlib"))[:2])
    except PackageNotFoundError:  # (importable, but not installed as a distribution: let it try)
        return
    if have < MATPLOTLIB_MIN:
        raise UsageError(f"{flag} needs matplotlib 3.9 or newer, and {version('matplotlib')} is installed "
                         "(pip install -U matplotlib)")


def _names_stdout(path: str) -> bool:
    """Whether ``path`` is a stream name (/dev/stdout, /proc/self/fd/1) of this process's stdout."""
    try:
        return written_in_place(path) and os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # (no such name; a stand-in stdout without a descriptor)
        return False


def _refuse_overwriting_inputs(outputs: dict, inputs: Sequence[Path]) -> None:
    """No output (``{flag: path}``) may be one of the inputs it would destroy."""
    existing = [p for p in inputs if p.exists()]
    for flag, out in outputs.items():
        if not out or out == "-" or not Path(out).exists():
            continue
        for p in existing:
            if os.path.samefile(out, p):
                raise UsageError(f"{flag} {out} is an input ({p}): writing it would destroy it; "
                                 "choose another name")


def _refuse_same_output(outputs: dict) -> None:
    """No two outputs (``{flag: path}``) may name the same file: one would silently replace the other."""
    given = [(flag, out) for flag, out in outputs.items() if out and out != "-"]
    for i, (flag_a, a) in enumerate(given):
        for flag_b, b in given[i + 1:]:
            same = os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))
            if same or (os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)):
                raise UsageError(f"{flag_a} {a} and {flag_b} {b} name the same file: one would replace "
                                 "the other; choose two names")


def _utf8(name: str) -> bool:
    """Whether ``name`` can go to OpenCV: its Python wrapper crashes on a str that is not valid
    UTF-8 (a Latin-1 file name arrives as surrogate escapes)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@functools.lru_cache(maxsize=None)
def _have_image_writer(ext: str) -> bool:
    """Whether OpenCV writes an annotated copy (8-bit BGR; gray for GRAY_ONLY_TYPES) as this type:
    a small one is encoded, by suffix only, never with a file name. Asking haveImageWriter raised
    for EXR's writer switched off, and said yes for it switched on, which writes floats only."""
    import cv2
    import numpy as np

    if not (ext and _utf8(ext)):
        return False
    sample = np.zeros((64, 64) if ext in GRAY_ONLY_TYPES else (64, 64, 3), np.uint8)  # (JPEG 2000 needs 32 px)
    try:
        return bool(cv2.imencode(ext, sample)[0])
    except cv2.error:  # (no writer for the type, or one switched off)
        return False


def _check_image_output(path: str, what: str) -> None:
    ext = Path(path).suffix.lower()
    if not _have_image_writer(ext):
        raise UsageError(f"{what} {path}: cannot write images of type {ext or '(no extension)'!r}; "
                         "use .jpg, .png, .bmp, .tif or .webp")
    _check_writable_file(path, what)


# -- inputs ------------------------------------------------------------------------------------
def expand_inputs(args_paths: Sequence[str], recursive: bool
                  ) -> tuple[list[tuple[Path, Path]], list[str], list[str]]:
    """Command-line PATHs -> ``([(image path, root for naming outputs)], [error messages], [notes])``.

    A file is taken as it is (whatever its extension: if it is not an image, reading it fails and
    is reported). A folder gives its image files (``IMAGE_EXTENSIONS``), sorted, with subfolders
    only when ``recursive``. A path that does not exist but holds ``* ? [`` is a glob (``**`` spans
    folders with ``recursive``); like a folder, it gives image files only, and a leading part of it
    that exists as written (``photos[2020]/*.jpg``) is taken literally. A folder or a glob leaves
    out the annotated copies pyfer wrote (``pyfer.files.is_annotated_copy``; a note says how many):
    a second run over photos/ with ``--out-dir photos`` must not read its own drawings as photos.
    Duplicates are dropped, the first occurrence kept."""
    out: list[tuple[Path, Path]] = []
    errors: list[str] = []
    seen: set[str] = set()
    n_annotated = 0

    def add(p: Path, root: Path) -> None:
        key = file_key(p)
        if key not in seen:
            seen.add(key)
            out.append((p, root))

    for arg in args_paths:
        p = Path(arg) if arg == "-" or Path(arg) != STDIN else Path.cwd() / arg  # ./- is a file
        if "://" in arg and not p.exists():  # (Path folds the "//": the name reads garbled)
            errors.append(f"{arg}: a URL; pyfer reads local files only (it never uses the network): "
                          "download the image first")
        elif p.is_dir():
            found = image_files(p, recursive)
            if not found:
                errors.append(f"{arg}: no image files in this folder"
                              + ("" if recursive else " (use --recursive for subfolders)"))
            found, n = without_annotated_copies(found)
            n_annotated += n
            for q in found:
                add(q, p)
        elif p.exists() or not any(c in arg for c in "*?["):
            add(p, p.parent)  # a missing plain path is reported when it is read
        else:
            matches = glob.glob(_literal_prefix_escaped(arg), recursive=recursive)
            # through a symlinked folder one file can match under several names: keep the shortest
            shortest: dict[str, Path] = {}
            for q in sorted((Path(m) for m in matches), key=lambda q: (len(q.parts), q.as_posix())):
                if q.is_file() and is_image_name(q):
                    shortest.setdefault(file_key(q), q)
            files = sorted(shortest.values(), key=lambda q: q.as_posix())
            if not files:
                errors.append(f"{arg}: no image file matches this pattern")
            files, n = without_annotated_copies(files)
            n_annotated += n
            for q in files:
                add(q, q.parent)
    notes = [f"left out {n_annotated} annotated cop{'y' if n_annotated == 1 else 'ies'} pyfer wrote "
             "(found by a folder or a pattern; name one to read it)"] if n_annotated else []
    return out, errors, notes


def _literal_prefix_escaped(pattern: str) -> str:
    """``pattern`` with its longest leading part that exists on disk escaped, so that a folder
    named with brackets (``photos[2020]/*.jpg``) is read as a name, not as a character class."""
    parts = Path(pattern).parts
    for k in range(len(parts) - 1, 0, -1):
        head = Path(*parts[:k])
        if head.exists():
            return str(Path(glob.escape(str(head)), *parts[k:]))
    return pattern


def _file_id(p) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(p)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _out_path(out_dir: Path, image: Path, root: Path, taken: set[Path],
              inputs: frozenset = frozenset()) -> Path:
    """Where the annotated copy of ``image`` goes: its path relative to the folder it was found in,
    under ``out_dir``; never an input of the run (``inputs``: their ``_file_id``s; the image itself
    always), never a name already used in this run."""
    try:
        rel = Path("stdin.png") if image == STDIN else image.relative_to(root)
    except ValueError:
        rel = Path(image.name)
    dest = out_dir / rel
    if not _have_image_writer(dest.suffix.lower()):
        dest = dest.with_suffix(".png")
    stem, n = dest.stem, 0
    avoid = inputs | {_file_id(image)} - {None}
    while dest in taken or (dest.exists() and _file_id(dest) in avoid):
        n += 1
        dest = dest.with_name(f"{stem}_annotated{'' if n == 1 else n}{dest.suffix}")
    taken.add(dest)
    return dest


# -- outputs -----------------------------------------------------------------------------------
def csv_header(class_names: Sequence[str]) -> list[str]:
    lm = [f"{n}_{c}" for n in LANDMARK_NAMES for c in ("x", "y")]
    return ["path", "face", "x", "y", "w", "h", *lm, "detection_score", "label", "confidence", *class_names]


def csv_rows(path: str, faces, class_names: Sequence[str]) -> Iterator[list]:
    """One row per face; an image without faces gives one row with an empty face index and box."""
    if not faces:
        yield [path] + [""] * (len(csv_header(class_names)) - 1)
        return
    for i, f in enumerate(faces):
        lm = [f"{v:.2f}" for pt in f.landmarks for v in pt] if f.landmarks is not None else [""] * 10
        score = "" if f.detection_score is None else f"{f.detection_score:.4f}"
        yield [path, i, *f.box, *lm, score, f.label, f"{f.confidence:.6f}",
               *(f"{f.scores[c]:.6f}" for c in class_names)]


def _open_output(path: str, what: str) -> ContextManager[IO[str]]:
    """A file written whole at the end of a run (``pyfer evaluate --json/--csv``): replaced only
    when complete; a stream name (``/dev/stdout``) written in place."""
    try:
        if written_in_place(path):
            return open_in_place(path)
        make_folders(Path(path).parent)
        # (text is written with surrogateescape: a file name that is not valid UTF-8 goes back as its own bytes)
        return atomic_write(path)
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror or e}") from None


def _run_settings(rec) -> dict:
    """What a ``--resume`` run must share with the first: the weights (by content) and every
    setting of the recognizer that changes a row."""
    from pyfer.engine import file_sha256

    return {"weights_sha256": file_sha256(rec.weights_path),
            **{k: v for k, v in rec.info().items() if k != "weights"}}


def _add_progress_args(p: argparse.ArgumentParser,
                       auto: str = f"{PROGRESS_MIN_IMAGES}+ images on a terminal") -> None:
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help=f"progress bar on stderr (auto: {auto})")
    p.add_argument("--no-progress", dest="progress", action="store_const", const="never", help="= --progress never")


def _shows_progress(mode: str, total: int) -> bool:
    return mode == "always" or (mode == "auto" and total >= PROGRESS_MIN_IMAGES and sys.stderr.isatty())


class _Progress:
    """A tqdm bar on stderr (or nothing); lines for stdout go through it so the bar stays intact."""

    def __init__(self, total: int, mode: str):
        self.bar = None
        if _shows_progress(mode, total):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)

    def print(self, line: str, file: Optional[IO[str]] = None) -> None:
        file = sys.stdout if file is None else file  # looked up now: tests and callers swap it
        if self.bar is not None:
            self.bar.write(line, file=file)
        else:
            print(line, file=file)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _predict(args) -> int:
    from pyfer.recognizer import image_errors, load_image

    # every check first: a usage error leaves nothing behind
    if args.out and args.out_dir:
        raise UsageError("give --out (one image) or --out-dir (any number), not both")
    if args.out:
        _check_image_output(args.out, "--out")
    if args.csv and args.csv != "-" and _names_stdout(args.csv):  # --csv /dev/stdout: as --csv -
        args.csv = "-"
    if args.csv and args.csv == "-" and args.json:
        raise UsageError("--csv - and --json both write to stdout; send the CSV to a file")
    if args.csv and args.csv != "-":
        _check_writable_file(args.csv, "--csv", replaced=False)
        sidecar = str(sidecar_path(args.csv))
        if args.resume:  # its settings are written beside it, whole
            _check_writable_file(sidecar, "--resume", replaced=True)
        elif os.path.lexists(sidecar):  # an old run's settings, removed: they would describe other rows
            if os.path.isdir(sidecar) and not os.path.islink(sidecar):
                raise UsageError(f"--csv {args.csv}: {sidecar} (where its --resume settings go) is a folder")
            _check_writable_folder(Path(sidecar).parent, f"--csv {args.csv}: removing the old", sidecar)
            if sticky_and_not_ours(Path(os.path.abspath(sidecar))):  # (found after the CSV was emptied)
                raise UsageError(f"--csv {args.csv}: the old --resume settings {sidecar} are another user's file "
                                 f"in a folder only its owners may remove files from "
                                 f"({Path(os.path.abspath(sidecar)).parent}, sticky)")
    if args.resume and (not args.csv or args.csv == "-"):
        raise UsageError("--resume goes on with the --csv FILE of an interrupted run: give that file")
    if args.resume and "-" in args.paths:
        raise UsageError("--resume cannot tell whether stdin holds the image it read before: leave out '-'")
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None:
        _check_writable_folder(out_dir, "--out-dir", args.out_dir)
    if "-" in args.paths and sys.stdin.isatty():
        raise UsageError("'-' reads one image piped to stdin (pyfer predict - < photo.jpg), and stdin is a terminal")
    inputs, input_errors, input_notes = expand_inputs(args.paths, args.recursive)
    for note in input_notes:
        print(f"pyfer predict: note: {note}", file=sys.stderr)
    if out_dir is not None and out_dir.is_dir():
        # an --out-dir inside a folder searched (archive/annotated/ of archive/): the annotated copies
        # of a run before are outputs, not inputs (copies written beside the photos stay inputs)
        outputs = os.path.realpath(out_dir)

        def an_output(p: Path, root: Path) -> bool:  # under --out-dir, which lies inside the folder searched
            return (os.path.realpath(p).startswith(os.path.join(outputs, ""))
                    and outputs.startswith(os.path.join(os.path.realpath(root), "")))

        kept = [(p, r) for p, r in inputs if p == STDIN or not an_output(p, r)]
        if len(kept) < len(inputs):
            print(f"pyfer predict: note: left out {len(inputs) - len(kept)} image(s) in --out-dir {out_dir}",
                  file=sys.stderr)
            inputs = kept
    if args.out and len(inputs) + len(input_errors) != 1:
        raise UsageError(f"--out takes exactly one image, got {len(inputs)}; use --out-dir for several")
    _refuse_overwriting_inputs({"--out": args.out, "--csv": args.csv}, [p for p, _ in inputs])
    _refuse_same_output({"--out": args.out, "--csv": args.csv})
    rec = _recognizer(args)
    names = rec.class_names
    keys = {p: file_key(p) for p, _ in inputs if p != STDIN}
    done: set[str] = set()
    csv_file: Optional[IO[str]]
    if args.csv and args.csv != "-":
        try:
            # (the settings are hashed and compared only for a resume)
            csv_file, done, notes = open_csv(args.csv, csv_header(names), args.resume,
                                             _run_settings(rec) if args.resume else {}, list(keys))
        except ResumeError as e:
            raise UsageError(str(e)) from None
        except OSError as e:
            if e.filename is None:  # writing the header failed (a full disk): status 74, as any write
                raise
            raise UsageError(f"--csv {args.csv}: {e.filename}: {e.strerror or e}" if e.filename != args.csv
                             else f"--csv {args.csv}: {e.strerror or e}") from None
        for note in notes:
            print(f"pyfer predict: note: {note}", file=sys.stderr)
    else:
        csv_file = sys.stdout if args.csv == "-" else None
    n_skip = sum(keys.get(p) in done for p, _ in inputs)  # (--resume: images an earlier run did)
    if args.resume:
        print(f"pyfer predict: resuming {args.csv}: {n_skip} of {len(inputs)} image(s) already there, "
              f"{len(inputs) - n_skip} to go", file=sys.stderr)
    if out_dir is not None:  # (after the --csv checks: a refused resume leaves no folder behind)
        try:
            make_folders(out_dir)
        except OSError as e:
            if csv_file not in (None, sys.stdout):
                csv_file.close()
            raise UsageError(f"--out-dir {out_dir}: {e.strerror or e}") from None
    writer = csv.writer(csv_file) if csv_file is not None else None
    if args.csv == "-" and writer is not None:
        writer.writerow(csv_header(names))
    text = not args.json and args.csv != "-"
    failed = len(input_errors)
    for msg in input_errors:
        print(f"pyfer predict: {msg}", file=sys.stderr)
    n_faces = n_done = n_unwritten = 0
    taken: set[Path] = set()
    # no annotated copy may replace an input (also one not read yet) or the CSV file
    avoid = [p for p, _ in inputs] + ([args.csv] if csv_file not in (None, sys.stdout) else [])
    input_ids = frozenset(i for i in map(_file_id, avoid) if i is not None) if out_dir else frozenset()
    n_skipped = n_recopied = 0
    progress = _Progress(len(inputs) - n_skip, args.progress)

    def decoded(source, path):
        """load_image(source). In pyfer's own process a decoder's message on the C stderr
        (libjpeg's "Corrupt JPEG data: ..." for a damaged JPEG it still decodes) is caught and
        said again as a note that names the file: bare, nobody could tell which image it was."""
        if not args.own_process:
            return load_image(source)
        said: list[str] = []
        try:
            with caught_c_stderr(said):
                return load_image(source)
        finally:
            for line in "".join(said).splitlines():
                if line.strip():
                    progress.print(f"pyfer predict: {path}: note: {line.strip()}", file=sys.stderr)

    def copied(path, dest: Path, image, faces) -> bool:
        """The annotated copy written, or the reason it was not reported (and counted)."""
        nonlocal failed, n_unwritten
        why = _write_annotated_copy(dest, image, faces)
        if why is not None:
            progress.print(f"pyfer predict: {path}: cannot write the annotated copy {dest}: {why}", file=sys.stderr)
            failed += 1
            n_unwritten += 1
        return why is None

    if args.verbose:  # imported now, not inside the first image's timed decode (25-40 ms of it)
        import cv2  # noqa: F401
    t_start = time.perf_counter()
    try:
        for path, root in inputs:
            if keys.get(path) in done:  # an earlier run's (--resume); its copy's name stays taken
                n_skipped += 1
                dest = _out_path(out_dir, path, root, taken, input_ids) if out_dir is not None else None
                if dest is None or dest.exists():
                    continue
                # its row is there and its copy is not (a write that failed, a stop between the two):
                # the copy is made now, and no second row
                try:
                    image = decoded(path, path)
                    faces = rec.predict(image)
                except image_errors() as e:
                    progress.print(f"pyfer predict: {path}: {e}", file=sys.stderr)
                    failed += 1
                    continue
                if copied(path, dest, image, faces):
                    n_recopied += 1
                continue
            try:
                t0 = time.perf_counter()
                # decoded here, not in predict: the annotated copy needs it
                image = decoded(sys.stdin.buffer.read() if path == STDIN else path, path)
                t_decode = time.perf_counter() - t0
                faces = rec.predict(image)
            except image_errors() as e:
                progress.print(f"pyfer predict: {path}: {e}", file=sys.stderr)
                if args.json:  # a saved faces.jsonl shows what was not read, too
                    progress.print(json.dumps({"image": str(path), "error": str(e)}))
                failed += 1
                progress.update()
                continue
            n_faces += len(faces)
            n_done += 1
            if args.json:
                progress.print(json.dumps({"image": str(path), "faces": [f.to_dict() for f in faces]}))
            elif text:
                lines = [f"{path}: {len(faces)} face(s)"]
                for f in faces:
                    top = sorted(f.scores.items(), key=lambda kv: -kv[1])[:3]
                    lines.append(f"  box={f.box} {f.label} ({f.confidence:.2f})  "
                                 + "  ".join(f"{k}={v:.2f}" for k, v in top))
                if args.verbose:
                    timings = dict(rec.last_timings)
                    timings["decode"] += t_decode
                    lines.append("  time (ms): " + "  ".join(f"{k}={v * 1e3:.1f}" for k, v in timings.items()))
                progress.print("\n".join(lines))
            if writer is not None and csv_file is not None:
                writer.writerows(csv_rows(str(path), faces, names))
                csv_file.flush()  # complete rows on disk even if the run is stopped later
            dest = Path(args.out) if args.out else (_out_path(out_dir, path, root, taken, input_ids)
                                                    if out_dir else None)
            if dest is not None:
                if copied(path, dest, image, faces) and args.out and text:
                    progress.print(f"wrote {dest}")
            progress.update()
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        progress.close()
        go_on = (f" ({args.csv} has the images done so far; the same command with --resume goes on)"
                 if csv_file not in (None, sys.stdout) else "")
        terminated = isinstance(e, Terminated)
        print(f"pyfer predict: {'terminated' if terminated else 'interrupted'}{go_on}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        progress.close()
        if csv_file is not None and csv_file is not sys.stdout:
            csv_file.close()
    dt = time.perf_counter() - t_start
    if len(inputs) > 1 or failed or args.verbose:
        unwritten = f" ({n_unwritten} annotated cop{'y' if n_unwritten == 1 else 'ies'} not written)" \
            if n_unwritten else ""
        skipped = f", {n_skipped} done before (--resume)" if n_skipped else ""
        if n_recopied:
            skipped += f" ({n_recopied} of them without their annotated copy: made now)"
        print(f"pyfer predict: {n_done} image(s), {n_faces} face(s), {failed} failed{unwritten}{skipped}, "
              f"{dt:.1f} s", file=sys.stderr)
    if out_dir is not None and text and n_done > n_unwritten:  # (not when no copy was written)
        print(f"annotated copies in {out_dir}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _write_annotated_copy(dest: Path, image, faces: list) -> Optional[str]:
    """The image with its faces drawn, written whole or not at all (a stop or a full disk leaves
    no half copy); None when written, else why not. A file the user may not write is left as it is."""
    import cv2

    from pyfer.video import draw_faces

    try:
        if dest.exists() and not os.access(dest, os.W_OK):
            return "the file is not writable (left as it is)"
        if dest.exists() and sticky_and_not_ours(Path(real_path(dest))):
            return "another user's file in a sticky folder (left as it is)"
        make_folders(dest.parent)
        annotated = draw_faces(image, faces)
        if dest.suffix.lower() in GRAY_ONLY_TYPES:
            annotated = cv2.cvtColor(annotated, cv2.COLOR_BGR2GRAY)
        # encoded in memory and written by Python: OpenCV never sees the file name (its wrapper
        # crashes on one that is not valid UTF-8)
        ok, encoded = cv2.imencode(dest.suffix, annotated)
        if not ok:
            return f"OpenCV cannot encode {dest.suffix}"
        with atomic_write(dest, binary=True) as copy:
            copy.write(mark_annotated(encoded.tobytes()))  # (a later run over this folder leaves it out)
        return None
    except OSError as e:
        return e.strerror or str(e)
    except cv2.error as e:
        return f"OpenCV: {str(e).strip().splitlines()[-1]}"


def _video(args) -> int:
    from pyfer.video import IoUTracker, Timeline, is_network_address, process_video

    if not (args.out or args.jsonl or args.summary or args.timeline):
        raise UsageError("give --out, --jsonl, --summary and/or --timeline")
    if is_network_address(args.source) and not args.allow_network:
        raise UsageError(f"{args.source} is a network address (or another FFmpeg protocol): pyfer goes online "
                         "only with --allow-network (./NAME for a file whose name holds a ':')")
    outputs = {"--out": args.out, "--jsonl": args.jsonl, "--summary": args.summary, "--timeline": args.timeline}
    for flag, path in outputs.items():
        if path and path != "-" and is_network_address(path):
            raise UsageError(f"{flag} {path} is a network address: pyfer video writes files (./NAME for a name "
                             "that holds a ':')")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.out:
        if Path(args.out).suffix.lower() not in VIDEO_EXTENSIONS:
            raise UsageError(f"--out {args.out}: cannot write videos of type {Path(args.out).suffix or '(no extension)'!r}; "
                             f"use {', '.join(VIDEO_EXTENSIONS)}")
        _check_writable_file(args.out, "--out", replaced=False)  # (OpenCV's writer)
    if args.jsonl and args.jsonl != "-":
        _check_writable_file(args.jsonl, "--jsonl", replaced=False)
    for flag in ("--summary", "--timeline"):
        if outputs[flag] == "-" or (outputs[flag] and _names_stdout(outputs[flag])):
            raise UsageError(f"{flag} needs a file name")
        if outputs[flag]:
            _check_writable_file(outputs[flag], flag)
    if args.timeline:
        if Path(args.timeline).suffix.lower() not in (".png", ".pdf", ".svg"):
            raise UsageError(f"--timeline {args.timeline}: name a .png, .pdf or .svg file")
        _need_matplotlib("--timeline")
    if not str(args.source).isdigit():  # a file, not a camera index
        _refuse_overwriting_inputs(outputs, [Path(args.source)])
        if not _utf8(args.source):
            raise UsageError(f"{args.source!r}: OpenCV cannot open a video whose file name is not valid UTF-8; "
                             "rename the file")
    if args.out and not _utf8(args.out):
        raise UsageError(f"--out {args.out!r}: OpenCV cannot write a video whose file name is not valid UTF-8; "
                         "choose another name")
    _refuse_same_output(outputs)
    rec = _recognizer(args)
    timeline = Timeline() if args.summary or args.timeline else None
    # a file is opened by process_video at the first frame: a source that gives none leaves it as it was
    sink = sys.stdout if args.jsonl == "-" else args.jsonl
    try:
        stats = process_video(args.source, rec, out=args.out, jsonl=sink, max_frames=args.max_frames,
                              # auto: on a terminal, whatever the length (as many as a run needs)
                              progress=_shows_progress(args.progress, PROGRESS_MIN_IMAGES),
                              tracker=IoUTracker(alpha=1.0, smooth_geometry=False, hold_seconds=0.0) if args.no_smoothing else None,
                              allow_network=args.allow_network, timeline=timeline,
                              scene_cuts=not args.no_scene_cuts)
    except KeyboardInterrupt:  # a stop (Ctrl-C, SIGTERM): the frames done are summed up, its status stays
        if timeline is not None and timeline.frames:
            try:
                _write_timeline(timeline, args.summary, args.timeline)
            except Exception as e:  # (nothing may replace the stop)
                print(f"pyfer video: the summary could not be written: {e}", file=sys.stderr)
        raise
    print(f"{stats['frames']} frames, {stats['faces']} faces in {stats['seconds']:.1f} s: {stats['fps']:.1f} fps",
          file=sys.stderr)
    if args.out and Path(args.out).exists():  # (a camera stopped before its first frame writes none)
        print(f"wrote {args.out}", file=sys.stderr)
    if stats["scene_cuts"]:
        print(f"{stats['scene_cuts']} scene cut(s): the faces after each got new ids (--no-scene-cuts: keep "
              "them, for an edited recording whose people stay in place)", file=sys.stderr)
    if timeline is not None and not _write_timeline(timeline, args.summary, args.timeline):
        return EXIT_OUTPUT_FAILED
    return EXIT_OK


def _write_timeline(timeline, summary: Optional[str], chart: Optional[str]) -> bool:
    """Writes the summary and the chart, each on its own (one failing does not stop the other);
    whether both were written."""
    ok = True
    for flag, path, write in (("--summary", summary, timeline.write_csv), ("--timeline", chart, timeline.plot)):
        if not path:
            continue
        try:
            make_folders(Path(path).parent)
            write(path)
            print(f"wrote {path}", file=sys.stderr)
        except OSError as e:
            print(f"pyfer video: {flag} {path} could not be written: {e}", file=sys.stderr)
            ok = False
    return ok


def _evaluate(args) -> int:
    from pyfer.evaluate import evaluate, labelled_images, plot_confusion, report, spread

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    if args.json and args.json != "-" and _names_stdout(args.json):  # --json /dev/stdout: as --json -
        args.json = "-"
    to_file = args.json and args.json != "-"
    if to_file:
        _check_writable_file(args.json, "--json")
    for flag, out in (("--csv", args.csv), ("--plot", args.plot)):
        if out == "-" or (out and _names_stdout(out)):  # stdout carries the text (or --json -)
            raise UsageError(f"{flag} needs a file name (stdout carries the report)")
    if args.csv:
        _check_writable_file(args.csv, "--csv")
    if args.plot:
        if Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
            raise UsageError(f"--plot {args.plot}: name a .png, .pdf or .svg file")
        _check_writable_file(args.plot, "--plot")
        _need_matplotlib("--plot")
    rec = _recognizer(args)
    items = labelled_images(args.source, rec.class_names)
    outputs = {"--json": args.json, "--plot": args.plot, "--csv": args.csv}
    if any(out and out != "-" for out in outputs.values()):
        _refuse_overwriting_inputs(outputs, [Path(args.source)] + [p for p, _ in items])
    _refuse_same_output(outputs)
    if args.limit:  # evenly spaced: every class of a folder (sorted by class) keeps its share
        items = spread(items, args.limit)
    result = evaluate(rec, items, progress=_shows_progress(args.progress, len(items)))
    result["source"] = str(args.source)
    result["recognizer"] = rec.info()
    for why in result["unreadable"]:
        print(f"pyfer evaluate: {why}", file=sys.stderr)
    if to_file:  # first: a reader closing stdout early loses no file
        with _open_output(args.json, "--json") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.csv:
        with _open_output(args.csv, "--csv") as f:
            rows = csv.DictWriter(f, ["path", "label", "predicted", "confidence", "faces"])
            rows.writeheader()
            rows.writerows(result["per_image"])
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.plot:
        conf = result["confusion"]
        make_folders(Path(args.plot).parent)
        plot_confusion(conf["counts"], conf["rows"], conf["columns"], args.plot,
                       f"{Path(args.source).name}: accuracy {result['accuracy']:.1%}, macro recall "
                       f"{result['macro_recall']:.1%} (n={result['images']})")
        print(f"wrote {args.plot}", file=sys.stderr)
    print(json.dumps(result, indent=1) if args.json == "-" else report(result))
    return EXIT_SOME_FAILED if result["unreadable"] else EXIT_OK


def info_dict(weights: Optional[str] = None) -> dict:
    import platform

    import numpy

    import pyfer
    from pyfer.engine import cuda_devices, file_sha256

    d: dict = {"pyfer": pyfer.__version__, "python": platform.python_version(), "numpy": numpy.__version__,
               "platform": _platform()}
    try:
        d["build"] = pyfer.build_info()
    except Exception as e:  # engine not built: still report the rest
        d["build"] = f"unavailable: {e}"
    else:
        count, why = cuda_devices()  # a CUDA build may have no usable GPU or driver
        d["cuda_devices"] = {"count": count, "why": why}
    try:
        path = Path(weights) if weights else pyfer.default_weights_path()
        d["weights"] = {"path": str(path), "sha256": file_sha256(path)}
    except OSError as e:
        d["weights"] = f"unavailable: {e}"
    else:
        try:  # what the engine makes of the file (it used to be hashed and never checked)
            m = pyfer.Engine(str(path), threads=1).info()
            d["weights"]["model"] = {k: m[k] for k in ("architecture", "num_classes", "input_size", "in_channels",
                                                       "gflops_per_image")}
        except Exception as e:  # not a pyfer model, or no engine built: report, do not fail the rest
            d["weights"]["error"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    try:
        from pyfer.yunet import default_backend, default_model_path

        backend = default_backend()
        detector_path = default_model_path(backend)
        d["detector"] = {"name": "yunet", "backend": backend, "path": str(detector_path),
                         "sha256": file_sha256(detector_path)}
    except OSError as e:
        d["detector"] = f"unavailable: {e}"
    import cv2

    d["opencv"] = cv2.__version__
    return d


def _platform() -> str:
    """platform.platform()'s words without the subprocess it starts (``uname -p``, ``sysctl``) for
    the processor's name: ``pyfer info`` runs no program (an app may forbid it)."""
    import platform

    if not hasattr(os, "uname"):  # Windows: platform.platform() starts nothing there
        return platform.platform()
    u = os.uname()
    libc = "".join(platform.libc_ver())  # read from the interpreter's file
    return f"{u.sysname}-{u.release}-{u.machine}" + (f"-with-{libc}" if libc else "")


def weights_usable(args, d: dict) -> bool:
    """False when the user named --weights and the engine cannot load them (exit 2): a script that
    checks a file with ``pyfer info --weights F`` learns it is no model. The default weights'
    state is only reported (an engine not built yet still gets the rest of the report)."""
    return not args.weights or (isinstance(d["weights"], dict) and "model" in d["weights"])


def _info(args) -> int:
    d = info_dict(args.weights)
    if args.json:
        print(json.dumps(d))
        return 0 if weights_usable(args, d) else 2
    b, w = d["build"], d["weights"]
    print(f"pyfer {d['pyfer']} (OpenCV {d['opencv']}, numpy {d['numpy']}, Python {d['python']}, {d['platform']})")
    if isinstance(b, dict):
        isa = b.get("isa", {})
        if isinstance(isa, dict):  # what "auto" picked, and the rule that picked it
            why = f" ({isa['why']}; runnable: {', '.join(isa.get('runnable', []))})" if isa.get("why") else ""
            isa = f"{isa.get('selected')}{why}"
        gpus = d["cuda_devices"]
        cuda = (f"{gpus['count']} CUDA device(s)" if gpus["count"] else f"no CUDA device ({gpus['why']})") \
            if b.get("cuda") else "a CPU-only build"
        quota = f", cgroup CPU quota {b['cpu_limit']:g}" if b["cpu_limit"] else ""
        print(f"engine: isa {isa}, {cuda}, compiler {b.get('compiler', '?')}, "
              f"{b['default_threads']} threads by default ({b['usable_cpus']} usable CPUs{quota})")
    else:
        print(f"engine: {b}")
    if isinstance(w, dict):
        print(f"weights: {w['path']}\nsha256: {w['sha256']}")
        if "model" in w:
            m = w["model"]
            print(f"model: {m['architecture']}, {m['num_classes']} classes, {m['input_size']} px x "
                  f"{m['in_channels']} channel(s), {m['gflops_per_image']:.3f} GFLOP/image")
        else:
            print(f"model: cannot be loaded: {w.get('error')}")
    else:
        print(f"weights: {w}")
    det = d["detector"]
    print(f"detector: yunet ({det['backend']} backend) {det['path']} (sha256 {det['sha256'][:16]}...)"
          if isinstance(det, dict) else f"detector: {det}")
    return 0 if weights_usable(args, d) else 2


def build_parser() -> argparse.ArgumentParser:
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``pyfer`` parser and each command's own parser, by name."""
    import pyfer

    ap = argparse.ArgumentParser(prog="pyfer", description="Facial expression recognition (the shipped model: "
                                 "the 8 FERPlus classes).", epilog=EXIT_STATUS_HELP)
    ap.add_argument("--version", action="version", version=f"pyfer {pyfer.__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser(
        "predict", help="recognize expressions in images, folders or globs",
        description="Faces and expressions in images. PATH: an image file, '-' (one image piped to stdin), "
                    "a folder (its images; subfolders with --recursive) or a glob such as 'photos/*.jpg' "
                    "(quote it; '**' with --recursive). Faces come largest first (faces the detector doubts "
                    "after the sure ones).",
        usage="%(prog)s [options] PATH [PATH ...]", epilog=EXIT_STATUS_HELP)
    p.add_argument("paths", nargs="*", metavar="PATH")  # at least one: checked in main, after '--'
    p.add_argument("-r", "--recursive", action="store_true", help="descend into subfolders of folder PATHs")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout, one per image")
    p.add_argument("--csv", metavar="FILE", help="one row per face (an image without faces: one row, empty box); "
                                                 "'-' for stdout")
    p.add_argument("--resume", action="store_true",
                   help="go on with an interrupted run: keep the images already in --csv FILE, do the rest "
                        "(refused when the recorded settings differ or none of its images is among the PATHs; give "
                        "it from the first run of a long job, which then records its settings in FILE.resume.json; "
                        "without it FILE starts afresh)")
    p.add_argument("--out", metavar="FILE", help="write the annotated image here (one PATH)")
    p.add_argument("--out-dir", metavar="DIR", help="write annotated copies here (folder structure kept)")
    _add_progress_args(p)
    p.add_argument("-v", "--verbose", action="store_true", help="print the time per stage")
    _add_model_args(p)
    p.set_defaults(func=_predict, cmd="predict")
    commands = {"predict": p}

    p = sub.add_parser("video", help="recognize expressions in a video file or camera")
    p.add_argument("source", help="a video file, or a camera index such as 0 (a stream such as rtsp://... "
                                  "with --allow-network)")
    p.add_argument("--out", help=f"annotated output video ({', '.join(VIDEO_EXTENSIONS)}; .webm plays in web "
                                 "browsers and takes longer to write)")
    p.add_argument("--jsonl", help="JSON lines per frame to this file, or - for stdout")
    p.add_argument("--summary", metavar="FILE",
                   help="one CSV row per face (track): when it was seen, in how many frames, its mean score per "
                        "expression, the top one, and the share of its frames each expression was the label in")
    p.add_argument("--timeline", metavar="FILE", help="a chart of each face's expressions over time (.png, .pdf or "
                                                      ".svg; the 6 faces found in most frames; needs matplotlib)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--allow-network", action="store_true",
                   help="read a SOURCE that is a network address (rtsp://, http://, ...): the one thing that "
                        "takes pyfer online, never done without this flag")
    p.add_argument("--no-smoothing", action="store_true",
                   help="each frame's own scores, boxes and landmarks (by default a face's scores are averaged "
                        "over its recent frames, its box and landmarks steadied by a filter, and its box kept in the "
                        "video for up to 0.2 s where the detector misses it)")
    p.add_argument("--no-scene-cuts", action="store_true",
                   help="do not end every face's track at a scene cut (an edited recording whose people stay in "
                        "place across cuts keeps their ids; a different face in the same place continues a track)")
    _add_progress_args(p, "a video file on a terminal; cameras never get one")
    _add_model_args(p)
    p.set_defaults(func=_video, cmd="video")
    commands["video"] = p

    p = sub.add_parser(
        "evaluate", help="accuracy on your own labelled images: a folder of class folders, or a CSV",
        description="How well pyfer reads your labelled faces, run as predict runs them (its first face; "
                    "an image without a face counts as wrong). SOURCE: a folder with one subfolder per "
                    "expression (happy/, angry/, ...), or a CSV file with 'path' and 'label' columns "
                    "(paths relative to the CSV). Prints accuracy, macro recall, per-class recall and "
                    "the confusion matrix.", epilog=EXIT_STATUS_HELP)
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("--json", metavar="FILE", help="also write every metric as JSON here ('-': to stdout, "
                                                  "instead of the text)")
    p.add_argument("--csv", metavar="FILE", help="also write one row per image here: path, label, predicted "
                                                 "(or 'no face'), confidence, faces found")
    p.add_argument("--plot", metavar="FILE", help="also draw the confusion matrix here (.png, .pdf or .svg; "
                                                  "needs matplotlib)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N images, spread over SOURCE")
    _add_progress_args(p)
    _add_model_args(p)
    p.set_defaults(func=_evaluate, cmd="evaluate")
    commands["evaluate"] = p

    sub.add_parser("bench", help="engine/pipeline benchmarks (pyfer bench --help)")

    p = sub.add_parser("info", help="version, build (ISA, CUDA), weights path, sha256 and model; exit 2 when "
                                    "--weights names a file the engine cannot load")
    p.add_argument("--weights")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info, cmd="info")
    commands["info"] = p
    return ap, commands


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture): nothing will be flushed to a pipe
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``pyfer`` command; ``argv`` None: the process's own arguments, and SIGTERM is then
    handled as Ctrl-C (a program calling ``main(args)`` keeps its own SIGTERM)."""
    own_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if own_process:  # one line per error: OpenCV's (and libtiff's) log lines would come first, naming no file
        os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
        if sys.stderr is None:  # started with stderr closed (2>&-): print(file=None) would write to stdout,
            # among the JSON or CSV lines, and the next file opened would become descriptor 2, where C
            # libraries write their messages; the null device takes descriptor 2 instead
            sys.stderr = open(os.devnull, "w")
    # file names that are not valid UTF-8 arrive surrogate-escaped (PEP 383): print them as the
    # bytes they were, as ls does, instead of failing on a strict UTF-8 stdout
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    if argv and argv[0] == "bench":  # owned by pyfer.bench, which parses its own arguments
        from pyfer.bench import main as bench_main

        return bench_main(argv[1:]) or 0
    parser, commands = _parsers()
    if argv and argv[0] in commands:
        # options and paths in any order (`pyfer predict DIR --recursive more.jpg`), and a usage
        # error shows the command's own usage
        if argv[0] == "predict":  # many PATHs: intermixed; every word after '--' is a path, even '-x.png'
            rest, after_dashes = argv[1:], []
            if "--" in rest:
                i = rest.index("--")
                rest, after_dashes = rest[:i], rest[i + 1:]
            args = commands["predict"].parse_intermixed_args(rest)
            args.paths += after_dashes
            if not args.paths:
                commands["predict"].error("the following arguments are required: PATH")
        else:
            args = commands[argv[0]].parse_args(argv[1:])
    else:
        args = parser.parse_args(argv)
    args.own_process = own_process
    if own_process and args.cmd == "video":  # (a program calling main(args) keeps its stderr as it is)
        import pyfer.video

        pyfer.video.QUIET_OPENCV_WRITER_OPEN = True
    with _SigtermAsCtrlC() if own_process else contextlib.nullcontext():
        return _run(args)


def _run(args) -> int:
    """The command, its errors turned into one line on stderr and an exit status."""
    try:
        status = args.func(args)
        sys.stdout.flush()  # a reader that closed stdout shows here at the latest, and is handled below
        return status
    except UsageError as e:
        print(f"pyfer {args.cmd}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError, ImportError, RuntimeError) as e:
        print(f"pyfer {args.cmd}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"pyfer {args.cmd}: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except OSError as e:  # (after FileNotFoundError above)
        # `pyfer predict DIR --json | head`: the reader has what it wanted (Windows reports the
        # closed pipe as EINVAL); stop without a traceback
        if isinstance(e, BrokenPipeError) or (os.name == "nt" and e.errno == errno.EINVAL):
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        if e.filename is not None:  # opening a named file (an input such as evaluate's CSV): set-up
            print(f"pyfer {args.cmd}: {e}", file=sys.stderr)
            return EXIT_USAGE
        # a write on an open stream (--csv, --json FILE, stdout) failed: a full disk, a device error
        print(f"pyfer {args.cmd}: an output could not be written: {e}", file=sys.stderr)
        if args.cmd == "predict" and args.csv not in (None, "-") and os.path.isfile(args.csv):
            print(f"pyfer predict: {args.csv} has the images done so far; the same command with --resume "
                  "goes on once the output can be written", file=sys.stderr)
        try:
            sys.stdout.flush()
        except OSError:  # stdout itself: the interpreter's last flush would fail again
            _silence_stdout()
        return EXIT_OUTPUT_FAILED


if __name__ == "__main__":
    sys.exit(main())
