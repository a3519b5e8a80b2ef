"""pyfer.atomic.atomic_write: the one helper that replaces the files pyfer writes (the model file,
--resume's settings, the video summary and chart)."""
from __future__ import annotations

import os
import threading

import pytest

from pyfer.atomic import atomic_write


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
    barrier = threading.Barrier(len(texts))

    def write(text):
        with atomic_write(path) as f:
            barrier.wait()
            for i in range(0, len(text), 1000):
                f.write(text[i:i + 1000])

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() in texts and [p.name for p in tmp_path.iterdir()] == ["shared.txt"]
