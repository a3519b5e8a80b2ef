"""What the command line does with files and folders its user may not read or write: an output is
refused before any work (status 2, one line naming it, nothing written), an unreadable input is
named and counted as failed (status 1).

Root may read and write anything, and this project's CI runs as root: there the commands run
without the capabilities that let root past file permissions (``setpriv`` drops CAP_DAC_OVERRIDE
and CAP_DAC_READ_SEARCH), so the files' modes apply to them as to any user's program. Elsewhere
they run as the user running the tests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ASTRONAUT, SFEW, pyfer_subprocess

pytest.importorskip("pyfer._engine")
if not hasattr(os, "geteuid"):
    pytest.skip("POSIX permissions", allow_module_level=True)

DAC_CAPS = "-dac_override,-dac_read_search"
if os.geteuid() != 0:
    UNPRIVILEGED = []
elif shutil.which("setpriv"):
    UNPRIVILEGED = ["setpriv", f"--bounding-set={DAC_CAPS}", f"--inh-caps={DAC_CAPS}"]
else:
    pytest.skip("root reads and writes anything, and setpriv (util-linux) is not here to drop that",
                allow_module_level=True)


@pytest.fixture
def place(tmp_path):
    """A folder holding the astronaut, a read-only folder ro/, and read-only files ro.csv, ro.json,
    ro.jsonl, ro.mp4 and ro.jpg."""
    root = tmp_path
    shutil.copy(ASTRONAUT, root / "astronaut.png")
    (root / "ro").mkdir(mode=0o555)
    (root / "ro").chmod(0o555)  # past the umask
    for name in ("ro.csv", "ro.json", "ro.jsonl", "ro.mp4"):
        (root / name).write_text("")
    shutil.copy(ASTRONAUT, root / "ro.jpg")
    for name in ("ro.csv", "ro.json", "ro.jsonl", "ro.mp4", "ro.jpg"):
        (root / name).chmod(0o444)
    yield root
    (root / "ro").chmod(0o755)  # for pytest's clean-up as an ordinary user


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``pyfer ARGS`` without root's way past file permissions."""
    return pyfer_subprocess(*args, cwd=cwd, prefix=UNPRIVILEGED)


def snapshot(root: Path) -> dict:
    return {p.relative_to(root): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.parametrize("args, names", [
    (["predict", "{a}", "--csv", "{r}/ro/out.csv"], "the folder {r}/ro is not writable"),
    (["predict", "{a}", "--csv", "{r}/ro.csv"], "--csv {r}/ro.csv"),
    (["predict", "{a}", "--out-dir", "{r}/ro"], "the folder {r}/ro is not writable"),
    (["predict", "{a}", "--out", "{r}/ro/a.jpg"], "the folder {r}/ro is not writable"),
    # an existing read-only file: refused first too (it was processed, then failed to write, status 1)
    (["predict", "{a}", "--out", "{r}/ro.jpg"], "--out {r}/ro.jpg: the file is not writable"),
    (["video", "{a}", "--jsonl", "{r}/ro/v.jsonl"], "the folder {r}/ro is not writable"),
    (["video", "{a}", "--out", "{r}/ro/v.mp4"], "the folder {r}/ro is not writable"),
    # (the video's were found only after the model had loaded and a frame was read, session 37)
    (["video", "{a}", "--out", "{r}/ro.mp4"], "--out {r}/ro.mp4: the file is not writable"),
    (["video", "{a}", "--jsonl", "{r}/ro.jsonl"], "--jsonl {r}/ro.jsonl: the file is not writable"),
    (["evaluate", "{m}", "--json", "{r}/ro.json"], "--json {r}/ro.json: the file is not writable"),
    (["evaluate", "{m}", "--csv", "{r}/ro/c.csv"], "the folder {r}/ro is not writable"),
    (["evaluate", "{m}", "--plot", "{r}/ro/c.png"], "the folder {r}/ro is not writable"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_an_output_the_user_may_not_write_is_refused_before_any_work(place, args, names):
    if "{m}" in " ".join(args) and not (SFEW / "manifest.csv").is_file():
        pytest.skip(f"SFEW data not found at {SFEW}")
    fill = {"a": place / "astronaut.png", "r": place, "m": SFEW / "manifest.csv"}
    before = snapshot(place)
    done = cli(*(a.format(**fill) for a in args), cwd=place)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert names.format(**fill) in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == "", (done.stdout, done.stderr)
    assert snapshot(place) == before  # nothing written, nothing created


def test_an_input_the_user_may_not_read_is_named_and_counted(place):
    secret = place / "secret.png"
    shutil.copy(ASTRONAUT, secret)
    secret.chmod(0)
    done = cli("predict", secret, place / "astronaut.png", "--json", cwd=place)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert f"{secret}: [Errno 13] Permission denied" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "1 image(s), 1 face(s), 1 failed" in done.stderr, done.stderr
    assert len(done.stdout.splitlines()) == 1 and "astronaut.png" in done.stdout


def test_a_video_the_user_may_not_read_is_named(place):
    secret = place / "secret.mp4"
    secret.write_bytes(b"")
    secret.chmod(0)
    done = cli("video", secret, "--jsonl", place / "v.jsonl", cwd=place)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"pyfer video: cannot read video source {str(secret)!r}: Permission denied"], done.stderr
