"""pyfer.atomic.atomic_write: the one helper that replaces the files pyfer writes (the model file,
--resume's settings, the video summary and chart)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pyfer.atomic import atomic_write, make_folders, open_in_place, real_path


def test_a_failed_write_leaves_the_old_file_whole_and_no_stray(tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half a new")
            raise RuntimeError("the disk is full")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with pytest.raises(KeyboardInterrupt):  # a stop: the same
        with atomic_write(tmp_path / "new.csv") as f:
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_written_file_replaces_the_old_one_with_its_permissions(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    path.chmod(0o640)
    with atomic_write(path, binary=True) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o640
    path.chmod(0o6755)  # set-user-ID and set-group-ID: not given to the writer's new file
    with atomic_write(path, binary=True) as f:
        f.write(b"newer")
    assert path.stat().st_mode & 0o7777 == 0o755
    old_umask = os.umask(0o027)
    try:
        with atomic_write(tmp_path / "fresh.txt") as f:
            f.write("x")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "fresh.txt").stat().st_mode & 0o777 == 0o640  # the umask's, not 0600


def test_a_symlink_s_target_is_replaced_and_a_device_written_as_it_is(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    (tmp_path / "link.txt").symlink_to(real)
    with atomic_write(tmp_path / "link.txt") as f:
        f.write("new")
    assert (tmp_path / "link.txt").is_symlink() and real.read_text() == "new"
    with atomic_write(os.devnull) as f:  # never replaced by a file
        f.write("anything")
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        atomic_write(tmp_path / "folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link.txt", "real.txt"]


def test_writers_of_one_path_never_share_a_temporary_file(tmp_path):
    """Each writer's file is whole: one of the texts, never a mix (the old helper's temporary
    name for --resume's settings was the process id alone, shared by every thread)."""
    path = tmp_path / "shared.txt"
    texts = [str(i) * 20000 for i in range(8)]
    barrier = threading.Barrier(len(texts), timeout=30)  # (a writer that fails breaks it: no hang)
    errors = []

    def write(text):
        try:
            with atomic_write(path) as f:
                barrier.wait()
                for i in range(0, len(text), 1000):
                    f.write(text[i:i + 1000])
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert path.read_text() in texts and [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


def test_a_stream_is_written_in_place(tmp_path):
    """/dev/stdout is a stream: redirected to a file (>>), the text is appended to what the shell
    opened (replacing that file lost what it held); piped, it reaches the pipe (its /proc name
    cannot be renamed over)."""
    code = "from pyfer.atomic import atomic_write\nwith atomic_write('/dev/stdout') as f: f.write('new\\n')"
    log = tmp_path / "log.txt"
    log.write_text("old\n")
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-c", code], stdout=out, check=True)
    assert log.read_text() == "old\nnew\n"
    piped = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, check=True)
    assert piped.stdout == b"new\n"


def test_an_interrupted_open_leaves_no_descriptor_or_file(tmp_path, monkeypatch):
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    monkeypatch.setattr(os, "fdopen", stopped)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before


