"""A run folder is never lost or mixed by a mistaken command: an existing run is not restarted
without --overwrite, --resume refuses a changed recipe, two processes cannot train one folder, a
stop (Ctrl-C, kill, timeout) says how to go on, and bad flags or files fail at once with one line."""
from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

torch = pytest.importorskip("torch")

from training.checkpoint import load_checkpoint  # noqa: E402
from training.data import DataError  # noqa: E402
from training.train import build_parser, check_args, check_inputs_exist, run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = ["--train-limit", "256", "--val-limit", "64", "--batch-size", "64", "--threads", "1", "--quiet"]


def args_for(out: Path, *flags):
    return build_parser().parse_args(["student", "--out", str(out), *flags])


def train(out: Path, *flags) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.train", "student", "--out", str(out), *TINY, *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, ferplus_dir):
    """A 2-epoch cosine run (keeping each epoch), trained once for the tests below."""
    out = tmp_path_factory.mktemp("runs") / "done"
    r = train(out, "--epochs", "2", "--schedule", "cosine", "--lr", "0.004", "--keep-epochs")
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.mark.parametrize("flags,message", [
    (["--epochs", "0"], "--epochs and --batch-size must be >= 1"),
    (["--epochs", "-3"], "--epochs and --batch-size must be >= 1"),
    (["--batch-size", "0"], "--epochs and --batch-size must be >= 1"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--momentum", "1.5"], "--momentum in"),
    (["--train-limit", "-5"], "--train-limit and --val-limit must be >= 0"),
    (["--resume", "--overwrite"], "use one"),
])
def test_bad_numbers_are_refused_before_any_data_is_read(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        check_args(args_for(tmp_path, *flags))


def test_an_out_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "junk.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(SystemExit, match="is a file, not a run folder"):
        run(args_for(f))


@pytest.mark.parametrize("content", [b"not a model at all", None])
def test_a_bad_teacher_fails_at_once_with_one_line(tmp_path, content):
    teacher = tmp_path / "teacher.safetensors"
    if content is None:  # a real file that is not a classifier: the YuNet detector
        teacher = REPO / "pyfer" / "models" / "yunet.safetensors"
    else:
        teacher.write_bytes(content)
    # the label files are empty (no faces to load): the teacher's error shows it was loaded before the data
    data = fake_ferplus(tmp_path / "no_data_needed_yet")
    with pytest.raises(SystemExit, match=r"--teacher .*cannot load a pyfer model"):
        run(build_parser().parse_args(["distill", "--out", str(tmp_path / "run"), "--teacher", str(teacher),
                                       "--data", f"ferplus:{data}"]))


def fake_ferplus(root: Path) -> Path:
    """The FERPlus layout's label files (empty): enough for the checks made before a run folder."""
    for split in ("FER2013Train", "FER2013Valid"):
        (root / split).mkdir(parents=True)
        (root / split / "label.csv").write_text("")
    return root


@pytest.mark.parametrize("flags,error,message", [
    (["--teacher", "{tmp}/missing.safetensors"], SystemExit,
     "--teacher .*missing.safetensors: cannot load a pyfer model from it: no such file"),
    (["--init", "{tmp}/missing.pt"], SystemExit, "--init .*missing.pt: cannot load a pyfer model from it"),
    (["--data", "ferplus:{tmp}"], DataError, "FERPlus folder not found: .*FER2013Train"),  # one level too high
    (["--data", "ferplus:{tmp}/no_labels"], DataError, "FERPlus label file not found: .*label.csv"),
    (["--val2", "{tmp}/no_sfew.csv"], DataError, "manifest not found: .*no_sfew.csv"),
    # files that are there but are not what their flag needs, and flags no run can use (a helper's
    # review: each left a folder holding only .lock)
    (["--teacher", "{repo}/README.md"], SystemExit, "--teacher .*README.md: cannot load a pyfer model from it"),
    (["--init", "{repo}/models/teacher_s11_fp16.safetensors"], SystemExit,
     "--init .*teacher_s11.* holds another network, effresnet18 .*; this run builds shufflenetv2"),
    (["--width", "0.5", "--init", "{repo}/pyfer/models/tsnet_student.safetensors"], SystemExit,
     "holds another network"),
    (["--classes", "happiness,bogus"], DataError, "--classes: unknown label 'bogus'"),
    (["--device", "gpu"], SystemExit, "--device 'gpu' is not a torch device"),
    (["--init", "{tmp}/old_run"], SystemExit, "--init .*old_run: .*is a folder: give a checkpoint file in it \\(last.pt\\)"),
])
def test_a_missing_input_leaves_no_run_folder(tmp_path, flags, error, message):
    (tmp_path / "no_labels" / "FER2013Train").mkdir(parents=True)
    (tmp_path / "old_run").mkdir()
    (tmp_path / "old_run" / "last.pt").write_bytes(b"a run's checkpoint")
    args = ["distill", "--out", str(tmp_path / "runs" / "new"), "--teacher", str(REPO / "models" /
            "teacher_s26_mixstyle_fp16.safetensors"), "--data", f"ferplus:{fake_ferplus(tmp_path / 'fer')}"]
    args += [f.format(tmp=tmp_path, repo=REPO) for f in flags]
    with pytest.raises(error, match=message):
        run(build_parser().parse_args(args))
    assert not (tmp_path / "runs").exists()


def test_only_distill_needs_its_teacher_file(tmp_path):
    data = f"ferplus:{fake_ferplus(tmp_path)}"
    check_inputs_exist(args_for(tmp_path / "run", "--teacher", str(tmp_path / "gone.pt"), "--data", data))
    with pytest.raises(SystemExit, match="--teacher .*gone.pt"):
        check_inputs_exist(build_parser().parse_args(["distill", "--out", str(tmp_path / "run"), "--teacher",
                                                      str(tmp_path / "gone.pt"), "--data", data]))


def test_an_overwritten_run_names_a_missing_init(tmp_path, ferplus_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an old run")
    r = train(out, "--overwrite", "--init", str(tmp_path / "gone.pt"), "--epochs", "1")
    assert r.returncode != 0 and "--init " in r.stderr and "gone.pt" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_fewer_faces_than_a_batch_is_refused(tmp_path, ferplus_dir):
    r = train(tmp_path / "run", "--epochs", "1", "--train-limit", "40")
    assert r.returncode != 0 and "fewer than one batch" in r.stderr, r.stderr[-2000:]


def test_the_log_holds_each_epochs_own_learning_rate(finished_run):
    log = [json.loads(line) for line in (finished_run / "log.jsonl").read_text().splitlines()]
    # cosine over 2 epochs from 0.004: epoch 1 trains at 0.004, epoch 2 at 0.002
    assert [round(r["lr"], 6) for r in log] == [0.004, 0.002]


def test_a_finished_run_is_not_restarted_without_overwrite(finished_run):
    before = (finished_run / "log.jsonl").read_text()
    r = train(finished_run, "--epochs", "2", "--schedule", "cosine", "--lr", "0.004")
    assert r.returncode != 0 and "holds a run already" in r.stderr and "--overwrite" in r.stderr
    assert (finished_run / "log.jsonl").read_text() == before


@pytest.mark.parametrize("flags,message", [
    (["--epochs", "2", "--schedule", "cosine", "--lr", "0.5"], "--lr 0.004 -> 0.5"),
    (["--epochs", "2", "--schedule", "plateau", "--lr", "0.004"], "--schedule 'cosine' -> 'plateau'"),
    (["--epochs", "4", "--schedule", "cosine", "--lr", "0.004"], "the cosine schedule spans --epochs"),
    (["--epochs", "2", "--schedule", "cosine", "--lr", "0.004", "--input-size", "80"], "--input-size 64 -> 80"),
])
def test_resume_refuses_another_recipe(finished_run, flags, message):
    before = (finished_run / "config.json").read_text()
    with pytest.raises(SystemExit, match=message):
        run(args_for(finished_run, *TINY, *flags, "--resume"))
    assert (finished_run / "config.json").read_text() == before  # refused before anything was written


def test_resume_accepts_where_it_runs_and_moved_data(finished_run, ferplus_dir, tmp_path, capsys):
    moved = tmp_path / "ferplus_link"
    moved.symlink_to(ferplus_dir)
    # finished already: resuming trains no epoch, but the flags are checked first
    summary = run(args_for(finished_run, *TINY, "--epochs", "2", "--schedule", "cosine", "--lr", "0.004",
                           "--threads", "2", "--data", f"ferplus:{moved}", "--resume"))
    out, err = capsys.readouterr()
    assert "--data is ferplus:" in err
    assert summary["run"] == str(finished_run) and "train_loss" not in summary  # nothing left to train
    # and it says so (it loaded the data and printed only the summary: a helper's review, session 47)
    assert f"nothing to train: {finished_run} has run 2 epoch(s), --epochs is 2 (give more to go on)" in out


def test_resume_accepts_another_spelling_of_the_folder(finished_run, monkeypatch):
    monkeypatch.chdir(finished_run.parent)
    summary = run(args_for(Path("./done/"), *TINY, "--epochs", "2", "--schedule", "cosine", "--lr", "0.004",
                           "--resume"))
    assert Path(summary["run"]) == Path("done")


def test_a_limit_of_zero_is_the_same_as_none():
    from types import SimpleNamespace

    from training.train import check_resume_config

    saved = vars(args_for(Path("runs/x"), "--train-limit", "0"))
    ck = SimpleNamespace(state={"config": saved}, path=Path("runs/x/last.pt"))
    check_resume_config(ck, vars(args_for(Path("runs/x"))))  # absent: all faces, as 0
    with pytest.raises(SystemExit, match="--train-limit None -> 64"):
        check_resume_config(ck, vars(args_for(Path("runs/x"), "--train-limit", "64")))


def test_overwrite_with_a_bad_input_keeps_the_old_run(finished_run):
    with pytest.raises(SystemExit, match="--teacher"):
        run(build_parser().parse_args(["distill", "--out", str(finished_run), "--teacher",
                                       str(finished_run / "missing.pt"), *TINY, "--overwrite"]))
    assert (finished_run / "last.pt").is_file() and (finished_run / "ep2.pt").is_file()


def test_overwrite_replaces_the_old_run_entirely(tmp_path, ferplus_dir):
    out = tmp_path / "run"
    assert train(out, "--epochs", "2", "--keep-epochs").returncode == 0
    r = train(out, "--epochs", "1", "--overwrite")
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out / "ep2.pt").exists()  # no epoch of the old run passes for the new one's
    assert load_checkpoint(out / "last.pt").state["epoch"] == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 1


def test_two_processes_cannot_train_one_folder(tmp_path):
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # another process's run, as the OS sees it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = train(out, "--epochs", "1")
    assert r.returncode != 0 and "being trained by another process" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("sig,sigint_at_start", [(signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.SIG_DFL),
                                                 (signal.SIGINT, signal.SIG_IGN)])
def test_a_stopped_run_says_how_to_go_on(tmp_path, ferplus_dir, sig, sigint_at_start):
    """SIG_IGN at start: a shell script's background job (`nohup ... &`) inherits SIGINT ignored,
    and `kill -INT` / `timeout -s INT` must stop it all the same."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", "student", "--out", str(out), *TINY, "--epochs", "50"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, sigint_at_start))
    try:
        for line in p.stdout:  # stop it during epoch 2, once epoch 1 is saved
            if "epoch 1/50" in line:
                break
        assert p.poll() is None, "the run ended before it could be stopped"
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 128 + sig and "interrupted" in err and "--resume" in err and "Traceback" not in err, \
        err[-2000:]  # (130 for SIGINT, 143 for SIGTERM, as the pyfer command)
    assert "keeps every finished epoch" in err
    assert load_checkpoint(out / "last.pt").state["epoch"] >= 0


def test_a_stopped_run_says_what_it_keeps(tmp_path):
    """Before last.pt exists the message does not promise it (it said "keeps every finished epoch
    (last.pt)"); a run resumable from prev.pt alone keeps its epochs; an --overwrite stopped before
    its first save has nothing of its own (the files there are the old run's); a grid tool's hint
    replaces --resume, which its own command does not take."""
    from training.train import main

    def stopped_run(args):
        raise KeyboardInterrupt

    def stop_message(out, *flags, hint=None):
        with mock.patch("training.train.run", stopped_run), pytest.raises(SystemExit) as stop, \
                contextlib.redirect_stderr(io.StringIO()) as err:
            main(["student", "--out", str(out), *flags], rerun_hint=hint)
        assert stop.value.code == 130
        return err.getvalue()

    out = tmp_path / "run"
    msg = stop_message(out)
    assert "before the first epoch" in msg and "the same command starts it again" in msg, msg
    msg = stop_message(out, hint="this ablation command (it resumes each unfinished cell)")
    assert "this ablation command (it resumes each unfinished cell) starts it again" in msg and "--resume" not in msg
    out.mkdir()
    (out / "prev.pt").write_bytes(b"the epoch before a damaged last.pt")
    msg = stop_message(out, "--resume")
    assert "keeps every finished epoch; continue with the same command and --resume" in msg, msg
    (out / "last.pt").write_bytes(b"the old run's")
    msg = stop_message(out, "--overwrite")
    assert "before the first epoch of the new run" in msg and "--resume" not in msg, msg


def test_val_limit_also_limits_the_second_domain(tiny_sets):
    from pyfer.preprocess import PreprocessSpec
    from training.train import load_data

    source, manifest = tiny_sets
    args = args_for(Path("unused"), "--data", source, "--val2", str(manifest), "--val-limit", "7")
    train_set, val_set, val2_set = load_data(args, PreprocessSpec(64))
    assert len(val_set) == 7 and len(val2_set) == 7 and len(set(val2_set.labels)) == 7  # stratified: 7 classes
    full = load_data(args_for(Path("unused"), "--data", source, "--val2", str(manifest)), PreprocessSpec(64))[2]
    assert len(full) == 14


def resume_check(saved: dict, now: dict):
    from types import SimpleNamespace

    from training.train import check_resume_config

    check_resume_config(SimpleNamespace(state={"config": saved}, path=Path("runs/x/last.pt")), now)


@pytest.mark.parametrize("began,resumed", [(None, "sfew/manifest.csv"), ("sfew/manifest.csv", None)])
def test_resume_refuses_adding_or_dropping_val2(began, resumed):
    """best.pt is chosen by valid + val2 with --val2 and by valid alone without: a run's best so
    far would not compare (the GPU recipe runs without --val2, a CPU resume might add it)."""
    def config(val2):
        return vars(args_for(Path("runs/x"), *(["--val2", val2] if val2 else [])))

    with pytest.raises(SystemExit, match="--val2 .*best.pt is chosen on the validation sets"):
        resume_check(config(began), config(resumed))
    resume_check(config("sfew/manifest.csv"), config("/elsewhere/sfew/manifest.csv"))  # moved: accepted


def test_resume_refuses_adding_val_data_and_does_not_read_init(capsys):
    began = vars(args_for(Path("runs/x"), "--data", "t.csv", "--val-data", "v.csv"))
    with pytest.raises(SystemExit, match="--val-data None -> 'v.csv'"):
        resume_check({**began, "val_data": None}, began)
    resume_check(began, {**began, "init": "gone.safetensors"})
    assert "--init is not read (the checkpoint holds the weights)" in capsys.readouterr().err


def test_resume_refuses_another_teacher_by_contents():
    def config(teacher, identity):
        return {**vars(build_parser().parse_args(["distill", "--out", "runs/x", "--teacher", teacher])),
                **({"teacher_identity": identity} if identity else {})}

    with pytest.raises(SystemExit, match="is not the teacher"):
        resume_check(config("models/a.safetensors", "sha256:aaaa"), config("models/a.safetensors", "sha256:bbbb"))
    resume_check(config("models/a.safetensors", "sha256:aaaa"), config("/moved/a.safetensors", "sha256:aaaa"))
    resume_check(config("models/a.safetensors", None), config("/moved/a.safetensors", "sha256:bbbb"))  # older run


@pytest.mark.parametrize("left", [["best.pt"], ["ep3.pt"], ["log.jsonl"], ["best.pt", "log.jsonl"]])
@pytest.mark.parametrize("resume", [False, True])
def test_a_run_without_last_pt_is_not_trained_over(tmp_path, left, resume):
    """best.pt, epN.pt or a log without last.pt/prev.pt (copied out, or deleted by hand) is still
    trained work: a new run there would replace best.pt and cut the log."""
    out = tmp_path / "run"
    out.mkdir()
    for name in left:
        (out / name).write_text('{"epoch": 1}\n')
    with pytest.raises(SystemExit, match=r"holds a run's files .*--overwrite"):
        run(args_for(out, *TINY, *(["--resume"] if resume else [])))
    assert sorted(p.name for p in out.iterdir()) == sorted(left)


def test_an_empty_log_alone_is_no_run(tmp_path):
    from training.train import trained_files

    (tmp_path / "log.jsonl").write_text("")  # a run stopped before its first epoch ended
    (tmp_path / "config.json").write_text("{}")
    assert trained_files(tmp_path) == []


def test_overwrite_refuses_to_delete_its_own_teacher(finished_run):
    before = sorted(p.name for p in finished_run.iterdir())
    for flag in ("--teacher", "--init"):
        cmd = ["distill", "--teacher", str(finished_run / "best.pt")] if flag == "--teacher" else \
            ["student", "--init", str(finished_run / "ep1.pt")]
        with pytest.raises(SystemExit, match=f"{flag} .* is a file --overwrite would delete"):
            run(build_parser().parse_args([*cmd, "--out", str(finished_run), *TINY, "--overwrite"]))
    assert sorted(p.name for p in finished_run.iterdir()) == before


def test_a_data_folder_without_its_kind_is_named_a_folder(tmp_path):
    """--data /path/to/ferplus (ferplus: forgotten) was told it is a manifest without a validation
    split, and to give --val-data (a helper's review, session 47); evaluate and prior_shift say
    what to write instead, and so does train now."""
    with pytest.raises(SystemExit, match=f"--data {tmp_path} is a folder, not a manifest CSV: give ferplus:{tmp_path}"):
        check_args(args_for(tmp_path / "run", "--data", str(tmp_path)))


def test_a_manifest_without_val_data_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="manifest, which has no validation split: give --val-data"):
        check_args(args_for(tmp_path, "--data", str(tmp_path / "train.csv")))
    check_args(args_for(tmp_path, "--data", str(tmp_path / "train.csv"), "--val-data", str(tmp_path / "v.csv")))


def test_resume_does_not_read_init_again(finished_run, capsys):
    """The checkpoint holds the weights: a resumed run whose --init file is gone goes on."""
    summary = run(args_for(finished_run, *TINY, "--epochs", "2", "--schedule", "cosine", "--lr", "0.004",
                           "--init", str(finished_run / "gone.safetensors"), "--resume"))
    assert summary["run"] == str(finished_run)


def test_the_summary_reports_the_best_epochs_accuracy(tiny_sets, tmp_path):
    """With --val2, best.pt is chosen by the sum of both accuracies; the summary's
    best_val_accuracy is still an accuracy (the best epoch's on valid), best_score the sum."""
    source, manifest = tiny_sets
    summary = run(args_for(tmp_path / "run", "--data", source, "--val2", str(manifest), "--epochs", "2",
                           "--batch-size", "8", "--threads", "1", "--quiet"))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    best = log[summary["best_epoch"] - 1]
    assert summary["best_val_accuracy"] == best["val_accuracy"] <= 1.0
    assert summary["best_score"] == pytest.approx(best["val_accuracy"] + best["val2_accuracy"])


def test_a_tie_keeps_the_earlier_epoch_as_best(tiny_sets, tmp_path, monkeypatch):
    """An epoch must beat the best so far, not equal it, to become best.pt: with every epoch scored
    the same, best.pt stays the first (the shorter-trained of equals, and no rewrite each epoch)."""
    import training.train as train_module

    def same_score(model, prep, data, device, tta, amp, name):
        return {f"{name}_loss": 1.0, f"{name}_accuracy": 0.5, f"{name}_macro_recall": 0.5}

    monkeypatch.setattr(train_module, "evaluate_epoch", same_score)
    source, _ = tiny_sets
    summary = run(args_for(tmp_path / "run", "--data", source, "--epochs", "3", "--batch-size", "8",
                           "--threads", "1", "--quiet"))
    assert summary["best_epoch"] == 1
    assert load_checkpoint(tmp_path / "run" / "best.pt").state["epoch"] == 0
    assert load_checkpoint(tmp_path / "run" / "last.pt").state["best_epoch"] == 0
