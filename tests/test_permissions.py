"""What the command line does with files and folders its user may not read or write: an output is
refused before any work (status 2, one line naming it, nothing written), an unreadable input is
named and counted as failed (status 1).

Root may read and write anything, and this project's CI runs as root: there the commands run
without the capabilities that let root past file permissions (``setpriv`` drops CAP_DAC_OVERRIDE
and CAP_DAC_READ_SEARCH), so the files' modes apply to them as to any user's program. Elsewhere
they run as the user running the tests. Run as root, the tests at the end also run the commands
as another user (uid 65534) against root's files in a shared sticky folder, as in /tmp.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
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
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [("error" in r, Path(r["image"]).name) for r in lines] == [(True, "secret.png"), (False, "astronaut.png")]
    assert lines[0]["error"] == f"[Errno 13] Permission denied: {str(secret)!r}"


def test_a_video_the_user_may_not_read_is_named(place):
    secret = place / "secret.mp4"
    secret.write_bytes(b"")
    secret.chmod(0)
    done = cli("video", secret, "--jsonl", place / "v.jsonl", cwd=place)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"pyfer video: cannot read video source {str(secret)!r}: Permission denied"], done.stderr


@pytest.mark.parametrize("unreadable", ["train labels", "valid labels", "--val2 manifest"])
def test_a_data_file_the_user_may_not_read_is_refused_before_the_run_folder(tiny_sets, tmp_path, unreadable):
    """A label file or manifest that is there but may not be read: one line naming it, status 2,
    and no run folder (it was an OSError after the folder was made)."""
    pytest.importorskip("torch")
    source, manifest = tiny_sets
    fer = Path(source.partition(":")[2])
    secret = {"train labels": fer / "FER2013Train" / "label.csv", "valid labels": fer / "FER2013Valid" / "label.csv",
              "--val2 manifest": manifest}[unreadable]
    secret.chmod(0)
    out = tmp_path / "run"
    done = subprocess.run([*UNPRIVILEGED, sys.executable, "-m", "training.train", "student", "--out", str(out),
                           "--data", source, "--val2", str(manifest), "--epochs", "1", "--quiet"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-2000:])
    assert f"cannot be read: {secret}: Permission denied" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists(), done.stderr


# -- another user's files ---------------------------------------------------------------------------
# Root's files, written by uid 65534 (nobody) as any user shares /tmp with others. The child keeps
# only CAP_DAC_READ_SEARCH, so that it can read the interpreter under root's home folder; what it may
# write, replace and remove still follows the files' owners, modes and sticky folders.
AS_ANOTHER_USER = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search",
                   "--bounding-set=-all,+dac_read_search"]


def _can_be_another_user() -> bool:
    if not UNPRIVILEGED:  # not root: no other user's files to make
        return False
    try:
        return subprocess.run([*AS_ANOTHER_USER, sys.executable, "-c", "import pyfer"],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def shared(tmp_path_factory):
    """``sticky/``, a folder all users write into (mode 1777, as /tmp), holding root's files
    theirs.csv, .jsonl, .json, .png and .jpg that anyone may write (0666), and nobody's home folder.
    pytest's own folders are root's alone (0700), so this one hangs from /tmp itself."""
    if not _can_be_another_user():
        pytest.skip("needs root and setpriv able to switch to uid 65534 keeping CAP_DAC_READ_SEARCH")
    root = Path(tempfile.mkdtemp(prefix="pyfer-shared-", dir="/tmp"))
    root.chmod(0o755)
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "home").mkdir()
    os.chown(root / "home", 65534, 65534)
    shutil.copy(ASTRONAUT, root / "astronaut.png")
    for name in ("theirs.csv", "theirs.jsonl", "theirs.json", "theirs.png"):
        (root / "sticky" / name).write_text("theirs\n")
    shutil.copy(ASTRONAUT, root / "sticky" / "theirs.jpg")
    for p in (root / "sticky").iterdir():
        p.chmod(0o666)
    yield root
    shutil.rmtree(root)


def as_another_user(*args, cwd: Path) -> subprocess.CompletedProcess:
    return pyfer_subprocess(*args, cwd=cwd, prefix=AS_ANOTHER_USER, env={"HOME": str(cwd / "home")})


@pytest.mark.parametrize("args, names", [
    (["predict", "{a}", "--out", "{s}/theirs.jpg"], "--out {s}/theirs.jpg: another user's file"),
    (["video", "{a}", "--summary", "{s}/theirs.csv"], "--summary {s}/theirs.csv: another user's file"),
    (["video", "{a}", "--timeline", "{s}/theirs.png"], "--timeline {s}/theirs.png: another user's file"),
    (["evaluate", "{m}", "--json", "{s}/theirs.json"], "--json {s}/theirs.json: another user's file"),
    # its settings are replaced whole, so --resume needs them to be the user's
    (["predict", "{a}", "--csv", "{s}/mine.csv", "--resume"],
     "--resume {s}/mine.csv.resume.json: another user's file"),
    # an old run's settings are removed; this was found only after the new CSV had been created
    (["predict", "{a}", "--csv", "{s}/mine.csv"],
     "--csv {s}/mine.csv: the old --resume settings {s}/mine.csv.resume.json are another user's file"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_another_user_s_file_in_a_sticky_folder_is_not_replaced(shared, args, names):
    if "{m}" in " ".join(args) and not (SFEW / "manifest.csv").is_file():
        pytest.skip(f"SFEW data not found at {SFEW}")
    (shared / "sticky" / "mine.csv.resume.json").write_text("{}")
    (shared / "sticky" / "mine.csv.resume.json").chmod(0o666)
    fill = {"a": shared / "astronaut.png", "s": shared / "sticky", "m": SFEW / "manifest.csv"}
    before = snapshot(shared)
    done = as_another_user(*(a.format(**fill) for a in args), cwd=shared)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert names.format(**fill) in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == "", (done.stdout, done.stderr)
    assert snapshot(shared) == before  # refused before anything was written or created


def test_another_user_s_writable_file_is_written_in_place(shared):
    """A CSV or JSON lines file is written through the open file, so another user's file that
    anyone may write is filled (and stays theirs) where replacing it would be refused."""
    sticky = shared / "sticky"
    done = as_another_user("predict", shared / "astronaut.png", "--csv", sticky / "theirs.csv", cwd=shared)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = (sticky / "theirs.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith(f"{shared / 'astronaut.png'},0,") and "happiness" in rows[1]
    done = as_another_user("video", shared / "astronaut.png", "--jsonl", sticky / "theirs.jsonl", cwd=shared)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"label": "happiness"' in (sticky / "theirs.jsonl").read_text()
    assert {(sticky / n).stat().st_uid for n in ("theirs.csv", "theirs.jsonl")} == {0}


def test_new_outputs_in_a_sticky_folder_are_the_writer_s(shared):
    sticky = shared / "sticky"
    done = as_another_user("predict", shared / "astronaut.png", "--csv", sticky / "new.csv", "--resume",
                           "--out", sticky / "new.jpg", cwd=shared)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("new.csv", "new.jpg"):
        assert (sticky / name).stat().st_uid == 65534, name
    assert not list(sticky.glob(".*.tmp"))


@pytest.mark.parametrize("args", [
    ["video", "{a}", "--summary", "{s}/theirs.csv"],
    ["video", "{a}", "--jsonl", "{s}/theirs.csv"],
    ["predict", "{a}", "--csv", "{s}/theirs.csv"],
    ["predict", "{a}", "--out", "{s}/dir/victim.jpg"],
    ["predict", "{a}", "--out-dir", "{s}/dir/copies"],
    ["video", "{a}", "--out", "{s}/dir/victim.mp4"],
], ids=" ".join)
def test_a_symlink_another_user_planted_in_a_shared_folder_is_refused(tmp_path, args):
    """Root (or any user) writing into /tmp must not write where a link another user planted there
    points: refused up front, as Linux's fs.protected_symlinks refuses such links to open(); the
    files renamed into place never open the name, so the kernel alone would not stop them."""
    if not UNPRIVILEGED:
        pytest.skip("giving a symlink to another user needs root (lchown)")
    shutil.copy(ASTRONAUT, tmp_path / "astronaut.png")
    victim = tmp_path / "victim.jpg"
    victim.write_text("precious")
    (tmp_path / "victim.mp4").write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "theirs.csv").symlink_to(victim)
    (shared / "dir").symlink_to(tmp_path)
    for link in ("theirs.csv", "dir"):
        os.lchown(shared / link, 65534, 65534)
    fill = {"a": tmp_path / "astronaut.png", "s": shared}
    before = snapshot(tmp_path)
    done = pyfer_subprocess(*(a.format(**fill) for a in args), cwd=tmp_path)
    assert done.returncode == 2 and "a symlink another user made in a shared folder" in done.stderr \
        and "fs.protected_symlinks" in done.stderr, (done.returncode, done.stderr[-2000:])
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == "", (done.stdout, done.stderr)
    assert snapshot(tmp_path) == before and victim.read_text() == "precious"


def test_a_link_of_a_third_user_in_a_shared_folder_is_not_followed(shared):
    """Any user (here uid 65534) writing into /tmp: a link there of a third user (65533) is not
    followed (Linux's fs.protected_symlinks rule), the user's own link is."""
    sticky = shared / "sticky"
    (sticky / "target.csv").write_text("mine\n")
    os.chown(sticky / "target.csv", 65534, 65534)
    for name, owner in (("third.csv", 65533), ("own.csv", 65534)):
        (sticky / name).symlink_to(sticky / "target.csv")
        os.lchown(sticky / name, owner, owner)
    done = as_another_user("video", shared / "astronaut.png", "--summary", sticky / "third.csv", cwd=shared)
    assert done.returncode == 2 and "not followed, as Linux's fs.protected_symlinks" in done.stderr, done.stderr[-2000:]
    assert (sticky / "target.csv").read_text() == "mine\n"
    done = as_another_user("video", shared / "astronaut.png", "--summary", sticky / "own.csv", cwd=shared)
    assert done.returncode == 0 and "happiness" in (sticky / "target.csv").read_text(), done.stderr[-2000:]


@pytest.mark.parametrize("flag", ["--csv", "--jsonl", "--out"])
def test_a_file_of_a_third_user_in_a_shared_folder_is_not_written_in_place(shared, flag):
    """Outputs written in place (--csv, --jsonl, video --out) do not go into a file another user
    put in /tmp (Linux's fs.protected_regular rule): its owner could read or change them, or make
    it a FIFO nobody reads (a hang). A FIFO is refused without waiting for a reader."""
    sticky = shared / "sticky"
    command = "predict" if flag == "--csv" else "video"
    for name, make in (("third.out", lambda p: p.write_text("")), ("fifo.out", os.mkfifo)):
        make(sticky / name)
        os.chmod(sticky / name, 0o666)
        os.chown(sticky / name, 65533, 65533)
        if flag == "--out":
            (sticky / name).rename(sticky / (name + ".mp4"))
            name += ".mp4"
        before = snapshot(shared)
        done = as_another_user(command, shared / "astronaut.png", flag, sticky / name, cwd=shared)
        assert done.returncode == 2 and "fs.protected_regular" in done.stderr, done.stderr[-2000:]
        assert snapshot(shared) == before
