"""The pyfer command line."""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import textwrap
import types

import cv2
import numpy as np
import pytest

from pathlib import Path

import pyfer
from conftest import ASTRONAUT, ASTRONAUT_FACE, REPO, iou, paste, pyfer_subprocess
from pyfer.cli import main


def test_predict_json(recognizer, weights_path, capsys, tmp_path):
    out = tmp_path / "annotated.jpg"
    assert main(["predict", str(ASTRONAUT), "--json", "--out", str(out), "--weights", str(weights_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    d = json.loads(line)
    assert d["image"] == str(ASTRONAUT) and len(d["faces"]) == 1
    f = d["faces"][0]
    assert iou(f["box"], ASTRONAUT_FACE) > 0.5
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


@pytest.mark.parametrize("ext, codecs, magic", [(".webm", {"vp80"}, b"\x1aE\xdf\xa3"),
                                                (".mp4", {"mp4v", "fmp4"}, b"ftyp")])  # (FFmpeg reads mp4v as FMP4)
def test_video_out_type_picks_the_codec(weights_path, tmp_path, capfd, ext, codecs, magic):
    """.webm is VP8 in WebM, which web browsers play; the others stay mp4v (fast, not for browsers).
    The pyfer command keeps OpenCV's "tag ... is not supported" line for WebM off its stderr; a
    program calling main(args) keeps its file descriptor 2 as it is (its threads write there)."""
    clip = shifted_astronaut_clip(tmp_path / "in.mp4", 4)
    out = tmp_path / f"annotated{ext}"
    r = pyfer_subprocess("video", clip, "--out", out, "--no-progress", "--weights", weights_path)
    assert r.returncode == 0 and "not supported" not in r.stderr and "4 frames" in r.stderr, r.stderr
    assert magic in out.read_bytes()[:16]
    cap = cv2.VideoCapture(str(out))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1")
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert fourcc.lower() in codecs and frames == 4
    capfd.readouterr()
    assert main(["video", str(clip), "--out", str(out), "--no-progress", "--weights", str(weights_path)]) == 0
    assert ("not supported" in capfd.readouterr().err) == (ext == ".webm")  # OpenCV's own line, untouched


def test_video_needs_output(weights_path, capsys):
    assert main(["video", "0", "--weights", str(weights_path)]) == 2
    assert "--out" in capsys.readouterr().err


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
    assert "build" in d and d["python"] == platform.python_version() and d["numpy"] == np.__version__
    gpus = d["cuda_devices"]  # a CUDA build is not a usable GPU: a count, or why there is none
    assert isinstance(gpus["count"], int) and (gpus["count"] > 0 or len(gpus["why"]) > 10), gpus
    assert d["build"]["default_threads"] >= 1  # the rule: tests/test_cpu_count.py
    det = d["detector"]
    assert det["backend"] == "engine" and det["path"].endswith("yunet.safetensors")
    assert det["sha256"] == hashlib.sha256(Path(det["path"]).read_bytes()).hexdigest()


def test_info_checks_the_weights_it_is_given(weights_path, tmp_path, capsys):
    """It used to hash any file and exit 0: a script checking a download learned nothing."""
    assert main(["info", "--json", "--weights", str(weights_path)]) == 0
    model = json.loads(capsys.readouterr().out)["weights"]["model"]
    assert model["architecture"] == "shufflenetv2" and model["num_classes"] == 8
    junk = tmp_path / "garbage.bin"
    junk.write_bytes(b"not a model" * 10)
    for flags in (["--json"], []):
        assert main(["info", *flags, "--weights", str(junk)]) == 2
        out = capsys.readouterr().out
        assert "error" in out or "cannot be loaded" in out
    assert main(["info", "--weights", str(REPO / "pyfer" / "models" / "yunet.safetensors")]) == 2  # no classifier
    capsys.readouterr()


def test_info_names_the_opencv_model_when_that_backend_is_chosen(weights_path, capsys, monkeypatch):
    monkeypatch.setenv("PYFER_YUNET_BACKEND", "opencv")
    assert main(["info", "--json", "--weights", str(weights_path)]) == 0
    det = json.loads(capsys.readouterr().out)["detector"]
    # OpenCV Zoo's face_detection_yunet_2023mar.onnx, as published
    assert det["backend"] == "opencv"
    assert det["sha256"] == "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"


def test_python_m_pyfer_help():
    r = pyfer_subprocess("--help")
    assert r.returncode == 0
    for cmd in ("predict", "video", "bench", "info"):
        assert cmd in r.stdout


def test_info_text(weights_path, capsys):
    assert main(["info", "--weights", str(weights_path)]) == 0
    out = capsys.readouterr().out
    assert "isa" in out and str(weights_path) in out and "sha256" in out
    assert "CUDA device" in out if pyfer.build_info()["cuda"] else "a CPU-only build" in out
    assert f"Python {platform.python_version()}" in out and "threads by default" in out


# -- folders, globs, CSV, JSON lines, annotated copies, exit statuses (issue 12) ---------------
@pytest.fixture(scope="module")
def image_tree(tmp_path_factory, sfew_faces):
    """photos/ with a.png (astronaut), b.jpg (SFEW face), blank.png (no face), notes.txt (ignored),
    sub/c.png (SFEW face), sub/.hidden.png (ignored) and broken.jpg (not an image)."""
    root = tmp_path_factory.mktemp("tree") / "photos"
    (root / "sub").mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), cv2.imread(str(ASTRONAUT)))
    cv2.imwrite(str(root / "b.jpg"), sfew_faces[0])
    cv2.imwrite(str(root / "blank.png"), np.full((120, 160, 3), 128, np.uint8))
    (root / "notes.txt").write_text("not an image")
    cv2.imwrite(str(root / "sub" / "c.png"), sfew_faces[2])
    cv2.imwrite(str(root / "sub" / ".hidden.png"), sfew_faces[4])
    return root


def dark_clip(path: Path, frames: int = 3) -> Path:
    """A tiny black MP4 (no faces): a real video file for the CLI's checks."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(frames):
        w.write(np.zeros((48, 64, 3), np.uint8))
    w.release()
    return path


HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run_cli(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


def test_expand_inputs(image_tree):
    from pyfer.cli import expand_inputs

    flat, errs, _ = expand_inputs([str(image_tree)], recursive=False)
    assert [p.name for p, _ in flat] == ["a.png", "b.jpg", "blank.png"] and errs == []
    deep, _, _ = expand_inputs([str(image_tree)], recursive=True)
    assert [p.relative_to(image_tree).as_posix() for p, _ in deep] == ["a.png", "b.jpg", "blank.png", "sub/c.png"]
    globbed, _, _ = expand_inputs([str(image_tree / "*.png"), str(image_tree / "a.png")], recursive=False)
    assert [p.name for p, _ in globbed] == ["a.png", "blank.png"]  # duplicates dropped
    rec, _, _ = expand_inputs([str(image_tree / "**" / "*.png")], recursive=True)
    assert sorted(p.name for p, _ in rec) == ["a.png", "blank.png", "c.png"]
    none, errs, _ = expand_inputs([str(image_tree / "*.gif"), str(image_tree / "sub" / "missing.png")], False)
    assert [p.name for p, _ in none] == ["missing.png"] and len(errs) == 1 and "no image file matches" in errs[0]
    star, errs, _ = expand_inputs([str(image_tree / "*")], False)  # a glob, like a folder, gives images only
    assert [p.name for p, _ in star] == ["a.png", "b.jpg", "blank.png"] and errs == []  # not notes.txt
    empty = image_tree.parent / "empty"
    empty.mkdir(exist_ok=True)
    assert "no image files" in expand_inputs([str(empty)], False)[1][0]


def test_predict_folder_csv_json_outdir(weights_path, image_tree, tmp_path, capsys):
    csv_path = tmp_path / "faces.csv"
    out_dir = tmp_path / "annotated"
    rc, out, err = run_cli(["predict", str(image_tree), "-r", "--csv", str(csv_path), "--json", "--out-dir",
                            str(out_dir), "--weights", str(weights_path)], capsys)
    assert rc == 0, err
    lines = [json.loads(s) for s in out.splitlines()]
    assert [Path(d["image"]).name for d in lines] == ["a.png", "b.jpg", "blank.png", "c.png"]
    assert len(lines[0]["faces"]) == 1 and lines[2]["faces"] == []
    f = lines[0]["faces"][0]
    assert len(f["landmarks"]) == 5 and 0 < f["detection_score"] <= 1 and iou(f["box"], ASTRONAUT_FACE) > 0.5
    import csv as _csv
    from pyfer.cli import csv_header

    rows = list(_csv.DictReader(open(csv_path)))
    assert list(rows[0]) == csv_header(pyfer.EMOTIONS)
    by_image = {}
    for r in rows:
        by_image.setdefault(Path(r["path"]).name, []).append(r)
    assert set(by_image) == {"a.png", "b.jpg", "blank.png", "c.png"}
    (blank,) = by_image["blank.png"]  # an image without faces: one row, empty box
    assert blank["face"] == "" and blank["x"] == "" and blank["label"] == ""
    (a,) = by_image["a.png"]
    assert a["face"] == "0" and int(a["w"]) > 30 and float(a["right_eye_x"]) < float(a["left_eye_x"])
    assert sum(float(a[c]) for c in pyfer.EMOTIONS) == pytest.approx(1.0, abs=1e-4)
    assert a["label"] == max(pyfer.EMOTIONS, key=lambda c: float(a[c]))
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert written == ["a.png", "b.jpg", "blank.png", "sub/c.png"]  # the folder structure is kept
    assert not np.array_equal(cv2.imread(str(out_dir / "a.png")), cv2.imread(str(image_tree / "a.png")))


def test_predict_unreadable_files_skipped(weights_path, image_tree, tmp_path, capsys):
    """Bad inputs are reported on stderr and skipped; the rest are still written; exit status 1."""
    csv_path = tmp_path / "faces.csv"
    bad = [str(image_tree / "broken.jpg"), str(tmp_path / "missing.png"), str(image_tree / "*.gif")]
    (image_tree / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    try:
        rc, out, err = run_cli(["predict", str(image_tree / "a.png"), *bad, str(image_tree / "b.jpg"),
                                "--csv", str(csv_path), "--weights", str(weights_path)], capsys)
    finally:
        (image_tree / "broken.jpg").unlink()
    assert rc == 1
    assert "broken.jpg" in err and "missing.png" in err and "*.gif" in err and "Traceback" not in err
    assert "a.png: 1 face(s)" in out and "b.jpg" in out
    names = [Path(r.split(",")[0]).name for r in csv_path.read_text().splitlines()[1:]]
    assert names == ["a.png", "b.jpg"]
    assert "3 failed" in err


def test_predict_out_checks(weights_path, image_tree, tmp_path, capsys):
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--out", str(tmp_path / "x.xyz"), "--weights",
                          str(weights_path)], capsys)
    assert rc == 2 and "x.xyz" in err and "cannot write images" in err
    rc, _, err = run_cli(["predict", str(image_tree), "--out", str(tmp_path / "one.jpg")], capsys)
    assert rc == 2 and "--out-dir" in err
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--out", str(tmp_path / "o.png"), "--out-dir", str(tmp_path)],
                         capsys)
    assert rc == 2


def test_predict_detector_options(weights_path, capsys):
    rc, out, _ = run_cli(["predict", str(ASTRONAUT), "--json", "--detector", "haar", "--weights", str(weights_path)],
                         capsys)
    f = json.loads(out)["faces"][0]
    assert rc == 0 and f["landmarks"] is None and f["detection_score"] is None
    rc, out, _ = run_cli(["predict", str(ASTRONAUT), "--json", "--min-face", "200", "--weights", str(weights_path)],
                         capsys)
    assert rc == 0 and json.loads(out)["faces"] == []  # her face is about 65 px
    rc, out, _ = run_cli(["predict", str(ASTRONAUT), "--json", "--min-face", "30.5", "--weights", str(weights_path)],
                         capsys)
    assert rc == 0 and len(json.loads(out)["faces"]) == 1  # pixels as the API takes them: any number
    rc, out, _ = run_cli(["predict", str(ASTRONAUT), "--json", "--score-threshold", "0.5", "--weights",
                          str(weights_path)], capsys)
    assert rc == 0 and len(json.loads(out)["faces"]) == 1
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--score-threshold", "1.5"], capsys)
    assert rc == 2 and "--score-threshold" in err  # the flag the user typed, not the parameter
    rc, out, _ = run_cli(["predict", str(ASTRONAUT), "--json", "--detector", "yunet-tilted", "--weights",
                          str(weights_path)], capsys)
    assert rc == 0 and len(json.loads(out)["faces"]) == 1 and json.loads(out)["faces"][0]["landmarks"]


def test_predict_no_flip(weights_path, capsys):
    """--no-flip builds Recognizer(flip=False) (predict and video) and gives its scores."""
    import pyfer
    from pyfer.cli import _recognizer, build_parser

    for cmd in (["predict", "x.jpg"], ["video", "0"]):
        args = build_parser().parse_args(cmd + ["--no-flip", "--weights", str(weights_path)])
        assert _recognizer(args).flip is False
        assert _recognizer(build_parser().parse_args(cmd + ["--weights", str(weights_path)])).flip is True
    rc, out, _ = run_cli(["predict", str(ASTRONAUT), "--json", "--no-flip", "--weights", str(weights_path)], capsys)
    got = json.loads(out)["faces"][0]["scores"]
    want = pyfer.Recognizer(weights_path, flip=False).predict(str(ASTRONAUT))[0].scores
    assert rc == 0 and all(abs(got[k] - want[k]) < 1e-5 for k in want)
    flipped = pyfer.Recognizer(weights_path).predict(str(ASTRONAUT))[0].scores
    assert max(abs(got[k] - flipped[k]) for k in want) > 1e-4  # not the flip-averaged scores (5.8e-4 apart)


def test_predict_prior_shift(weights_path, trained, capsys):
    """--prior-shift reaches the Recognizer; out of range it is a usage error (status 2)."""
    from pyfer.cli import _recognizer, build_parser

    if trained:
        args = build_parser().parse_args(["predict", "x.jpg", "--prior-shift", "0", "--weights", str(weights_path)])
        assert _recognizer(args).prior_shift == 0.0
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--prior-shift", "5", "--weights", str(weights_path)], capsys)
    assert rc == 2 and "--prior-shift" in err and "Traceback" not in err


def test_predict_progress_bar(weights_path, image_tree, capsys):
    rc, out, err = run_cli(["predict", str(image_tree), "--progress", "always", "--weights", str(weights_path)],
                           capsys)
    assert rc == 0 and "3/3" in err and "img" in err
    rc, out, err = run_cli(["predict", str(image_tree), "--weights", str(weights_path)], capsys)
    assert "3/3" not in err  # auto: not for 3 images, not when stderr is no terminal


def test_clean_errors_no_traceback(tmp_path):
    """--out with an unknown format and --device cuda without a usable GPU: one line, exit 2."""
    r = pyfer_subprocess("predict", str(ASTRONAUT), "--out", str(tmp_path / "x.xyz"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "x.xyz" in r.stderr
    try:
        from pyfer.engine import cuda_devices

        n, _ = cuda_devices()
    except ImportError:
        n = 0
    if n:
        pytest.skip("a CUDA GPU is usable here: --device cuda works")
    r = pyfer_subprocess("predict", str(ASTRONAUT), "--device", "cuda")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "cuda" in r.stderr.lower(), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_json_lines_name_the_files_that_could_not_be_read(weights_path, image_tree, tmp_path, capsys):
    """--json wrote a line for each image read and none for one that failed: a saved faces.jsonl
    could not show it (a helper's review, session 47). Now such a file has a line with its error,
    in input order, and stderr still says it."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    rc, out, err = run_cli(["predict", str(image_tree / "a.png"), str(broken), str(image_tree / "blank.png"),
                            "--json", "--weights", str(weights_path)], capsys)
    assert rc == 1
    lines = [json.loads(s) for s in out.splitlines()]
    assert [Path(d["image"]).name for d in lines] == ["a.png", "broken.jpg", "blank.png"]
    assert "faces" not in lines[1] and "cannot decode" in lines[1]["error"]
    assert len(lines[0]["faces"]) == 1 and lines[2]["faces"] == []
    assert f"{broken}: cannot decode" in err