def test_errors_name_the_path_asked_for(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        atomic_write(tmp_path / "no_folder" / "x.txt")
    assert e.value.filename == str(tmp_path / "no_folder" / "x.txt")


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm")
def test_a_regular_file_under_dev_is_replaced_not_appended_to():
    """Every name under /dev was taken for a stream: a file in /dev/shm was appended to, and a new
    one could not be made."""
    from pyfer.atomic import written_in_place

    path = f"/dev/shm/pyfer-test-{os.getpid()}.txt"
    try:
        assert not written_in_place(path)
        for text in ("old\n", "new\n"):
            with atomic_write(path) as f:
                f.write(text)
        assert open(path).read() == "new\n"
    finally:
        if os.path.exists(path):
            os.remove(path)


def test_real_path_resolves_as_realpath(tmp_path, monkeypatch):
    """real_path is os.path.realpath where no link is another user's: chains of links, relative
    and absolute targets, '..' after a link (its target's parent), names that do not exist yet."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("")
    (tmp_path / "to_b").symlink_to("a/b")
    (tmp_path / "a" / "abs_to_f").symlink_to(tmp_path / "a" / "b" / "f.txt")
    (tmp_path / "chain").symlink_to("to_b/../abs_to_f")
    monkeypatch.chdir(tmp_path)
    for name in ("chain", "to_b/../b/f.txt", "to_b/new/../x.csv", "./a//b/./f.txt", str(tmp_path / "chain"),
                 "missing/../a", "/", "to_b/.."):
        assert real_path(name) == os.path.realpath(name), name
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="loop"):  # ELOOP, naming the path asked for
        real_path("loop")


@pytest.fixture
def reachable(tmp_path):
    """A folder every user can reach (pytest's own are root's alone), removed afterwards."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="pyfer-links-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a symlink to another user needs root (lchown)")
def test_root_does_not_write_through_another_user_s_symlink_to_what_they_may_not_write(reachable):
    """A link planted in /tmp (or in any folder of theirs) by another user must not make root
    replace what it points at: a file renamed over the link's target never meets the kernel's
    fs.protected_symlinks check, which is off on some systems anyway. Their links to what they
    may write themselves (a tree unpacked or bind-mounted as root) are followed, again and again."""
    victim = reachable / "victim.txt"
    victim.write_text("precious")
    home = reachable / "home"  # theirs
    home.mkdir()
    os.chown(home, 65534, 65534)
    theirs = home / "theirs.txt"
    theirs.write_text("theirs")
    os.chown(theirs, 65534, 65534)
    private = reachable / "private"  # root's alone: what is inside is out of their reach
    private.mkdir(mode=0o700)
    (private / "file.txt").write_text("")
    os.chown(private / "file.txt", 65534, 65534)
    folder = reachable / "folder"
    folder.mkdir()
    for name, target, owner in (("to_victim.csv", victim, 65534), ("ours.csv", victim, 0),
                                ("to_theirs.csv", theirs, 65534), ("to_private.csv", private / "file.txt", 65534),
                                ("dir", reachable, 65534)):
        (folder / name).symlink_to(target)
        os.lchown(folder / name, owner, owner)
    for mode, why in ((0o1777, "fs.protected_symlinks"), (0o755, "leads where that user may not write")):
        folder.chmod(mode)
        for path in (folder / "to_victim.csv", folder / "dir" / "victim.txt"):
            with pytest.raises(PermissionError, match=why) as e:
                with atomic_write(path) as f:
                    f.write("the attacker's choice")
            assert e.value.filename == str(path)
            with pytest.raises(PermissionError):
                open_in_place(path)
            with pytest.raises(OSError):  # (refused, or: a folder cannot be made under a file)
                make_folders(path / "sub")
    assert victim.read_text() == "precious"
    with pytest.raises(PermissionError, match="may not write"):  # theirs, but where they cannot reach
        open_in_place(folder / "to_private.csv")
    for text in ("once", "twice"):  # (the first write leaves root's file there: still theirs to replace)
        with atomic_write(folder / "to_theirs.csv") as f:
            f.write(text)
        assert theirs.read_text() == text
    with atomic_write(folder / "ours.csv") as f:  # root's own link is followed
        f.write("ours")
    assert victim.read_text() == "ours"
    assert not [p for p in reachable.rglob("*.tmp")]


def test_write_file_and_save_figure_replace_whole(tmp_path):
    """The one way results, logs and charts are written (pyfer, training/, scripts/): whole, in
    the format a figure's suffix names."""
    from pyfer.atomic import save_figure, write_file

    write_file(tmp_path / "a.md", "é\n")
    write_file(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "a.md").read_bytes() == "é\n".encode() and (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    plt = pytest.importorskip("matplotlib.pyplot")
    fig = plt.figure(figsize=(1, 1))
    try:
        for name, magic in (("c.png", b"\x89PNG"), ("c.pdf", b"%PDF"), ("c.svg", b"<?xml"), ("c", b"\x89PNG")):
            save_figure(fig, tmp_path / name, dpi=50)
            assert (tmp_path / name).read_bytes().startswith(magic), name
    finally:
        plt.close(fig)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_open_in_place_empties_a_longer_file_it_writes_over(tmp_path):
    """A JSON-lines file written over a longer one (a second `pyfer video --jsonl`) holds only the
    new lines: no tail of the old file after them."""
    path = tmp_path / "v.jsonl"
    path.write_text("x" * 100_000)
    with open_in_place(path) as f:
        f.write('{"frame": 0}\n')
    assert path.read_text() == '{"frame": 0}\n'


def test_atomic_write_syncs_the_new_file_before_it_replaces_the_old(tmp_path, monkeypatch):
    """The rename comes after the data is on disk (fsync of the temporary file), so a crash never
    leaves an empty file where a complete old one was."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    target = tmp_path / "out.json"
    with atomic_write(target) as f:
        f.write("{}")
    assert target.read_text() == "{}" and "replace" in events
    assert "fsync" in events[:events.index("replace")], events


def test_the_shared_folder_rules_on_whose_file_may_be_opened():
    """Linux's protected_regular rule, as the writers apply it before opening: a folder is shared
    when it is sticky and writable by group or others (/tmp, a team's drop folder), and there a
    file that is neither the writer's nor the folder owner's is another user's."""
    import stat

    from pyfer.atomic import _foreign_in_shared, _shared

    def st(mode: int, uid: int) -> os.stat_result:
        return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))

    me, owner, third = os.geteuid(), os.geteuid() + 1, os.geteuid() + 2
    folder = stat.S_IFDIR
    assert _shared(st(folder | 0o1777, owner)) and _shared(st(folder | 0o1775, owner))  # others or group
    assert not _shared(st(folder | 0o1755, owner)) and not _shared(st(folder | 0o0777, owner))
    tmp = st(folder | 0o1777, owner)
    assert [_foreign_in_shared(st(stat.S_IFREG | 0o666, uid), tmp) for uid in (me, owner, third)] == \
        [False, False, True]
    assert not _foreign_in_shared(st(stat.S_IFREG | 0o666, third), st(folder | 0o0777, owner))
