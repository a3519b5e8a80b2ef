"""Training work is never lost: atomic checkpoints, prev.pt fallback for a corrupt last.pt, and
``kill -9`` during an epoch followed by ``--resume`` (real FERPlus subset, ``-m slow``).

Faults injected into ``last.pt``: truncation (several lengths, empty), random garbage, flipped
bytes anywhere in the file (zip structure, pickle, tensor data: the content digest catches what
torch.load does not), a valid torch file that is not a checkpoint, a checkpoint lacking resume
state, a missing file, a stale ``.tmp`` from a crash mid-write; and both files corrupt.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from training.checkpoint import (RESUME_KEYS, CheckpointError, load_checkpoint, load_for_resume, previous_path,  # noqa: E402
                                 save_checkpoint, state_digest)
from training.models import ModelSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def fake_state(epoch: int, seed: int = 0) -> dict:
    """A resume state of the same form as train.py's (model, SGD momentum, plateau scheduler,
    log), for a small conv net so that these tests stay fast; the slow tests use real runs."""
    from dataclasses import asdict

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max")
    model(torch.randn(4, 1, 64, 64)).sum().backward()
    opt.step()
    sched.step(0.5)
    with torch.no_grad():  # some bulk, so that flips in the middle of the file hit tensor data
        model[0].weight.data = model[0].weight.data.repeat(1, 1, 1, 1)
    state = {"mode": "student", "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "best_val_accuracy": 0.5, "best_epoch": epoch,
             "model_spec": asdict(ModelSpec("shufflenetv2")),
             "preprocess": {"input_size": 64, "channels": 1, "mean": 0.5, "std": 0.5},
             "config": {"epochs": 3, "teacher": None},
             "log": [{"epoch": e + 1, "val_accuracy": 0.5} for e in range(epoch + 1)],
             "extra": torch.randn(64, 1024, generator=torch.Generator().manual_seed(seed))}
    return state


@pytest.fixture(scope="module")
def states():
    return fake_state(0, seed=0), fake_state(1, seed=1)


def two_checkpoints(run: Path, states) -> None:
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(states[0], run / "last.pt", keep_previous=True)
    save_checkpoint(states[1], run / "last.pt", keep_previous=True)


def test_save_keeps_previous_and_roundtrips(tmp_path, states):
    two_checkpoints(tmp_path, states)
    assert previous_path(tmp_path / "last.pt") == tmp_path / "prev.pt"
    last, prev = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "prev.pt")
    assert last.state["epoch"] == 1 and prev.state["epoch"] == 0
    assert state_digest(last.state) == state_digest(states[1])
    assert not list(tmp_path.glob("*.tmp"))
    ck, note = load_for_resume(tmp_path)
    assert ck.path.name == "last.pt" and note is None


def test_save_is_atomic_against_a_crash_mid_write(tmp_path, states, monkeypatch):
    """torch.save dying half-way leaves last.pt and prev.pt untouched, and no temporary file."""
    two_checkpoints(tmp_path, states)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")}

    def dying_save(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # as if killed

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(fake_state(2), tmp_path / "last.pt", keep_previous=True)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pt")} == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert load_for_resume(tmp_path)[0].state["epoch"] == 1
    save_checkpoint(fake_state(2), tmp_path / "last.pt", keep_previous=True)
    assert load_checkpoint(tmp_path / "last.pt").state["epoch"] == 2


def corrupt(path: Path, how: str, rng) -> None:
    raw = bytearray(path.read_bytes())
    if how == "truncate_half":
        path.write_bytes(raw[:len(raw) // 2])
    elif how == "truncate_tail":
        path.write_bytes(raw[:-100])
    elif how == "truncate_head":
        path.write_bytes(raw[:64])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    elif how == "flip_tensor_data":  # the middle of the file: tensor bytes, torch.load does not notice
        for _ in range(4):
            raw[int(rng.integers(len(raw) // 4, 3 * len(raw) // 4))] ^= 0x55
        path.write_bytes(raw)
    elif how == "flip_anywhere":
        for _ in range(16):
            raw[int(rng.integers(0, len(raw)))] ^= int(rng.integers(1, 256))
        path.write_bytes(raw)
    elif how == "not_a_checkpoint":
        torch.save([1, 2, 3], path)
    elif how == "no_resume_state":
        torch.save({"model": {}, "model_spec": {}, "preprocess": {}}, path)
    elif how == "missing":
        path.unlink()
    else:
        raise AssertionError(how)


CORRUPTIONS = ["truncate_half", "truncate_tail", "truncate_head", "empty", "garbage", "flip_tensor_data",
               "flip_anywhere", "not_a_checkpoint", "no_resume_state", "missing"]


def test_the_digest_tells_tensors_of_the_same_bytes_apart():
    """A tensor's dtype and shape are part of the digest: the same bytes read as another dtype or
    shape (a half-written header, a swapped buffer) are another checkpoint."""
    floats = torch.arange(6, dtype=torch.float32)
    as_ints = floats.view(torch.int32)
    assert floats.numpy().tobytes() == as_ints.numpy().tobytes()
    digests = {state_digest({"w": t}) for t in (floats, as_ints, floats.reshape(2, 3), floats.reshape(3, 2))}
    assert len(digests) == 4
    assert state_digest({"w": floats.clone()}) == state_digest({"w": floats})


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupt_last_falls_back_to_prev(tmp_path, states, how):
    import numpy as np

    two_checkpoints(tmp_path, states)
    corrupt(tmp_path / "last.pt", how, np.random.default_rng(CORRUPTIONS.index(how)))
    if how != "missing":
        with pytest.raises(CheckpointError, match="last.pt"):
            load_checkpoint(tmp_path / "last.pt", RESUME_KEYS)
    ck, note = load_for_resume(tmp_path)
    assert ck.path.name == "prev.pt" and ck.state["epoch"] == 0
    assert state_digest(ck.state) == state_digest(states[0])
    assert "last.pt" in note and "prev.pt" in note
    if how != "missing":
        assert "corrupt" in note and (tmp_path / "last.pt.corrupt").is_file() and not (tmp_path / "last.pt").exists()
        # the next save must not rotate the damaged file into prev.pt
        save_checkpoint(fake_state(1, seed=5), tmp_path / "last.pt", keep_previous=True)
        assert load_checkpoint(tmp_path / "prev.pt").state["epoch"] == 0


@pytest.mark.parametrize("seed", range(12))
def test_random_flips_never_load_silently(tmp_path, states, seed):
    """Any byte flip either leaves identical contents (zip padding) or is a CheckpointError."""
    import numpy as np

    p = tmp_path / "last.pt"
    save_checkpoint(states[1], p)
    rng = np.random.default_rng(100 + seed)
    raw = bytearray(p.read_bytes())
    raw[int(rng.integers(0, len(raw)))] ^= int(rng.integers(1, 256))
    p.write_bytes(raw)
    try:
        ck = load_checkpoint(p)
    except CheckpointError as e:
        assert str(p) in str(e)
        return
    assert state_digest(ck.state) == state_digest(states[1])


def test_both_corrupt_is_a_clear_error(tmp_path, states):
    import numpy as np

    two_checkpoints(tmp_path, states)
    corrupt(tmp_path / "last.pt", "truncate_half", np.random.default_rng(0))
    corrupt(tmp_path / "prev.pt", "flip_tensor_data", np.random.default_rng(1))
    with pytest.raises(CheckpointError) as ei:
        load_for_resume(tmp_path)
    assert "last.pt" in str(ei.value) and "prev.pt" in str(ei.value)


def test_no_checkpoint_at_all(tmp_path):
    with pytest.raises(FileNotFoundError, match="last.pt"):
        load_for_resume(tmp_path)


@pytest.mark.slow
def test_train_resume_reports_corrupt_last(tmp_path, states, ferplus_dir):
    """``train --resume`` with a corrupt last.pt and a corrupt prev.pt exits with a message naming
    both."""
    import numpy as np

    two_checkpoints(tmp_path, states)
    corrupt(tmp_path / "last.pt", "garbage", np.random.default_rng(0))
    corrupt(tmp_path / "prev.pt", "empty", np.random.default_rng(0))
    r = subprocess.run([sys.executable, "-m", "training.train", "student", "--out", str(tmp_path), "--resume",
                        "--epochs", "3", "--train-limit", "16", "--val-limit", "16", "--threads", "1", "--quiet"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    err = r.stderr + r.stdout
    assert "--resume" in err and "last.pt" in err and "prev.pt" in err and "corrupt" in err, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_train_resume_without_checkpoint_starts_the_run(tmp_path, ferplus_dir):
    """``--resume`` on a run folder with no checkpoint yet starts the run (one command line starts
    a long run and continues it), and says so."""
    out = tmp_path / "run"
    r = subprocess.run(train_cmd(out, 1, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no checkpoint" in r.stdout and "starting a new run" in r.stdout
    assert load_checkpoint(out / "last.pt").state["epoch"] == 0
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [1]


# -- kill -9 during an epoch, then --resume ------------------------------------------------------
def train_cmd(out: Path, epochs: int, *extra) -> list[str]:
    return [sys.executable, "-m", "training.train", "student", "--out", str(out), "--epochs", str(epochs),
            "--train-limit", "512", "--val-limit", "128", "--threads", "1", "--quiet", *extra]


def assert_same_weights(a: Path, b: Path, keys=("model", "train_model")) -> None:
    """Two checkpoints hold the same tensors under each of ``keys`` (a run resumed vs. one never stopped)."""
    import torch

    sa, sb = load_checkpoint(a).state, load_checkpoint(b).state
    for key in keys:
        for name, tensor in sa[key].items():
            torch.testing.assert_close(sb[key][name], tensor, msg=f"{key}.{name}")


def run_until(cmd, pattern: str, after_s: float, timeout: float = 600) -> tuple[str, float]:
    """Start ``cmd``, wait for ``pattern`` in its stdout, wait ``after_s`` more, then SIGKILL it."""
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, t_end = [], time.time() + timeout
    try:
        for line in p.stdout:
            out.append(line)
            if pattern in line:
                time.sleep(after_s)
                break
            assert time.time() < t_end, "".join(out)
        assert p.poll() is None, "the run finished before it could be killed:\n" + "".join(out)
        t_kill = time.time()
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=60)
        p.stdout.close()
    assert p.returncode == -signal.SIGKILL
    return "".join(out), t_kill


@pytest.mark.slow
def test_kill9_during_epoch_then_resume(tmp_path, ferplus_dir):
    out = tmp_path / "run"
    # killed in the middle of epoch 2 (epoch 1's checkpoint is on disk)
    log1, _ = run_until(train_cmd(out, 3), "epoch 1/3", after_s=3.0)
    assert (out / "last.pt").is_file()
    assert load_checkpoint(out / "last.pt").state["epoch"] == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 1
    r = subprocess.run(train_cmd(out, 3, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "resuming student from" in r.stdout and "after epoch 1" in r.stdout
    assert "epoch 1/3" not in r.stdout and "epoch 2/3" in r.stdout and "epoch 3/3" in r.stdout
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [rec["epoch"] for rec in log] == [1, 2, 3]
    last = load_checkpoint(out / "last.pt")
    assert last.state["epoch"] == 2 and load_checkpoint(out / "prev.pt").state["epoch"] == 1
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["epoch"] == 3


@pytest.mark.slow
def test_kill9_then_corrupt_last_then_resume(tmp_path, ferplus_dir):
    """kill -9 after epoch 2, damage last.pt: --resume says so, continues from prev.pt (epoch 1)
    and finishes the run."""
    out = tmp_path / "run"
    run_until(train_cmd(out, 3), "epoch 2/3", after_s=1.0)
    assert load_checkpoint(out / "last.pt").state["epoch"] == 1
    raw = bytearray((out / "last.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (out / "last.pt").write_bytes(raw)
    r = subprocess.run(train_cmd(out, 3, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "last.pt" in r.stderr and "corrupt" in r.stderr and "prev.pt" in r.stderr, r.stderr
    assert "after epoch 1" in r.stdout and "epoch 2/3" in r.stdout and "epoch 3/3" in r.stdout
    assert [json.loads(x)["epoch"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert (out / "last.pt.corrupt").is_file()
    assert load_checkpoint(out / "last.pt").state["epoch"] == 2


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran",))


def test_a_checkpoint_holding_code_is_refused_without_running_it(tmp_path, monkeypatch):
    """Checkpoints load with torch's weights_only: a .pt whose pickle would call os.system is
    refused with its own reason, and nothing runs; a damaged one is still called damaged."""
    monkeypatch.chdir(tmp_path)
    state = dict(fake_state(1), extra=_RunsCode())
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code.*GLOBAL posix.system"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "ran").exists()
    (tmp_path / "garbage.pt").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt or not a pyfer checkpoint"):
        load_checkpoint(tmp_path / "garbage.pt")


def test_a_folder_or_an_export_given_as_a_checkpoint_is_called_what_it_is(tmp_path):
    """A run folder, or an export named without .safetensors, was "checkpoint not found" or
    "corrupt or not a pyfer checkpoint (Unsupported operand 64)" (a helper's review)."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(CheckpointError, match="run is a folder: give a checkpoint file \\(a run folder's best.pt"):
        load_checkpoint(run)
    (run / "last.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a folder: give a checkpoint file in it \\(last.pt\\)"):
        load_checkpoint(run)
    shipped = REPO / "pyfer" / "models" / "tsnet_student.safetensors"
    with pytest.raises(CheckpointError, match="safetensors export, not a training checkpoint: this tool needs"):
        load_checkpoint(shipped)
    renamed = shutil.copy(shipped, tmp_path / "student")
    with pytest.raises(CheckpointError, match="safetensors export.*name it \\*.safetensors"):
        load_checkpoint(renamed)


def test_checkpoints_trained_on_other_framings_are_not_averaged(tmp_path, capsys):
    from training.average import main as average

    for name, framing in (("box.pt", {"mode": "box"}), ("crops.pt", None)):
        save_checkpoint(dict(fake_state(1), framing=framing), tmp_path / name)
    with pytest.raises(SystemExit, match="differently framed faces .*box.pt: box, .*crops.pt: the data set's own crops"):
        average([str(tmp_path / "box.pt"), str(tmp_path / "crops.pt"), "--out", str(tmp_path / "soup.pt")])
    with pytest.raises(SystemExit) as refused:
        average([str(tmp_path / "gone.pt"), "--out", str(tmp_path / "soup.pt")])
    assert refused.value.code == 2 and "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "soup.pt").exists()


def test_a_teacher_cache_that_cannot_be_read_is_computed_again(tmp_path, capsys):
    """A damaged teacher_logits.pt (or one of objects other than tensors) does not stop a run
    with torch's many-line error: it is reported in a line and computed again."""
    from training.train import load_cache

    (tmp_path / "damaged.pt").write_bytes(b"garbage" * 10)
    torch.save({"key": "k", "logits": _RunsCode()}, tmp_path / "code.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    for name in ("damaged.pt", "code.pt", "list.pt"):
        assert load_cache(tmp_path / name) is None
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "computing it again" in err, err
    torch.save({"key": "k", "logits": torch.zeros(3, 8)}, tmp_path / "good.pt")
    assert load_cache(tmp_path / "good.pt")["key"] == "k" and load_cache(tmp_path / "none.pt") is None


def fake_training(state: dict):
    """The model, optimizer and scheduler that ``fake_state``'s state loads into."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 8))
    model[0].weight.data = state["model"]["0.weight"].clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, opt, torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max")


def test_resume_rewrites_a_best_pt_that_a_stop_left_behind_last_pt(tmp_path, states, capsys):
    """Epoch 2 was the best: last.pt was written, then the run stopped (or the disk filled) before
    best.pt was, which still held epoch 1 while the log and --resume named epoch 2, and no later
    epoch rewrote it unless it did better (a helper's review, session 47). --resume now writes the
    resumed checkpoint as best.pt; a consistent best.pt is left alone."""
    from training.train import resume_state

    old, new = states
    assert new["best_epoch"] == new["epoch"] == 1
    save_checkpoint(new, tmp_path / "last.pt", keep_previous=True)
    save_checkpoint(old, tmp_path / "best.pt")
    resume_state(tmp_path, load_for_resume(tmp_path), "student", *fake_training(new))
    assert load_checkpoint(tmp_path / "best.pt").state["epoch"] == 1
    assert "best.pt held epoch 1; rewritten from last.pt (epoch 2, the best so far)" in capsys.readouterr().err
    before = (tmp_path / "best.pt").stat().st_mtime_ns
    resume_state(tmp_path, load_for_resume(tmp_path), "student", *fake_training(new))
    assert (tmp_path / "best.pt").stat().st_mtime_ns == before and "rewritten" not in capsys.readouterr().err


def test_resume_leaves_best_pt_alone_when_the_resumed_epoch_was_not_the_best(tmp_path, states, capsys):
    """Epoch 2 did worse than epoch 1 (its checkpoint says best_epoch 0): best.pt, holding epoch
    1, is the run's best and stays; only a resumed epoch that was the best is written over it."""
    from training.train import resume_state

    old, new = states
    worse = {**new, "best_epoch": 0, "best_val_accuracy": old["best_val_accuracy"]}
    save_checkpoint(worse, tmp_path / "last.pt", keep_previous=True)
    save_checkpoint(old, tmp_path / "best.pt")
    resume_state(tmp_path, load_for_resume(tmp_path), "student", *fake_training(worse))
    assert load_checkpoint(tmp_path / "best.pt").state["epoch"] == 0 and "rewritten" not in capsys.readouterr().err


def test_resume_from_prev_pt_keeps_a_later_best_pt(tmp_path, states, capsys):
    """last.pt damaged, --resume falls back to prev.pt (epoch 1, its own best); best.pt holds epoch
    2, the run's best: it is kept, not replaced by epoch 1 (a review of the repair above)."""
    import numpy as np

    from training.train import resume_state

    old, new = states
    save_checkpoint(old, tmp_path / "last.pt", keep_previous=True)
    save_checkpoint(new, tmp_path / "last.pt", keep_previous=True)
    save_checkpoint(new, tmp_path / "best.pt")
    corrupt(tmp_path / "last.pt", "garbage", np.random.default_rng(0))
    ck = load_for_resume(tmp_path)
    assert ck[0].path.name == "prev.pt" and ck[0].state["epoch"] == ck[0].state["best_epoch"] == 0
    resume_state(tmp_path, ck, "student", *fake_training(old))
    assert load_checkpoint(tmp_path / "best.pt").state["epoch"] == 1 and "rewritten" not in capsys.readouterr().err


def test_a_full_disk_inside_torch_save_is_the_oserror(tmp_path, states, monkeypatch):
    """torch's zip writer turns ENOSPC into RuntimeError("unexpected pos"), which train's one-line
    handler did not catch: a traceback (a helper's review, session 47, on a 35 MB tmpfs). The
    OSError is raised instead, and no temporary file is left."""
    import errno

    def full_disk(state, f):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 5691584 vs 5691488")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as caught:
        save_checkpoint(states[0], tmp_path / "last.pt")
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []
