"""The pyfer command line."""
from __future__ import annotations

import json
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest

from conftest import ASTRONAUT, ASTRONAUT_FACE, REPO, iou, paste
from pyfer.cli import main


def test_predict_json(recognizer, weights_path, capsys, tmp_path):
    out = tmp_path / "annotated.jpg"
    assert main(["predict", str(ASTRONAUT), "--json", "--out", str(out), "--weights", str(weights_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    d = json.loads(line)
    assert d["image"] == str(ASTRONAUT) and len(d["faces"]) == 1
    f = d["faces"][0]
    assert iou(f["box"], ASTRONAUT_FACE) > 0.7
    assert sum(f["scores"].values()) == pytest.approx(1.0, abs=1e-4)
    img = cv2.imread(str(out))
    assert img.shape == (320, 320, 3)
    assert not np.array_equal(img, cv2.imread(str(ASTRONAUT)))  # something was drawn


def test_predict_text_and_errors(recognizer, weights_path, capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    rc = main(["predict", str(ASTRONAUT), str(bad), "--weights", str(weights_path), "-v"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "1 face(s)" in out and "detect=" in out
    assert "bad.png" in err and "decode" in err
    rc = main(["predict", str(ASTRONAUT), "--weights", str(tmp_path / "missing.safetensors")])
    assert rc == 2


def test_video_cli(recognizer, weights_path, sfew_faces, tmp_path, capsys):
    path = tmp_path / "v.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for t in range(6):
        frame = np.full((240, 320, 3), 80, np.uint8)
        paste(frame, sfew_faces[0], 100 + 3 * t, 50, 90)
        w.write(frame)
    w.release()
    jl = tmp_path / "v.jsonl"
    assert main(["video", str(path), "--jsonl", str(jl), "--no-progress", "--weights", str(weights_path)]) == 0
    rows = [json.loads(s) for s in jl.read_text().splitlines()]
    assert len(rows) == 6 and sum(len(r["faces"]) for r in rows) >= 4
    assert "fps" in capsys.readouterr().err


def test_video_needs_output(weights_path):
    with pytest.raises(SystemExit):
        main(["video", "0", "--weights", str(weights_path)])


def test_bench_delegates(monkeypatch):
    seen = []
    fake = types.ModuleType("pyfer.bench")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "pyfer.bench", fake)
    assert main(["bench", "--quick", "--x", "1"]) == 0
    assert seen == [["--quick", "--x", "1"]]


def test_info(weights_path, capsys):
    assert main(["info", "--json", "--weights", str(weights_path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["pyfer"]
    assert d["weights"]["path"] == str(weights_path) and len(d["weights"]["sha256"]) == 64
    assert "build" in d


def test_python_m_pyfer_help():
    r = subprocess.run([sys.executable, "-m", "pyfer", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for cmd in ("predict", "video", "bench", "info"):
        assert cmd in r.stdout


def test_info_text(weights_path, capsys):
    assert main(["info", "--weights", str(weights_path)]) == 0
    out = capsys.readouterr().out
    assert "isa" in out and "cuda" in out and str(weights_path) in out and "sha256" in out