def test_an_image_type_whose_writer_opencv_switched_off_is_a_usage_error(tmp_path):
    """--out x.exr: OpenCV's EXR writer is built but off, and asking for it raised cv2.error, a
    traceback (a helper's review, session 47). Now the usual one line, exit 2, and no OpenCV log
    line before it."""
    for switched_on in ("0", "1"):  # on, the writer takes floats only, and the write failed (status 1)
        r = pyfer_subprocess("predict", str(ASTRONAUT), "--out", str(tmp_path / "x.exr"),
                             env={"OPENCV_IO_ENABLE_OPENEXR": switched_on})
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [
            f"pyfer predict: --out {tmp_path / 'x.exr'}: cannot write images of type '.exr'; use .jpg, .png, .bmp, .tif or .webp"]


def test_a_url_is_named_as_a_url_not_a_missing_file():
    """``pyfer predict https://...`` said "https:/example.org/me.jpg: no such image file" (Path
    folds the "//"). pyfer never uses the network: it says so, for the CLI and the API."""
    r = pyfer_subprocess("predict", "https://example.org/me.jpg")
    assert r.returncode == 1
    assert "https://example.org/me.jpg: a URL; pyfer reads local files only" in r.stderr, r.stderr
    from pyfer.recognizer import load_image

    with pytest.raises(FileNotFoundError, match="https://example.org/me.jpg is a URL: pyfer reads local files only"):
        load_image("https://example.org/me.jpg")


