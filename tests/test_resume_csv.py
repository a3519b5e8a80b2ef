"""``pyfer.resume`` on its own (the CLI's runs are in test_cli.py): which rows of a ``--csv`` file a
resumed run keeps, what its sidecar records, and which files are the same input."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from pyfer.resume import ResumeError, file_key, open_csv, sidecar_path

HEADER = ["path", "face", "label"]


def start(csv_path: Path, settings: dict, inputs) -> None:
    """A first run given --resume (so that its sidecar is written) that wrote a row per input."""
    f, done, _ = open_csv(str(csv_path), HEADER, True, settings, inputs)
    with f:
        assert done == set()
        csv.writer(f).writerows([str(p), 0, "happiness"] for p in inputs)


def test_a_symlinked_file_is_an_input_of_its_own_and_a_symlinked_folder_is_not(tmp_path):
    (tmp_path / "real").mkdir()
    image = tmp_path / "real" / "a.png"
    image.write_bytes(b"x")
    (tmp_path / "real" / "link.png").symlink_to(image)
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert file_key(tmp_path / "real" / "link.png") != file_key(image)  # a name of its own in the CSV
    assert file_key(tmp_path / "alias" / "a.png") == file_key(image)  # the same file, by another road
    assert file_key(Path("a.png"), str(tmp_path / "real")) == file_key(image)


def test_a_setting_the_first_run_did_not_record_is_a_different_setting(tmp_path):
    """Compared both ways: a setting this run has and the sidecar lacks (written by an older
    pyfer, or edited) refuses the resume, as one the sidecar has and this run lacks."""
    out = tmp_path / "faces.csv"
    start(out, {"weights": "w1"}, [tmp_path / "a.png"])
    for settings in ({"weights": "w1", "flip": False}, {}):
        with pytest.raises(ResumeError, match=r"other settings \((flip|weights)\)"):
            open_csv(str(out), HEADER, True, settings, [tmp_path / "a.png"])


def test_relative_paths_from_another_folder_are_refused_and_absolute_ones_keep_the_first_folder(
        tmp_path, monkeypatch):
    """Rows are read back against the folder the first run started in. From another folder, one
    relative PATH among absolute ones is refused (its rows would be read from the wrong folder
    next time); all-absolute PATHs go on, and the sidecar still names the first folder."""
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    out = tmp_path / "faces.csv"
    monkeypatch.chdir(first)
    start(out, {"weights": "w1"}, [Path("a.png"), Path("b.png")])
    monkeypatch.chdir(other)
    with pytest.raises(ResumeError, match=f"was started in {re.escape(str(first))}"):
        open_csv(str(out), HEADER, True, {"weights": "w1"}, [first / "a.png", Path("b.png")])
    f, done, _ = open_csv(str(out), HEADER, True, {"weights": "w1"}, [first / "a.png", first / "b.png"])
    f.close()
    assert done == {file_key(first / "a.png")}  # (b.png, the last, is done again: it may lack a row)
    assert json.loads(sidecar_path(str(out)).read_text())["cwd"] == str(first)


def test_a_last_row_without_its_line_end_is_dropped_even_for_another_image(tmp_path):
    """A stop inside the last row's line end (all its fields there): that row is cut, whichever
    image it is, so the next row starts on a line of its own."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    out = tmp_path / "faces.csv"
    start(out, {"weights": "w1"}, [a, b])
    out.write_bytes(out.read_bytes().rstrip(b"\r\n"))  # b's row, whole but for its line end
    f, done, _ = open_csv(str(out), HEADER, True, {"weights": "w1"}, [a])  # b is not among the inputs
    with f:
        assert done == {file_key(a)}
        csv.writer(f).writerow([str(tmp_path / "c.png"), 0, "neutral"])
    rows = list(csv.reader(out.open(newline="")))
    assert rows[0] == HEADER and [len(r) for r in rows] == [3, 3, 3]
    assert [Path(r[0]).name for r in rows[1:]] == ["a.png", "c.png"]
