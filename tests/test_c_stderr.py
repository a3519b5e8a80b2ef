"""``pyfer.c_stderr.caught_c_stderr``: what is written to descriptor 2 inside the block is caught
(or dropped), descriptor 2 is the same afterwards, and where no temporary file can be made the
block still runs, its message left on stderr."""
from __future__ import annotations

import os
import tempfile

import pytest

from pyfer.c_stderr import caught_c_stderr


def test_what_descriptor_2_gets_is_caught_and_stderr_restored(capfd):
    said: list[str] = []
    with caught_c_stderr(said):
        os.write(2, b"Corrupt JPEG data: 12 extraneous bytes\n")
    os.write(2, b"after\n")
    assert said == ["Corrupt JPEG data: 12 extraneous bytes\n"]
    assert capfd.readouterr().err == "after\n"
    with caught_c_stderr():  # dropped
        os.write(2, b"FFmpeg: tag not supported\n")
    assert capfd.readouterr().err == ""


def test_an_error_inside_still_restores_stderr_and_keeps_what_was_said(capfd):
    said: list[str] = []
    with pytest.raises(ValueError), caught_c_stderr(said):
        os.write(2, b"before the error\n")
        raise ValueError("cannot decode")
    os.write(2, b"after\n")
    assert said == ["before the error\n"] and capfd.readouterr().err == "after\n"


def test_without_a_temporary_file_the_block_runs_and_its_message_stays(capfd, monkeypatch):
    def no_room(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_room)
    said: list[str] = []
    with caught_c_stderr(said):
        os.write(2, b"bare\n")
        ran = True
    assert ran and said == [] and capfd.readouterr().err == "bare\n"


def test_without_a_descriptor_2_the_block_runs():
    """A service started with descriptor 2 closed: nothing to point elsewhere, the block runs, and
    no file opened on the way is left as descriptor 2."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "os.close(2)\n"
            "from pyfer.c_stderr import caught_c_stderr\n"
            "said = []\n"
            "with caught_c_stderr(said):\n"
            "    ran = True\n"
            "try:\n"
            "    os.fstat(2)\n"
            "    open2 = True\n"
            "except OSError:\n"
            "    open2 = False\n"
            "print(ran, said, open2)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True [] False", (done.stdout, done.stderr)