def test_version():
    import pyfer as _pyfer

    r = pyfer_subprocess("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"pyfer {_pyfer.__version__}"


def test_readme_first_command(tmp_path):
    """README: `pyfer predict examples/astronaut.png --out astronaut_annotated.jpg` (the installed
    console script, run from the repository root)."""
    import shutil

    exe = shutil.which("pyfer") or str(Path(sys.executable).parent / "pyfer")
    if not Path(exe).exists():
        pytest.skip("the pyfer console script is not installed")
    out = tmp_path / "astronaut_annotated.jpg"
    r = subprocess.run([exe, "predict", "examples/astronaut.png", "--out", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("examples/astronaut.png: 1 face(s)") and "happiness" in r.stdout
    assert f"wrote {out}" in r.stdout and cv2.imread(str(out)).shape == (320, 320, 3)


# -- licence, typing (issue 12 friction items) -------------------------------------------------
def test_licence_files():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted" in text
    notice = (REPO / "NOTICE.md").read_text()
    for needle in ("FER2013", "Kaggle", "Microsoft Corporation", "YuNet", "Shiqi Yu",
                   "their terms are the data set's own"):
        assert needle in notice, needle
    models = Path(pyfer.__file__).parent / "models"
    assert "MIT License" in (models / "LICENSE-yunet.txt").read_text()


def test_py_typed():
    """The marker, and the types of the compiled module beside it (type checkers cannot read a .so)."""
    package = Path(pyfer.__file__).parent
    assert (package / "py.typed").is_file() and (package / "_engine.pyi").is_file()


def test_glob_under_a_folder_named_with_brackets(tmp_path, monkeypatch):
    """A folder whose name holds glob characters is read literally in a pattern below it."""
    from pyfer.cli import expand_inputs

    folder = tmp_path / "photos[2020]"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    found, errs, _ = expand_inputs([str(folder / "*.png")], False)
    assert [p.name for p, _ in found] == ["a.png"] and errs == []
    monkeypatch.chdir(tmp_path)  # the same pattern relative: its first part is the bracketed folder
    found, errs, _ = expand_inputs(["photos[2020]/*.png"], False)
    assert [p.name for p, _ in found] == ["a.png"] and errs == []


def test_paths_after_options(weights_path, image_tree, capsys):
    """Options and paths mix in any order; a usage error shows the command's own usage."""
    rc, out, err = run_cli(["predict", str(image_tree / "a.png"), "--json", str(image_tree / "b.jpg"),
                            "--weights", str(weights_path), str(image_tree / "blank.png")], capsys)
    assert rc == 0, err
    assert [Path(json.loads(s)["image"]).name for s in out.splitlines()] == ["a.png", "b.jpg", "blank.png"]
    with pytest.raises(SystemExit) as e:
        main(["predict", str(ASTRONAUT), "--no-such-option"])
    assert e.value.code == 2 and "usage: pyfer predict" in capsys.readouterr().err


def test_closed_stdout_stops_quietly(weights_path, image_tree):
    """`pyfer predict DIR --json | head`: the reader goes away; no traceback, status 141."""
    p = subprocess.Popen([sys.executable, "-m", "pyfer", "predict", str(image_tree), "--json", "--weights",
                          str(weights_path)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # before anything is written: every write fails
    _, err = p.communicate(timeout=180)
    assert p.returncode == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_outputs_never_replace_an_input(weights_path, tmp_path, capsys):
    """--out, --csv (predict) and --out, --jsonl (video) naming an input: status 2, input intact."""
    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), cv2.imread(str(ASTRONAUT)))
    other = tmp_path / "other.png"
    cv2.imwrite(str(other), cv2.imread(str(ASTRONAUT)))
    clip = dark_clip(tmp_path / "clip.mp4")
    before = {p: p.read_bytes() for p in (photo, other, clip)}
    (tmp_path / "sub").mkdir()
    os.link(photo, tmp_path / "hard.png")  # the same file by other names: also refused
    cases = [["predict", str(photo), "--out", str(photo)],
             ["predict", str(photo), "--out", str(tmp_path / "sub" / ".." / "me.png")],
             ["predict", str(photo), "--out", str(tmp_path / "hard.png")],
             ["predict", str(other), str(photo), "--csv", str(photo)],
             ["video", str(clip), "--out", str(clip)],
             ["video", str(clip), "--jsonl", str(clip)]]
    for args in cases:
        rc, _, err = run_cli(args + ["--weights", str(weights_path)], capsys)
        assert rc == 2 and "is an input" in err, (args, err)
    assert {p: p.read_bytes() for p in before} == before


def test_unwritable_out_is_a_usage_error(weights_path, tmp_path, capsys):
    """An --out (predict or video) whose folder cannot be made fails at once with status 2."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder would go")
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--out", str(blocker / "x.jpg"), "--weights",
                          str(weights_path)], capsys)
    assert rc == 2 and "x.jpg" in err and "failed" not in err
    rc, _, err = run_cli(["video", "0", "--out", str(blocker / "v.mp4"), "--weights", str(weights_path)], capsys)
    assert rc == 2 and "v.mp4" in err
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--csv", str(blocker / "f.csv"), "--weights",
                          str(weights_path)], capsys)
    assert rc == 2 and "f.csv" in err


def test_usage_errors_leave_nothing_behind(weights_path, tmp_path, capsys):
    """A usage error found late (--out with two images) creates no folder; a video without a
    frame leaves no empty --jsonl file."""
    second = tmp_path / "second.png"
    cv2.imwrite(str(second), cv2.imread(str(ASTRONAUT)))
    rc, _, _ = run_cli(["predict", str(ASTRONAUT), str(second), "--out", str(tmp_path / "new" / "x.png"),
                        "--weights", str(weights_path)], capsys)
    assert rc == 2 and not (tmp_path / "new").exists()
    text = tmp_path / "text.jpg"
    text.write_text("not a video")
    rc, _, _ = run_cli(["video", str(text), "--jsonl", str(tmp_path / "j" / "x.jsonl"), "--no-progress",
                        "--weights", str(weights_path)], capsys)
    assert rc == 2 and not (tmp_path / "j" / "x.jsonl").exists()


@pytest.mark.parametrize("command", ["predict", "video", "evaluate"])
def test_threads_below_one_are_a_usage_error_in_the_flags_words(command, weights_path, tmp_path, capsys):
    """--threads 0 (or less) is status 2 and one line in the command line's words, not the
    API's ("a positive int or None")."""
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{ASTRONAUT},happiness\n")
    target = {"predict": [str(ASTRONAUT)],
              "video": [str(dark_clip(tmp_path / "clip.mp4")), "--jsonl", str(tmp_path / "v.jsonl"), "--no-progress"],
              "evaluate": [str(manifest)]}[command]
    for threads in ("0", "-2"):
        rc, _, err = run_cli([command, *target, "--threads", threads, "--weights", str(weights_path)], capsys)
        assert rc == 2 and err.strip().splitlines() == [f"pyfer {command}: --threads must be >= 1, got {threads}"], err


def test_flag_names_in_errors_spare_paths():
    from pyfer.cli import _flag_names

    assert _flag_names("min_face must be >= 1") == "--min-face must be >= 1"
    assert _flag_names("prior_shift cannot be set") == "--prior-shift cannot be set"
    for path in ("runs/min_face_sweep/w.safetensors", "runs/nothreads.safetensors", "/w/prior_shift/x"):
        assert _flag_names(f"no weights file at {path}") == f"no weights file at {path}"


def test_video_double_dash_source(recognizer, weights_path, tmp_path, capsys, monkeypatch):
    """`pyfer video [options] -- -x.mp4`: a source that looks like an option."""
    dark_clip(tmp_path / "-x.mp4")
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(["video", "--jsonl", "x.jsonl", "--no-progress", "--weights", str(weights_path),
                          "--", "-x.mp4"], capsys)
    assert rc == 0, err
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 3


def test_video_usage_checks(weights_path, tmp_path, capsys):
    """Bad --max-frames, an unwritable video type and a source without frames: status 2, one
    line, before any frame is processed."""
    text = tmp_path / "text.jpg"
    text.write_text("not a video")
    cases = [(["--jsonl", str(tmp_path / "x.jsonl"), "--max-frames", "-1"], "--max-frames"),
             (["--jsonl", str(tmp_path / "x.jsonl"), "--max-frames", "0"], "--max-frames"),
             (["--out", str(tmp_path / "v.xyz")], "v.xyz"),
             (["--jsonl", str(tmp_path / "x.jsonl")], "text.jpg")]
    for extra, named in cases:
        rc, _, err = run_cli(["video", str(text), *extra, "--no-progress", "--weights", str(weights_path)], capsys)
        assert rc == 2 and named in err and len(err.strip().splitlines()) == 1, (extra, err)


def test_verbose_times_the_decode(weights_path, monkeypatch, capsys):
    """-v reports the decode the CLI does (before predict), not predict's conversion of an array."""
    import time as _time

    import pyfer.recognizer as recognizer_module

    real = recognizer_module.load_image

    def slow_load(image):
        if isinstance(image, (str, Path)):
            _time.sleep(0.05)
        return real(image)

    monkeypatch.setattr(recognizer_module, "load_image", slow_load)
    rc, out, _ = run_cli(["predict", str(ASTRONAUT), "-v", "--weights", str(weights_path)], capsys)
    decode_ms = float(out.split("decode=")[1].split()[0])
    assert rc == 0 and decode_ms >= 50, out


def test_verbose_first_decode_does_not_time_importing_opencv():
    """-v: OpenCV is imported before the first image's decode is timed (it added 25-40 ms to it)."""
    script = textwrap.dedent(f"""
        import sys
        import pyfer.cli, pyfer.recognizer as r
        real, seen = r.load_image, []
        def spy(image):
            seen.append("cv2" in sys.modules)
            return real(image)
        r.load_image = spy
        assert "cv2" not in sys.modules
        pyfer.cli.main(["predict", {str(ASTRONAUT)!r}, "-v"])
        print(seen[0])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "True", (done.stdout, done.stderr)


def test_double_dash_then_paths_that_look_like_options(weights_path, tmp_path, capsys, monkeypatch):
    """After '--' every word is a path, even '-x.png'; with no path at all, a usage error."""
    cv2.imwrite(str(tmp_path / "-x.png"), cv2.imread(str(ASTRONAUT)))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(["predict", "--json", "--weights", str(weights_path), "--", "-x.png"], capsys)
    assert rc == 0 and json.loads(out)["image"] == "-x.png", err
    with pytest.raises(SystemExit) as e:
        main(["predict", "--json"])
    assert e.value.code == 2 and "PATH" in capsys.readouterr().err


def test_examples_readme_json_is_current(weights_path, trained, capsys, monkeypatch):
    """examples/README.md shows `pyfer predict examples/astronaut.png --json`: it must be what the
    shipped model prints today (a re-shipped model makes this fail until the example is updated)."""
    if not trained:
        pytest.skip("no trained weights: the stand-in model prints other scores")
    doc = REPO / "examples" / "README.md"
    if not doc.is_file():
        pytest.skip("examples/README.md is not here (the wheel check copies only the photo)")
    shown = next(line.strip() for line in doc.read_text().splitlines()
                 if line.strip().startswith('{"image": "examples/astronaut.png"'))
    monkeypatch.chdir(REPO)
    rc, out, _ = run_cli(["predict", "examples/astronaut.png", "--json"], capsys)
    assert rc == 0
    got, want = json.loads(out)["faces"][0], json.loads(shown)["faces"][0]
    assert got["box"] == want["box"] and got["label"] == want["label"]
    for k, v in want["scores"].items():
        assert got["scores"][k] == pytest.approx(v, abs=2e-4), k


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_recursive_glob_through_a_symlink_loop_gives_each_file_once(tmp_path):
    """``**`` follows symlinked folders, even one that points back up the tree: each image file is
    taken once, by the first name it is found under."""
    from pyfer.cli import expand_inputs

    (tmp_path / "tree" / "a" / "b").mkdir(parents=True)
    for rel in ("tree/one.jpg", "tree/a/two.jpg", "tree/a/b/three.jpg"):
        cv2.imwrite(str(tmp_path / rel), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "tree" / "a" / "b" / "loop").symlink_to(tmp_path / "tree" / "a")
    found, errs, _ = expand_inputs([str(tmp_path / "tree" / "**" / "*.jpg")], True)
    assert errs == []
    # each by its shortest name, not by a name down the loop
    assert sorted(p.relative_to(tmp_path).as_posix() for p, _ in found) == [
        "tree/a/b/three.jpg", "tree/a/two.jpg", "tree/one.jpg"]
    # a symlinked file is a name of its own: it keeps its row
    (tmp_path / "tree" / "alias.jpg").symlink_to(tmp_path / "tree" / "one.jpg")
    found, _, _ = expand_inputs([str(tmp_path / "tree")], False)
    assert [p.name for p, _ in found] == ["alias.jpg", "one.jpg"]


def test_folders_take_gifs_and_skip_exr(tmp_path):
    from pyfer.cli import expand_inputs
    from pyfer.files import reads_gif

    if not reads_gif():
        pytest.skip(f"OpenCV {cv2.__version__} reads no GIF (4.11 and later do)")

    cv2.imwrite(str(tmp_path / "a.gif"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.exr").write_bytes(b"v/1\x01")  # opencv-python cannot read EXR: not picked up
    found, errs, _ = expand_inputs([str(tmp_path)], False)
    assert [p.name for p, _ in found] == ["a.gif"] and errs == []
    found, errs, _ = expand_inputs([str(tmp_path / "*.gif")], False)
    assert [p.name for p, _ in found] == ["a.gif"] and errs == []


@pytest.mark.parametrize("ext", [".pgm", ".pbm"])
def test_annotated_copy_of_a_gray_only_type(weights_path, tmp_path, capsys, ext):
    """OpenCV writes PGM/PBM from one channel: the annotated copy is written gray, not refused
    after the run."""
    src = tmp_path / f"face{ext}"
    gray = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(src), gray)
    out = tmp_path / f"out{ext}"
    rc, _, err = run_cli(["predict", str(src), "--weights", str(weights_path), "--out", str(out)], capsys)
    assert rc == 0, err
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert written is not None and written.shape == gray.shape
    rc, _, err = run_cli(["predict", str(src), "--weights", str(weights_path), "--out-dir", str(tmp_path / "d")],
                         capsys)
    assert rc == 0 and (tmp_path / "d" / f"face{ext}").is_file(), err


def test_libjpeg_s_message_on_a_damaged_jpeg_names_the_file(weights_path, tmp_path, capfd):
    """libjpeg decodes a JPEG with damaged scan data and says so on the C stderr ("Corrupt JPEG
    data: 180 extraneous bytes before marker 0xd9"), naming no file. The pyfer command catches it
    and says it again as a note naming the image; a program calling main() keeps its stderr as it
    is. With stderr closed (2>&-) no message reaches stdout among the JSON lines."""
    data = bytearray(cv2.imencode(".jpg", cv2.imread(str(ASTRONAUT)))[1].tobytes())
    for i in range(len(data) // 2, len(data) // 2 + 40, 3):  # inside the scan: decoded all the same
        data[i] ^= 0x55
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(bytes(data))
    r = pyfer_subprocess("predict", damaged, ASTRONAUT, "--weights", weights_path)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"pyfer predict: {damaged}: note: Corrupt JPEG data: "), r.stderr
    assert len(lines) == 2 and lines[1].startswith("pyfer predict: 2 image(s), 2 face(s), 0 failed"), r.stderr
    assert main(["predict", str(damaged), "--weights", str(weights_path)]) == 0
    err = capfd.readouterr().err
    assert "Corrupt JPEG data" in err and "note:" not in err
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    closed = subprocess.run(["bash", "-c", 'exec "$0" "$@" 2>&-', sys.executable, "-m", "pyfer", "predict", "--json",
                             str(damaged), str(tmp_path / "bad.jpg"), "--weights", str(weights_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert closed.returncode == 1 and [list(json.loads(line)) for line in closed.stdout.splitlines()] == \
        [["image", "faces"], ["image", "error"]], closed.stdout


def test_an_unreadable_image_leaves_an_existing_out_file_alone(weights_path, tmp_path, capsys):
    """--out with an image that cannot be read: status 1, the reason named, and no annotated copy:
    a file already at --out (an earlier run's) is neither replaced nor emptied."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a JPEG after all")
    out = tmp_path / "out.png"
    rc, _, err = run_cli(["predict", str(bad), "--weights", str(weights_path), "--out", str(out)], capsys)
    assert rc == 1 and "bad.jpg" in err and not out.exists(), err
    out.write_bytes(b"an earlier run's copy")
    rc, _, err = run_cli(["predict", str(bad), "--weights", str(weights_path), "--out", str(out)], capsys)
    assert rc == 1 and out.read_bytes() == b"an earlier run's copy" and "wrote" not in err


def test_label_of_a_face_at_the_top_edge_stays_in_its_box():
    """With no room above the box the label goes inside it, never below, where it would cover the
    label of a face underneath."""
    from pyfer.recognizer import Face
    from pyfer.video import draw_faces

    img = np.full((400, 300, 3), 128, np.uint8)
    face = Face(box=(50, 0, 200, 200), label="happiness", confidence=0.9,
                scores={"happiness": 0.9}, landmarks=None, detection_score=0.9)
    out = draw_faces(img, [face])
    changed = np.any(out != img, axis=2)
    assert changed[:201, 50:251].any()
    assert not changed[204:, :].any()  # nothing drawn below the box (its black edge reaches 2 px past it)


def test_out_dir_never_overwrites_an_input_not_read_yet(weights_path, tmp_path, capsys):
    """--out-dir DIR with inputs in DIR: an annotated copy never takes the name of any input of
    the run (one read later included), it takes the next free name."""
    astronaut = cv2.imread(str(ASTRONAUT))
    other = cv2.flip(astronaut, 1)
    photos = tmp_path / "p"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), astronaut)
    cv2.imwrite(str(photos / "a_annotated.png"), other)  # the name a.png's copy would take
    (tmp_path / "photos").mkdir()
    (tmp_path / "other").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "b.png"), astronaut)
    cv2.imwrite(str(tmp_path / "other" / "b.png"), other)  # photos/b.png's copy would go here
    inputs = [photos / "a.png", photos / "a_annotated.png", tmp_path / "other" / "b.png"]
    before = {p: p.read_bytes() for p in inputs}
    for args in (["predict", str(photos), "--out-dir", str(photos)],
                 ["predict", str(tmp_path / "photos" / "b.png"), str(tmp_path / "other"), "--out-dir",
                  str(tmp_path / "other")]):
        rc, out, err = run_cli(args + ["--weights", str(weights_path)], capsys)
        assert rc == 0, err
        assert out.count("1 face(s)") == 2, out
    assert {p: p.read_bytes() for p in inputs} == before
    # every input got its own annotated copy under a free name: NAME_annotated, then NAME_annotated2
    assert sorted(p.name for p in photos.glob("*.png")) == ["a.png", "a_annotated.png", "a_annotated2.png",
                                                            "a_annotated_annotated.png"]
    assert sorted(p.name for p in (tmp_path / "other").glob("*.png")) == ["b.png", "b_annotated.png",
                                                                          "b_annotated2.png"]


def test_a_second_run_into_the_photos_folder_leaves_out_its_annotated_copies(weights_path, tmp_path, capsys):
    """pyfer predict photos --out-dir photos, twice: the second run reads the two photos, not the
    copies the first wrote beside them (which it had read as photos, and annotated again as
    a_annotated_annotated.png); a copy named on the command line is read."""
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut = cv2.imread(str(ASTRONAUT))
    cv2.imwrite(str(photos / "a.png"), astronaut)
    cv2.imwrite(str(photos / "b.jpg"), cv2.flip(astronaut, 1))
    for run in range(2):
        for pattern in (str(photos), str(photos / "*")):  # a folder and a glob
            rc, out, err = run_cli(["predict", pattern, "--out-dir", str(photos), "--weights", str(weights_path)],
                                   capsys)
            assert rc == 0 and out.count("1 face(s)") == 2, (out, err)
            assert ("left out 2 annotated copies pyfer wrote" in err) == (run > 0 or pattern != str(photos)), err
    assert sorted(p.name for p in photos.iterdir()) == ["a.png", "a_annotated.png", "b.jpg", "b_annotated.jpg"]
    rc, out, err = run_cli(["predict", str(photos / "a_annotated.png"), "--weights", str(weights_path)], capsys)
    assert rc == 0 and out.count("1 face(s)") == 1 and "left out" not in err, (out, err)


def test_the_annotated_copy_mark(tmp_path):
    """The mark is in the header, the pixels are the same, other readers see a comment or a text
    chunk, and a JPEG or PNG pyfer did not write is not taken for a copy."""
    from pyfer.files import is_annotated_copy, mark_annotated

    image = cv2.imread(str(ASTRONAUT))
    for suffix in (".jpg", ".png", ".bmp"):
        encoded = cv2.imencode(suffix, image)[1].tobytes()
        plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"marked{suffix}"
        plain.write_bytes(encoded)
        marked.write_bytes(mark_annotated(encoded))
        assert np.array_equal(cv2.imread(str(marked)), cv2.imread(str(plain)))
        assert not is_annotated_copy(plain)
        assert is_annotated_copy(marked) == (suffix != ".bmp")
    assert (tmp_path / "marked.jpg").read_bytes()[2:10] == b"\xff\xe0\x00\x10JFIF"  # JFIF's APP0 still first
    other = tmp_path / "other.jpg"  # someone else's comment
    other.write_bytes(mark_annotated(cv2.imencode(".jpg", image)[1].tobytes()).replace(b"pyfer", b"gimp!"))
    assert not is_annotated_copy(other) and not is_annotated_copy(tmp_path / "missing.png")
    Image = pytest.importorskip("PIL.Image")  # (not in the wheel job's torch-free environment)
    assert Image.open(tmp_path / "marked.jpg").info["comment"] == b"pyfer annotated copy"
    assert Image.open(tmp_path / "marked.png").info["Software"] == "pyfer annotated copy"


def _non_utf8(name: bytes, tmp_path) -> str:
    """``name`` as Python sees a file name that is not valid UTF-8 (surrogate escapes); skips
    where the file system refuses such names (macOS, Windows)."""
    s = os.fsdecode(name)
    try:
        (tmp_path / s).write_bytes(b"")
        (tmp_path / s).unlink()
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not valid UTF-8")
    return s


def test_file_names_that_are_not_utf8(weights_path, tmp_path):
    """A Latin-1 file name (caf\\xe9.png) never reaches OpenCV, whose Python wrapper crashes on
    it: an image is read, annotated into --out-dir under its own name; a video source or --out
    so named is refused with status 2 and one line."""
    name = _non_utf8(b"caf\xe9.png", tmp_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), cv2.imread(str(ASTRONAUT)))
    (photos / name).write_bytes((photos / "a.png").read_bytes())
    r = pyfer_subprocess("predict", photos, "--out-dir", tmp_path / "out", "--weights", weights_path)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    written = tmp_path / "out" / name
    assert written.is_file() and cv2.imdecode(np.fromfile(str(written), np.uint8), cv2.IMREAD_COLOR) is not None
    # --out with such a name: the annotated copy is written too
    out = tmp_path / _non_utf8(b"r\xe9sultat.jpg", tmp_path)
    r = pyfer_subprocess("predict", photos / "a.png", "--out", out, "--weights", weights_path)
    assert r.returncode == 0 and out.is_file(), (r.returncode, r.stderr[-2000:])
    clip = dark_clip(tmp_path / "clip.mp4")
    bad_clip = tmp_path / _non_utf8(b"vid\xe9o.mp4", tmp_path)
    bad_clip.write_bytes(clip.read_bytes())
    for args in (["video", bad_clip, "--jsonl", tmp_path / "v.jsonl"],
                 ["video", clip, "--out", tmp_path / _non_utf8(b"sortie\xe9.mp4", tmp_path)]):
        r = pyfer_subprocess(*args, "--no-progress", "--weights", weights_path)
        assert r.returncode == 2 and "UTF-8" in r.stderr and len(r.stderr.strip().splitlines()) == 1, \
            (args, r.returncode, r.stderr[-2000:])
    assert not (tmp_path / "v.jsonl").exists()


def test_csv_numbers_are_the_json_faces_numbers(weights_path, tmp_path, capsys):
    """Each --csv row holds its face's numbers to the precision the header promises: the box,
    confidence and every class score to 1e-6, landmarks to 0.005, the detection score to 5e-5,
    the same face as --json gives."""
    import csv as csv_module

    table = tmp_path / "faces.csv"
    rc, out, err = run_cli(["predict", str(ASTRONAUT), "--json", "--csv", str(table),
                            "--weights", str(weights_path)], capsys)
    assert rc == 0, err
    (face,) = json.loads(out)["faces"]
    (row,) = list(csv_module.DictReader(table.open(newline="")))
    assert [int(row[k]) for k in "xywh"] == face["box"]
    assert row["label"] == face["label"] and abs(float(row["confidence"]) - face["confidence"]) <= 1e-6
    assert all(abs(float(row[c]) - v) <= 1e-6 for c, v in face["scores"].items())
    assert abs(float(row["detection_score"]) - face["detection_score"]) <= 5e-5
    csv_points = [float(v) for k, v in row.items() if k.endswith(("_x", "_y"))]
    json_points = [v for point in face["landmarks"] for v in point]
    assert len(csv_points) == 10 and np.allclose(csv_points, json_points, atol=0.005 + 1e-9)


def test_csv_keeps_file_names_that_are_not_utf8(weights_path, tmp_path, capsys):
    """--csv writes such a name as its own bytes instead of stopping the run; --json with the
    surrogate escapes that ``os.fsencode`` turns back into the name."""
    name = _non_utf8(b"caf\xe9.png", tmp_path)
    photo = tmp_path / name
    cv2.imwrite(str(tmp_path / "a.png"), cv2.imread(str(ASTRONAUT)))
    photo.write_bytes((tmp_path / "a.png").read_bytes())
    table = tmp_path / "faces.csv"
    rc, out, err = run_cli(["predict", str(photo), "--json", "--csv", str(table), "--weights", str(weights_path)],
                           capsys)
    assert rc == 0, err
    rows = table.read_bytes().splitlines()
    assert len(rows) == 2 and rows[1].startswith(os.fsencode(str(photo)) + b",0,")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1 and os.fsencode(lines[0]["image"]) == os.fsencode(str(photo)), out


def test_two_outputs_naming_one_file_are_refused(weights_path, tmp_path, capsys, monkeypatch):
    """--out and --csv (predict), --out and --jsonl (video) naming one file: status 2, one line,
    nothing written."""
    monkeypatch.chdir(tmp_path)
    clip = dark_clip(tmp_path / "clip.mp4")
    cases = [["predict", str(ASTRONAUT), "--out", "r.png", "--csv", "r.png"],
             ["predict", str(ASTRONAUT), "--out", "r.png", "--csv", str(tmp_path / "r.png")],
             ["video", str(clip), "--out", "s.mp4", "--jsonl", "./s.mp4", "--no-progress"]]
    for args in cases:
        rc, _, err = run_cli(args + ["--weights", str(weights_path)], capsys)
        assert rc == 2 and "same file" in err and len(err.strip().splitlines()) == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_detector_none_refuses_min_face_and_score_threshold(weights_path, capsys):
    """--detector none finds no faces to filter: --min-face and --score-threshold are refused, as
    --score-threshold is for haar, not silently ignored."""
    for extra, flag in ((["--min-face", "40"], "--min-face"), (["--score-threshold", "0.5"], "--score-threshold")):
        rc, out, err = run_cli(["predict", str(ASTRONAUT), "--detector", "none", *extra, "--weights",
                                str(weights_path)], capsys)
        assert rc == 2 and flag in err and out == "", (extra, err)
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--detector", "none", "--weights", str(weights_path)], capsys)
    assert rc == 0, err


def test_no_annotated_copies_line_when_every_input_failed(weights_path, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    rc, _, err = run_cli(["predict", str(broken), "--out-dir", str(tmp_path / "out"), "--weights",
                          str(weights_path)], capsys)
    assert rc == 1 and "annotated copies in" not in err, err
    rc, _, err = run_cli(["predict", str(ASTRONAUT), str(broken), "--out-dir", str(tmp_path / "out"), "--weights",
                          str(weights_path)], capsys)
    assert rc == 1 and "annotated copies in" in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("full", ["--csv", "stdout"])
def test_a_full_disk_is_one_line_and_status_74(full):
    """An output that cannot be written mid-run (/dev/full: ENOSPC) ended in a traceback with
    status 1, which means a bad input (session 35)."""
    args = [sys.executable, "-m", "pyfer", "predict", str(ASTRONAUT), "--json"]
    with open("/dev/full", "w") as dev_full:
        r = subprocess.run(args + ["--csv", "/dev/full"] if full == "--csv" else args,
                           stdout=dev_full if full == "stdout" else subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    assert r.returncode == 74, r.stderr
    assert r.stderr.strip().splitlines() == ["pyfer predict: an output could not be written: [Errno 28] "
                                             "No space left on device"], r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="needs /dev/stdout")
@pytest.mark.parametrize("name", ["/dev/stdout", "/proc/self/fd/1", "/dev/stderr"])
def test_an_output_named_by_its_descriptor_appends_to_what_the_shell_opened(name, tmp_path):
    """`pyfer predict a.png --csv /dev/stdout >> log` emptied log (the name was opened again, at
    offset 0, and cut to the lines written). /dev/stdout is --csv - (the CSV alone); /dev/stderr
    is written through the descriptor the shell opened."""
    if name.startswith("/proc") and not os.path.exists("/proc/self/fd/1"):
        pytest.skip("no /proc")
    log = tmp_path / "log.csv"
    log.write_text("kept\n")
    to_stderr = name == "/dev/stderr"
    with open(log, "a") as out:
        r = subprocess.run([sys.executable, "-m", "pyfer", "predict", str(ASTRONAUT), "--csv", name],
                           stdout=subprocess.DEVNULL if to_stderr else out, stderr=out if to_stderr else subprocess.PIPE,
                           text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "kept" and lines[1].startswith("path,face,") and len(lines) >= 3, lines
    assert not any("face(s)" in line for line in lines), lines  # the CSV alone, as --csv - gives


def test_outputs_that_are_stdout_or_no_open_descriptor_are_refused_up_front(tmp_path):
    """`pyfer evaluate --csv /dev/stdout` mixed the CSV into the report, `video --summary
    /dev/stdout` likewise; a /dev/fd/N that is not open failed after the model loaded (status 74)."""
    def run(*args):
        return subprocess.run([sys.executable, "-m", "pyfer", *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=120)

    for args, says in ((["evaluate", tmp_path, "--csv", "/dev/stdout"], "--csv needs a file name"),
                       (["video", ASTRONAUT, "--summary", "/dev/stdout"], "--summary needs a file name"),
                       (["predict", ASTRONAUT, "--csv", "/dev/fd/987"], "descriptor 987 is not open")):
        r = run(*args)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_a_settings_file_that_cannot_be_written_or_removed_is_named(weights_path, tmp_path, capsys):
    """--csv FILE keeps its settings in FILE.resume.json: where that cannot be written (--resume)
    or an old one removed, the error named FILE, which could be written."""
    csv_path = tmp_path / "faces.csv"
    (tmp_path / "faces.csv.resume.json").mkdir()
    for extra, says in (([], "faces.csv.resume.json (where its --resume settings go) is a folder"),
                        (["--resume"], "faces.csv.resume.json is a folder")):
        rc, _, err = run_cli(["predict", str(ASTRONAUT), "--csv", str(csv_path), *extra, "--weights",
                              str(weights_path)], capsys)
        assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
        assert not csv_path.exists()  # a usage error leaves nothing behind (an empty CSV was left)


def test_a_video_that_cannot_be_read_leaves_an_old_jsonl_file_alone(weights_path, tmp_path, capsys):
    """The JSON lines file was emptied before the source was opened, then removed as empty: a
    typo in the video's name deleted last run's results (and /dev/stdout, as root)."""
    old = tmp_path / "faces.jsonl"
    old.write_text('{"frame": 0}\n')
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("not a video")
    for source in (bad, tmp_path / "missing.mp4"):
        rc, _, err = run_cli(["video", str(source), "--jsonl", str(old), "--weights", str(weights_path)], capsys)
        assert rc != 0 and old.read_text() == '{"frame": 0}\n', err


def test_an_annotated_copy_that_cannot_be_written_says_why(weights_path, tmp_path, capsys):
    out_dir = tmp_path / "annotated"
    (out_dir / "astronaut.png").mkdir(parents=True)  # a folder where the copy goes
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--out-dir", str(out_dir), "--weights", str(weights_path)],
                         capsys)
    assert rc == 1 and "cannot write the annotated copy" in err and "directory" in err.lower(), err
    assert "(1 annotated copy not written)" in err, err


def lines_in(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def stop_pyfer_when(args, ready, signal_name: str) -> tuple[int, str]:
    """``pyfer ARGS`` in a child, sent ``signal_name`` once ``ready()``: (its status, its stderr).
    SIGINT is set back to its default in the child: a shell running CI in the background ignores
    it, and Python installs no Ctrl-C handler where it starts ignored."""
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-m", "pyfer", *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline and not ready():
            time.sleep(0.02)
        assert p.poll() is None, p.communicate()
        p.send_signal(getattr(signal, signal_name))
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    return p.returncode, err


def shifted_astronaut_clip(path: Path, frames: int) -> Path:
    """The astronaut moving 3 px a frame (no scene cut), 256x256 at 10 fps."""
    img = cv2.resize(cv2.imread(str(ASTRONAUT)), (256, 256))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (256, 256))
    for i in range(frames):
        w.write(np.roll(img, 3 * (i % 20), axis=1))
    w.release()
    return path


def test_video_no_smoothing_gives_each_frame_its_own_scores_and_boxes(weights_path, tmp_path, capsys):
    clip = shifted_astronaut_clip(tmp_path / "clip.mp4", 6)
    rec = pyfer.Recognizer(weights_path, threads=1)
    cap = cv2.VideoCapture(str(clip))
    own = [rec.predict(cap.read()[1])[0] for _ in range(6)]
    rows = {}
    for extra in ([], ["--no-smoothing"]):
        rc, out, err = run_cli(["video", str(clip), "--jsonl", "-", "--weights", str(weights_path), *extra], capsys)
        assert rc == 0, err
        rows[bool(extra)] = [json.loads(s)["faces"][0] for s in out.splitlines()]
    assert [r["scores"] for r in rows[True]] == [pytest.approx(f.scores, abs=1e-4) for f in own]
    assert [tuple(r["box"]) for r in rows[True]] == [f.box for f in own]
    smoothed = rows[False]
    assert smoothed[0]["scores"] == pytest.approx(own[0].scores, abs=1e-4)
    assert smoothed[5]["scores"] != pytest.approx(own[5].scores, abs=1e-4)
    assert tuple(smoothed[0]["box"]) == own[0].box  # a track's first box is the detector's
    assert sum(tuple(r["box"]) != f.box for r, f in zip(smoothed[1:], own[1:])) >= 3  # of 5


def test_video_no_smoothing_holds_no_missed_face(weights_path, tmp_path, capsys, monkeypatch):
    """--no-smoothing draws each frame's own faces: no box held over a frame that missed one."""
    import pyfer.video

    given = []

    def record(source, recognizer, **kwargs):
        given.append(kwargs["tracker"])
        return {"frames": 0, "seconds": 0.0, "fps": 0.0, "faces": 0, "skipped_frames": 0, "scene_cuts": 0}

    monkeypatch.setattr(pyfer.video, "process_video", record)
    clip = shifted_astronaut_clip(tmp_path / "clip.mp4", 2)
    for extra in (["--no-smoothing"], []):
        run_cli(["video", str(clip), "--jsonl", str(tmp_path / "v.jsonl"), "--weights", str(weights_path), *extra],
                capsys)
    assert given[0].hold_seconds == 0 and given[0].alpha == 1.0 and given[1] is None


@pytest.mark.skipif(sys.platform == "win32", reason="Windows ends a process on these signals, no clean-up")
@pytest.mark.parametrize("signal_name, status, said", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_stopped_video_run_keeps_what_it_wrote(weights_path, tmp_path, signal_name, status, said):
    """Ctrl-C, and SIGTERM (`kill`, `timeout`, `docker stop`), stop a run cleanly: whole JSON
    lines and a finalised video of as many frames. SIGTERM killed the run and left an MP4 that
    nothing could open (session 37)."""
    clip = shifted_astronaut_clip(tmp_path / "long.mp4", 3000)
    jsonl, out, summary, chart = tmp_path / "v.jsonl", tmp_path / "v.mp4", tmp_path / "s.csv", tmp_path / "t.png"
    charts = ["--timeline", chart] if HAS_MATPLOTLIB else []  # (the wheel job has no matplotlib)
    returncode, err = stop_pyfer_when(["video", clip, "--out", out, "--jsonl", jsonl, "--summary", summary, *charts,
                                       "--progress", "never", "--weights", weights_path],
                                      lambda: lines_in(jsonl) >= 5, signal_name)
    assert returncode == status and err.strip().splitlines()[-1] == f"pyfer video: {said}", (returncode, err)
    rows = [json.loads(s) for s in jsonl.read_text().splitlines()]
    assert 5 <= len(rows) < 3000 and [r["frame"] for r in rows] == list(range(len(rows)))
    cap = cv2.VideoCapture(str(out))
    written = 0
    while cap.read()[0]:
        written += 1
    # a signal between the frame's JSON line and its video frame leaves the line one ahead
    assert written in (len(rows), len(rows) - 1)
    # the summary and chart of the frames done are written too (the last frame's may be missing)
    faces = sum(len(r["faces"]) for r in rows)
    summed = sum(int(r["frames"]) for r in csv.DictReader(summary.open()))
    assert faces - len(rows[-1]["faces"]) <= summed <= faces, (summed, faces)
    assert not HAS_MATPLOTLIB or chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_video_summary_and_timeline(weights_path, tmp_path, capsys):
    """--summary: one row per track, its frames and mean scores those of its JSON lines; --timeline:
    a chart; bad names refused before the model loads."""
    clip = shifted_astronaut_clip(tmp_path / "clip.mp4", 12)
    jsonl, summary, chart = tmp_path / "v.jsonl", tmp_path / "out" / "s.csv", tmp_path / "t.svg"
    if not HAS_MATPLOTLIB:
        rc, _, err = run_cli(["video", str(clip), "--timeline", str(chart), "--weights", str(weights_path)], capsys)
        assert rc == 2 and "--timeline needs matplotlib" in err, err
    charts = ["--timeline", str(chart)] if HAS_MATPLOTLIB else []
    rc, out, err = run_cli(["video", str(clip), "--jsonl", str(jsonl), "--summary", str(summary), *charts,
                            "--weights", str(weights_path), "--no-progress"], capsys)
    assert rc == 0, err
    assert f"wrote {summary}" in err and (not HAS_MATPLOTLIB or f"wrote {chart}" in err)
    lines = [json.loads(s) for s in jsonl.read_text().splitlines()]
    rows = list(csv.DictReader(summary.open()))
    assert [int(r["id"]) for r in rows] == sorted({f["id"] for line in lines for f in line["faces"]})
    for r in rows:
        mine = [(line["time"], f) for line in lines for f in line["faces"] if f["id"] == int(r["id"])]
        assert int(r["frames"]) == len(mine) and float(r["first_seen"]) == mine[0][0]
        for name in pyfer.EMOTIONS:
            assert float(r[name]) == pytest.approx(np.mean([f["scores"][name] for _, f in mine]), abs=1e-4)
        assert r["label"] == max(pyfer.EMOTIONS, key=lambda n: float(r[n]))
    assert not HAS_MATPLOTLIB or "<svg" in chart.read_text()[:400]
    if HAS_MATPLOTLIB:  # the chart alone, its suffix in capitals
        alone = tmp_path / "alone.PNG"
        rc, _, err = run_cli(["video", str(clip), "--timeline", str(alone), "--weights", str(weights_path),
                              "--no-progress"], capsys)
        assert rc == 0 and alone.read_bytes()[:4] == b"\x89PNG", err
    for bad, said in ((["--timeline", str(tmp_path / "t.txt")], "name a .png, .pdf or .svg"),
                      (["--summary", "-"], "--summary needs a file name"),
                      (["--summary", str(clip)], "--summary")):
        rc, _, err = run_cli(["video", str(clip), *bad, "--weights", str(weights_path)], capsys)
        assert rc == 2 and said in err, err
    rc, _, err = run_cli(["video", str(clip), "--weights", str(weights_path)], capsys)
    assert rc == 2 and "--summary" in err


def test_video_says_how_many_scene_cuts_gave_new_ids(weights_path, tmp_path, capsys):
    clip = tmp_path / "cut.mp4"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (256, 256))
    face = cv2.resize(cv2.imread(str(ASTRONAUT)), (256, 256))
    for frame in [face] * 4 + [255 - face] * 4:  # one cut
        w.write(frame)
    w.release()
    summary = tmp_path / "s.csv"
    rc, _, err = run_cli(["video", str(clip), "--summary", str(summary), "--weights", str(weights_path)], capsys)
    assert rc == 0 and "1 scene cut(s): the faces after each got new ids" in err, err
    assert len(summary.read_text().splitlines()) == 1 + 2  # the header and one face per shot
    # an edited recording whose face stays in place: one face across the cut
    rc, _, err = run_cli(["video", str(clip), "--summary", str(summary), "--no-scene-cuts",
                          "--weights", str(weights_path)], capsys)
    assert rc == 0 and "scene cut" not in err, err
    assert len(summary.read_text().splitlines()) == 1 + 1


def test_video_summary_of_a_clip_without_faces_and_a_failed_write(weights_path, tmp_path, capsys, monkeypatch):
    """No face found: the summary is its header alone and the chart says so, and both replace
    an old run's files (which stayed, looking like this video's results); one output that cannot
    be written does not stop the other, and the status says so (74)."""
    blank = tmp_path / "blank.mp4"
    w = cv2.VideoWriter(str(blank), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (128, 96))
    for _ in range(5):
        w.write(np.full((96, 128, 3), 120, np.uint8))
    w.release()
    summary, chart = tmp_path / "s.csv", tmp_path / "t.png"
    summary.write_text("an old run\n")
    chart.write_bytes(b"an old chart")
    charts = ["--timeline", str(chart)] if HAS_MATPLOTLIB else []
    # a run that fails before any frame (no such file) leaves the old files alone
    rc, _, err = run_cli(["video", str(tmp_path / "missing.mp4"), "--summary", str(summary), *charts,
                          "--weights", str(weights_path)], capsys)
    assert rc == 2 and summary.read_text() == "an old run\n" and chart.read_bytes() == b"an old chart", err
    rc, _, err = run_cli(["video", str(blank), "--summary", str(summary), *charts, "--weights", str(weights_path)],
                         capsys)
    assert rc == 0 and f"wrote {summary}" in err, err
    assert summary.read_text().splitlines()[0].startswith("id,first_frame,") and len(summary.read_text().splitlines()) == 1
    assert not HAS_MATPLOTLIB or chart.read_bytes()[:4] == b"\x89PNG"
    from pyfer.video import Timeline

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Timeline, "write_csv", full_disk)
    chart.unlink(missing_ok=True)
    rc, _, err = run_cli(["video", str(blank), "--summary", str(summary), *charts, "--weights", str(weights_path)],
                         capsys)
    assert rc == 74 and f"--summary {summary} could not be written" in err, (rc, err)
    assert not HAS_MATPLOTLIB or chart.exists()


def test_sigterm_is_taken_only_by_the_command_itself_and_never_over_a_handler(weights_path, monkeypatch, capsys):
    """The `pyfer` process handles SIGTERM during its command and gives the default back; a program
    calling main(args) keeps its own SIGTERM, and so does one that has a handler."""
    import signal

    from pyfer.cli import _raise_terminated, _SigtermAsCtrlC

    seen = []
    real_signal = signal.signal
    monkeypatch.setattr(signal, "signal", lambda s, h: seen.append(h) or real_signal(s, h))
    before = signal.getsignal(signal.SIGTERM)
    assert main(["info", "--weights", str(weights_path)]) == 0
    assert seen == [] and signal.getsignal(signal.SIGTERM) is before  # in-process: untouched
    monkeypatch.setattr(sys, "argv", ["pyfer", "info", "--weights", str(weights_path)])
    real_signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert main() == 0
        assert seen == [_raise_terminated, signal.SIG_DFL] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.set_wakeup_fd(-1) == -1  # given back too

        def host(signum, frame):
            pass

        real_signal(signal.SIGTERM, host)
        with _SigtermAsCtrlC() as taken:
            assert not taken.active and signal.getsignal(signal.SIGTERM) is host
    finally:
        real_signal(signal.SIGTERM, before)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_sigterm_ends_a_command_blocked_inside_opencv(weights_path, tmp_path):
    """A named pipe nobody writes to: OpenCV waits in C forever, where Python's handler cannot run.
    SIGTERM still ends the run, with status 143, once the clean stop's grace time is over."""
    import signal
    import time

    from pyfer.cli import TERMINATE_GRACE_S

    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)
    p = subprocess.Popen([sys.executable, "-m", "pyfer", "video", str(fifo), "--jsonl", str(tmp_path / "v.jsonl"),
                          "--weights", str(weights_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    def waits_for_a_writer():  # True or False where /proc tells (Linux), else None
        try:
            return any((t / "wchan").read_text() == "wait_for_partner" for t in Path(f"/proc/{p.pid}/task").iterdir())
        except OSError:
            return None

    try:
        started = time.monotonic()  # until OpenCV blocks on the pipe (after the model has loaded)
        while p.poll() is None and time.monotonic() - started < 60:
            waiting = waits_for_a_writer()
            if waiting or (waiting is None and time.monotonic() - started > 3):
                break
            time.sleep(0.05)
        assert p.poll() is None, p.communicate()
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=60)
        waited = time.monotonic() - t0
    finally:
        p.kill()
    assert p.returncode == 143 and TERMINATE_GRACE_S - 0.5 < waited < TERMINATE_GRACE_S + 30, (p.returncode, waited)
def test_an_image_piped_to_stdin(weights_path, tmp_path, monkeypatch, capsys):
    """`curl -s URL | pyfer predict -`: the same faces as the file; an annotated copy is stdin.png;
    a terminal on stdin is refused instead of waiting for input."""
    want = json.loads(pyfer_subprocess("predict", ASTRONAUT, "--json", "--weights", weights_path).stdout)["faces"]
    r = subprocess.run([sys.executable, "-m", "pyfer", "predict", "-", "--json", "--out-dir", str(tmp_path / "o"),
                        "--weights", str(weights_path)], input=ASTRONAUT.read_bytes(), capture_output=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["image"] == "-" and [f["box"] for f in got["faces"]] == [f["box"] for f in want]
    assert (tmp_path / "o" / "stdin.png").is_file()
    r = subprocess.run([sys.executable, "-m", "pyfer", "predict", "-", "--weights", str(weights_path)],
                       input=b"no image", capture_output=True, timeout=180)
    assert r.returncode == 1 and b"-: cannot decode the image bytes" in r.stderr, r.stderr
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    rc, _, err = run_cli(["predict", "-", "--weights", str(weights_path)], capsys)
    assert rc == 2 and "stdin is a terminal" in err
    monkeypatch.chdir(tmp_path)  # a file named "-" is ./-
    (tmp_path / "-").write_bytes(ASTRONAUT.read_bytes())
    rc, out, err = run_cli(["predict", "./-", "--json", "--weights", str(weights_path)], capsys)
    assert rc == 0 and json.loads(out)["image"] == str(tmp_path / "-"), err


# -- --resume: going on with an interrupted run's CSV (pyfer/resume.py) ---------------------------
@pytest.fixture(scope="module")
def resume_tree(tmp_path_factory, sfew_faces):
    """photos/ with a.png (one face), b.png (two faces side by side) and sub/c.png (one face)."""
    root = tmp_path_factory.mktemp("resume") / "photos"
    (root / "sub").mkdir(parents=True)
    astronaut = cv2.imread(str(ASTRONAUT))
    cv2.imwrite(str(root / "a.png"), astronaut)
    cv2.imwrite(str(root / "b.png"), np.hstack([astronaut, cv2.flip(astronaut, 1)]))
    cv2.imwrite(str(root / "sub" / "c.png"), astronaut[:, ::-1])
    return root


def _full_run(resume_tree, weights_path, tmp_path, capsys) -> str:
    full = tmp_path / "full.csv"
    assert run_cli(["predict", str(resume_tree), "-r", "--csv", str(full), "--weights", str(weights_path)],
                   capsys)[0] == 0
    text = full.read_text()
    names = [Path(s.split(",")[0]).name for s in text.splitlines()[1:]]
    assert names == ["a.png", "b.png", "b.png", "c.png"]  # b.png: two faces, two rows
    return text


def test_each_image_s_rows_are_on_disk_before_the_next_image(weights_path, resume_tree, tmp_path, capsys,
                                                             monkeypatch):
    """The CSV is flushed after each image: a run killed (-9, a power cut) while on an image has
    every image before it on disk, for --resume to skip. Read from disk as each image starts."""
    from pyfer.recognizer import Recognizer

    csv_path, seen = tmp_path / "rows.csv", []
    predict = Recognizer.predict

    def predict_and_look(self, image, *args, **kwargs):
        seen.append(csv_path.read_text() if csv_path.exists() else "")
        return predict(self, image, *args, **kwargs)

    monkeypatch.setattr(Recognizer, "predict", predict_and_look)
    assert run_cli(["predict", str(resume_tree), "-r", "--csv", str(csv_path), "--weights", str(weights_path)],
                   capsys)[0] == 0
    rows = [[Path(line.split(",")[0]).name for line in text.splitlines()[1:]] for text in seen]
    assert rows == [[], ["a.png"], ["a.png", "b.png", "b.png"]]


@pytest.mark.parametrize("cut", ["half of b's first row", "in b's second row's path", "after b's first row",
                                 "after every row"])
def test_resume_completes_the_csv_of_a_stopped_run(weights_path, resume_tree, tmp_path, capsys, cut):
    """A run stopped anywhere, even inside the second face row of a two-face image (that image's
    first row complete: it was kept with a face missing): --resume keeps what is whole, does the
    last image again and the rest, and the file ends exactly as an uninterrupted run's."""
    text = _full_run(resume_tree, weights_path, tmp_path, capsys)
    lines = text.splitlines(keepends=True)
    head = "".join(lines[:2])  # header and a.png
    part_text = {"half of b's first row": head + lines[2][:len(lines[2]) // 2],
                 "in b's second row's path": head + lines[2] + lines[3][:len(str(resume_tree)) // 2],
                 "after b's first row": head + lines[2],
                 "after every row": text}[cut]
    part = tmp_path / "part.csv"
    part.write_text(part_text)
    rc, out, err = run_cli(["predict", str(resume_tree), "-r", "--csv", str(part), "--resume", "--weights",
                            str(weights_path)], capsys)
    assert rc == 0, err
    assert part.read_text() == text
    kept = 2 if cut == "after every row" else 1  # (the last image is done again)
    assert f"{kept} of 3 image(s) already there" in err and "started without --resume" in err
    assert "a.png" not in out  # not done again
    assert (tmp_path / "part.csv.resume.json").is_file()  # this run's settings, for the next --resume


def test_resume_from_the_start_checks_settings_and_finds_files_from_anywhere(weights_path, resume_tree, tmp_path,
                                                                              capsys, monkeypatch):
    """--resume given from the first run records its settings and folder: a resume with other
    options is refused, and one from another folder, spelling the PATHs otherwise, finds the
    images done (it appended them all again, and mixed the rows of two settings, unsaid)."""
    text = _full_run(resume_tree, weights_path, tmp_path, capsys)
    table = tmp_path / "t.csv"
    monkeypatch.chdir(resume_tree.parent)
    args = ["predict", resume_tree.name, "-r", "--csv", str(table), "--resume", "--weights", str(weights_path)]
    assert run_cli(args, capsys)[0] == 0
    relative = table.read_text()
    assert relative.replace(resume_tree.name + os.sep, str(resume_tree) + os.sep) == text
    table.write_text("".join(relative.splitlines(keepends=True)[:3]))  # stopped after b's first row
    for other in (["--no-flip"], ["--detector", "haar"], ["--prior-shift", "0"]):
        rc, _, err = run_cli(args + other, capsys)
        assert rc == 2 and "was written with other settings" in err, err
    assert table.read_text().count("\n") == 3  # left as it was
    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(["predict", str(resume_tree), "-r", "--csv", str(table), "--resume", "--weights",
                          str(weights_path)], capsys)
    assert rc == 0 and "1 of 3 image(s) already there" in err, err
    rows = table.read_text().splitlines()[1:]
    assert [Path(s.split(",")[0]).name for s in rows] == ["a.png", "b.png", "b.png", "c.png"]
    assert rows[0].startswith(resume_tree.name + os.sep) and rows[1].startswith(str(resume_tree))
    # relative PATHs from another folder: refused (the rows they add would be read from the first
    # run's folder at the next resume); a file emptied starts afresh, with this folder recorded
    table.write_text("".join(table.read_text().splitlines(keepends=True)[:3]))
    monkeypatch.chdir(resume_tree)
    rc, _, err = run_cli(["predict", ".", "-r", "--csv", str(table), "--resume", "--weights", str(weights_path)], capsys)
    assert rc == 2 and "go on from there, or give the PATHs as absolute paths" in err, err
    table.write_text("")
    assert run_cli(["predict", ".", "-r", "--csv", str(table), "--resume", "--weights", str(weights_path)],
                   capsys)[0] == 0
    assert json.loads((tmp_path / "t.csv.resume.json").read_text())["cwd"] == str(resume_tree)


def test_resume_with_the_haar_detector(weights_path, resume_tree, tmp_path, capsys):
    """Its settings are the same in every process (the detector's repr held a memory address, so a
    resume with --detector haar was always refused)."""
    table = tmp_path / "h.csv"
    args = ["predict", str(resume_tree / "a.png"), str(resume_tree / "b.png"), "--detector", "haar", "--csv",
            str(table), "--resume", "--weights", str(weights_path)]
    assert pyfer_subprocess(*args).returncode == 0
    table.write_text(table.read_text().splitlines(keepends=True)[0])
    r = pyfer_subprocess(*args)
    assert r.returncode == 0 and "0 of 2 image(s) already there" in r.stderr, r.stderr


def test_resume_refuses_what_it_cannot_go_on_with(weights_path, resume_tree, tmp_path, capsys):
    common = ["predict", str(resume_tree / "a.png"), "--weights", str(weights_path)]
    for extra in (["--resume"], ["--resume", "--csv", "-"]):
        rc, _, err = run_cli(common + extra, capsys)
        assert rc == 2 and "--resume goes on with the --csv FILE" in err
    other = tmp_path / "other.csv"
    other.write_text("path,label\nx.png,happiness\n")  # another program's table: left as it was
    rc, _, err = run_cli(common + ["--csv", str(other), "--resume"], capsys)
    assert rc == 2 and "does not have this run's columns" in err and other.read_text() == "path,label\nx.png,happiness\n"
    from pyfer.cli import csv_header

    broken = tmp_path / "broken.csv"
    broken.write_text(",".join(csv_header(pyfer.EMOTIONS)) + "\nx.png,0\ny.png,0,1\n")
    rc, _, err = run_cli(common + ["--csv", str(broken), "--resume"], capsys)
    assert rc == 2 and "row 2 has 2 fields" in err and "x.png,0" in broken.read_text()
    # rows of other images only: refused (it appended every image, and said so in a warning only)
    elsewhere = tmp_path / "elsewhere.csv"
    assert run_cli(["predict", str(resume_tree / "b.png"), "--csv", str(elsewhere), "--weights",
                    str(weights_path)], capsys)[0] == 0
    before = elsewhere.read_text()
    rc, _, err = run_cli(common + ["--csv", str(elsewhere), "--resume"], capsys)
    assert rc == 2 and "none of the 1 image(s)" in err and elsewhere.read_text() == before
    # a last image that this run does not name (deleted since, say): its rows kept, and said so
    two = tmp_path / "two.csv"
    assert run_cli(["predict", str(resume_tree / "a.png"), str(resume_tree / "b.png"), "--csv", str(two),
                    "--weights", str(weights_path)], capsys)[0] == 0
    before = two.read_text()
    rc, _, err = run_cli(common + [str(resume_tree / "sub" / "c.png"), "--csv", str(two), "--resume"], capsys)
    assert rc == 0 and "b.png, is not among this run's inputs: its rows are kept" in err, err
    assert two.read_text().startswith(before)
    assert [Path(s.split(",")[0]).name for s in two.read_text().splitlines()[1:]] == ["a.png", "b.png", "b.png", "c.png"]
    # not a CSV that csv reads (a field over its limit): one line, status 2, no --out-dir made
    huge = tmp_path / "huge.csv"
    huge.write_text(",".join(csv_header(pyfer.EMOTIONS)) + "\n" + '"' + "x" * 200_000 + '"\n')
    rc, _, err = run_cli(common + ["--csv", str(huge), "--resume", "--out-dir", str(tmp_path / "copies")], capsys)
    assert rc == 2 and "is not a CSV file pyfer predict wrote" in err and not (tmp_path / "copies").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_two_runs_never_write_one_csv(weights_path, tmp_path, capsys):
    """The second is refused (it replaced the file under the first, which went on writing to the
    old one and reported success with its rows lost)."""
    import fcntl

    table = tmp_path / "t.csv"
    table.write_text("rows of a run in progress\n")
    with open(table, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        for extra in ([], ["--resume"]):
            rc, _, err = run_cli(["predict", str(ASTRONAUT), "--csv", str(table), "--weights", str(weights_path),
                                  *extra], capsys)
            assert rc == 2 and "another pyfer run is writing it" in err, err
    assert table.read_text() == "rows of a run in progress\n"


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_resume_keeps_a_symlinked_csv_a_symlink(weights_path, resume_tree, tmp_path, capsys):
    text = _full_run(resume_tree, weights_path, tmp_path, capsys)
    real = tmp_path / "store" / "real.csv"
    real.parent.mkdir()
    real.write_text("".join(text.splitlines(keepends=True)[:2]))
    real.chmod(0o640)
    link = tmp_path / "faces.csv"
    link.symlink_to(real)
    assert run_cli(["predict", str(resume_tree), "-r", "--csv", str(link), "--resume", "--weights",
                    str(weights_path)], capsys)[0] == 0
    assert link.is_symlink() and real.read_text() == text and (real.stat().st_mode & 0o777) == 0o640


def test_resume_makes_the_annotated_copies_an_earlier_run_left_out(weights_path, resume_tree, tmp_path, capsys):
    """A copy that could not be written (or a stop between an image's row and its copy) was never
    made by --resume: the image's row was there. Now the copy is made, and no second row."""
    csv_path, out_dir = tmp_path / "faces.csv", tmp_path / "annotated"
    args = ["predict", str(resume_tree), "-r", "--csv", str(csv_path), "--out-dir", str(out_dir),
            "--weights", str(weights_path)]
    assert run_cli(args, capsys)[0] == 0
    rows, copy = csv_path.read_text(), out_dir / "b.png"
    made = copy.read_bytes()
    copy.unlink()
    rc, out, err = run_cli(args + ["--resume"], capsys)
    assert rc == 0 and "2 done before (--resume) (1 of them without their annotated copy: made now)" in err, err
    assert copy.read_bytes() == made and csv_path.read_text() == rows
    assert sorted(p.name for p in out_dir.rglob("*.png")) == ["a.png", "b.png", "c.png"]
    rc, out, err = run_cli(args + ["--resume"], capsys)  # every copy there: nothing made
    assert rc == 0 and "made now" not in err, err


def test_an_out_dir_inside_the_folder_is_not_read_as_photos(weights_path, resume_tree, tmp_path, capsys):
    """archive/annotated/ from a run before: its copies are outputs (a rerun or --resume read them
    as photos, and wrote annotated/annotated/); copies written beside the photos stay inputs."""
    import shutil

    photos = tmp_path / "K"
    shutil.copytree(resume_tree, photos)
    for png in list(photos.rglob("*.png")):  # as BMP, which carries no annotated-copy mark
        cv2.imwrite(str(png.with_suffix(".bmp")), cv2.imread(str(png)))
        png.unlink()
    args = ["predict", str(photos), "-r", "--out-dir", str(photos / "annotated"), "--json", "--weights",
            str(weights_path)]
    for _ in range(2):
        rc, out, err = run_cli(args, capsys)
        assert rc == 0 and len(out.splitlines()) == 3, out
    assert "left out 3 image(s) in --out-dir" in err
    assert not (photos / "annotated" / "annotated").exists()
    # an --out-dir that holds the folder searched leaves out nothing (it left out every image)
    rc, out, err = run_cli(["predict", str(photos), "-r", "--out-dir", str(tmp_path), "--json", "--weights",
                            str(weights_path)], capsys)
    assert rc == 0 and len(out.splitlines()) == 6 and "left out" not in err, err


@pytest.mark.skipif(sys.platform == "win32", reason="Windows ends a process on these signals, no clean-up")
@pytest.mark.parametrize("signal_name, status, said", [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")])
def test_a_stopped_run_then_resume_gives_every_image_once(weights_path, tmp_path, signal_name, status, said):
    """Ctrl-C or SIGTERM in a run over a folder says how to go on (SIGTERM said "interrupted",
    status 130); the same command with --resume does the rest: every image has its row once, and
    the images done before are not done again."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(300):  # hard links: 300 inputs of their own, one file's bytes
        os.link(ASTRONAUT, photos / f"{i:03d}.png")
    table = tmp_path / "faces.csv"
    args = ["predict", photos, "--csv", table, "--progress", "never", "--weights", weights_path]
    returncode, err = stop_pyfer_when(args, lambda: lines_in(table) >= 6, signal_name)
    assert returncode == status and f"{said} (" in err and "the same command with --resume goes on" in err, err
    before = table.read_text().splitlines()[1:]
    assert 5 <= len(before) < 300
    r = pyfer_subprocess(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert f"{len(before) - 1} of 300 image(s) already there" in r.stderr
    rows = table.read_text().splitlines()[1:]
    assert rows[:len(before) - 1] == before[:-1]  # the rows kept are the first run's own
    assert [Path(s.split(",")[0]).name for s in rows] == [f"{i:03d}.png" for i in range(300)]
    assert len({s.split(",", 1)[1] for s in rows}) == 1  # one face, the same numbers, in each


def test_video_goes_online_only_with_allow_network(weights_path, tmp_path, capsys, monkeypatch):
    """A network SOURCE needs --allow-network; an address as --out or --jsonl is refused; both
    before the model loads, and nothing is left behind (no folder named 'http:')."""
    monkeypatch.chdir(tmp_path)
    cases = [(["video", "rtsp://127.0.0.1:9/cam", "--jsonl", "-"], "only with --allow-network"),
             (["video", "x.mp4", "--out", "http://127.0.0.1:9/x.mkv"], "--out http://127.0.0.1:9/x.mkv is a network"),
             (["video", "x.mp4", "--jsonl", "ftp://127.0.0.1:9/x.jsonl"], "--jsonl ftp://")]
    for args, said in cases:
        rc, _, err = run_cli(args + ["--weights", str(weights_path)], capsys)
        assert rc == 2 and said in err, err
    assert list(tmp_path.iterdir()) == []
    assert "--allow-network" in build_parser_help("video")


def build_parser_help(command: str) -> str:
    from pyfer.cli import _parsers

    return _parsers()[1][command].format_help()


def test_predict_and_info_start_no_program_and_open_no_socket(weights_path):
    """An app may forbid both: `pyfer info` ran `uname -p` (platform.platform()), and nothing in
    predict may reach the network. Python's audit events of a child interpreter, recorded."""
    code = f"""
import sys
seen = []
sys.addaudithook(lambda event, args: seen.append(event) if event in (
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "socket.connect", "socket.bind", "socket.__new__", "urllib.Request") else None)
from pyfer.cli import main
assert main(["info", "--weights", {str(weights_path)!r}]) == 0
assert main(["predict", {str(ASTRONAUT)!r}, "--json", "--weights", {str(weights_path)!r}]) == 0
print("EVENTS", sorted(set(seen)))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "EVENTS []", r.stdout[-500:]


def test_every_cut_of_the_csv_resumes_to_whole_images(weights_path, resume_tree, tmp_path, capsys):
    """The file cut at every byte (a kill or a full disk can stop a write anywhere, paths with a
    comma, a quote and a newline included): what --resume keeps is a prefix of whole images,
    every image it counts done has all its rows, and no whole row is lost but the last image's."""
    import shutil

    from pyfer.cli import csv_header
    from pyfer.resume import _resume_point, file_key

    odd = tmp_path / 'odd, "name"\nhere'
    shutil.copytree(resume_tree, odd)
    full = tmp_path / "full.csv"
    assert run_cli(["predict", str(odd), "-r", "--csv", str(full), "--weights", str(weights_path)], capsys)[0] == 0
    data = full.read_bytes()
    header = csv_header(pyfer.EMOTIONS)
    import csv as _csv
    import io as _io

    rows = list(_csv.reader(_io.StringIO(data.decode())))[1:]
    keys = [file_key(Path(r[0])) for r in rows]
    head_end = data.index(b"\r\n") + 2
    from pyfer.resume import _records

    row_ends = {end for _, end, _ in _records(data.splitlines(keepends=True))}
    inputs = list(dict.fromkeys(Path(r[0]) for r in rows))
    part = tmp_path / "part.csv"
    for cut in range(len(data) + 1):
        part.write_bytes(data[:cut])
        keep, done, _, _ = _resume_point(str(part), header, {}, inputs)
        if cut < head_end:  # inside the header: written afresh (it was refused as other columns)
            assert (keep, done) == (0, set()), cut
            continue
        kept = list(_csv.reader(_io.StringIO(data[:keep].decode())))[1:]
        assert keep in row_ends and keep <= cut
        assert {file_key(Path(r[0])) for r in kept} == done
        for k in done:  # whole images only
            assert [r for r in kept if file_key(Path(r[0])) == k] == [r for r, rk in zip(rows, keys) if rk == k]
        whole = len(list(_csv.reader(_io.StringIO(data[:cut].decode(errors="ignore"))))) - 1
        assert len(kept) >= whole - 2 - 1, cut  # at most the last image (2 rows) and a cut row dropped


def test_charts_need_a_recent_enough_matplotlib(monkeypatch):
    """--timeline and --plot are refused up front where matplotlib is older than 3.9 (its hatched
    layers), not with a traceback after a whole video."""
    import importlib.metadata

    from pyfer.cli import UsageError, _need_matplotlib

    if importlib.util.find_spec("matplotlib") is None:  # (the wheel's test environment has none)
        with pytest.raises(UsageError, match="--plot needs matplotlib"):
            _need_matplotlib("--plot")
    else:
        _need_matplotlib("--plot")  # the installed one
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "3.8.4")
    with pytest.raises(UsageError, match="--timeline needs matplotlib 3.9 or newer, and 3.8.4 is installed"):
        _need_matplotlib("--timeline")


def test_an_annotated_video_keeps_its_sources_frame_rate(weights_path, tmp_path, capsys):
    """`pyfer video --out` writes at the source's rate: a 10 fps clip plays at 10 fps, not at a
    fixed rate that would speed it up or slow it down."""
    clip = dark_clip(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "annotated.mp4"
    rc, _, err = run_cli(["video", str(clip), "--out", str(out), "--no-progress", "--weights", str(weights_path)], capsys)
    assert rc == 0, err
    cap = cv2.VideoCapture(str(out))
    try:
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.01) and cap.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    finally:
        cap.release()


def test_a_run_without_resume_removes_the_old_resume_record(weights_path, tmp_path, capsys):
    """A fresh run over a CSV that a --resume run left: the record (NAME.resume.json) of the old
    rows goes with them, so a later --resume is judged by this run's settings."""
    from pyfer.resume import sidecar_path

    table = tmp_path / "faces.csv"
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--csv", str(table), "--resume", "--weights", str(weights_path)],
                         capsys)
    assert rc == 0 and sidecar_path(str(table)).is_file(), err
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--csv", str(table), "--weights", str(weights_path)], capsys)
    assert rc == 0 and not sidecar_path(str(table)).exists(), err
    rc, _, err = run_cli(["predict", str(ASTRONAUT), "--csv", str(table), "--resume", "--no-flip",
                          "--weights", str(weights_path)], capsys)
    assert rc == 0, err  # the fresh run wrote no record: nothing to refuse
