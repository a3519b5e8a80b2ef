"""Short real training runs: learning, resume, distillation, export of a trained checkpoint."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

# two classes, 32 px, no augmentation: small enough to learn in a minute on 2 cores
QUICK = ["--classes", "neutral,happiness", "--input-size", "32", "--batch-size", "16", "--no-augment",
         "--dropout", "0", "--threads", "1", "--quiet"]


def train(*args) -> dict:
    out = subprocess.run([sys.executable, "-m", "training.train", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory, ferplus_dir):
    out = tmp_path_factory.mktemp("student")
    summary = train("student", "--out", str(out), "--data", f"ferplus:{ferplus_dir}", "--epochs", "3",
                    "--train-limit", "2000", "--val-limit", "300", *QUICK)
    return out, summary


def test_short_run_learns(learned_run):
    out, summary = learned_run
    # balanced two-class validation subset: the majority-class rate is 0.5
    print(f"best validation accuracy {summary['best_val_accuracy']:.3f} (majority rate 0.5)")
    assert summary["best_val_accuracy"] >= 0.62
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()


def test_resume_continues(learned_run, ferplus_dir, tmp_path):
    out = tmp_path / "run"  # a copy: the other tests read the learned run as it was trained
    shutil.copytree(learned_run[0], out)
    summary = train("student", "--out", str(out), "--data", f"ferplus:{ferplus_dir}", "--epochs", "4",
                    "--train-limit", "2000", "--val-limit", "300", *QUICK, "--resume")
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3, 4]
    assert summary["epoch"] == 4


def test_a_resumed_run_ends_with_the_weights_of_one_never_stopped(tiny_sets, tmp_path):
    """--resume restores weights, optimizer, schedule and random state: 1 epoch + 1 resumed = 2
    straight (augmentation on, so a lost random state fails too). The long variants are slow tests."""
    from test_resume import assert_same_weights

    tiny = ["--data", tiny_sets[0], "--input-size", "32", "--batch-size", "8", "--threads", "1", "--quiet"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train("student", "--out", str(straight), "--epochs", "2", *tiny)
    train("student", "--out", str(split), "--epochs", "1", *tiny)
    assert train("student", "--out", str(split), "--epochs", "2", "--resume", *tiny)["epoch"] == 2
    assert_same_weights(straight / "last.pt", split / "last.pt", keys=("model", "optimizer"))


def test_distill_and_export(learned_run, ferplus_dir, tmp_path):
    import numpy as np
    import torch

    out, _ = learned_run
    dist = tmp_path / "distill"
    summary = train("distill", "--teacher", str(out / "best.pt"), "--out", str(dist), "--data",
                    f"ferplus:{ferplus_dir}", "--epochs", "1", "--train-limit", "256", "--val-limit", "64",
                    "--T", "4", "--alpha", "0.5", *QUICK)
    assert summary["epoch"] == 1
    export = subprocess.run([sys.executable, "-m", "training.export", str(dist / "best.pt"),
                             str(tmp_path / "s.safetensors")], cwd=REPO, capture_output=True, text=True)
    assert export.returncode == 0, export.stderr
    from training.checkpoint import load_checkpoint
    from training.export import from_safetensors

    model, _, _ = load_checkpoint(dist / "best.pt").build_model()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 32, 32), dtype=np.float32))
    with torch.no_grad():
        torch.testing.assert_close(from_safetensors(tmp_path / "s.safetensors")(x), model(x),
                                   rtol=1e-4, atol=1e-4)


def test_bad_arguments_fail_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "training.train", "distill", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and "needs --teacher" in out.stderr
    out = subprocess.run([sys.executable, "-m", "training.train", "student", "--out", str(tmp_path),
                          "--data", f"ferplus:{tmp_path / 'none'}"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and "FERPlus folder not found" in out.stderr


@pytest.mark.parametrize("flags,message", [
    (["--train-protocol", "plurality", "--data", "rafdb:/nowhere"], "--train-protocol plurality is for FERPlus"),
    (["--cutmix", "-1"], "--cutmix"),
])
def test_bad_mixing_and_protocol_flags_fail_before_any_data_is_read(tmp_path, flags, message):
    from training.train import build_parser, check_args

    with pytest.raises(SystemExit, match=message):
        check_args(build_parser().parse_args(["student", "--out", str(tmp_path), *flags]))


def test_a_half_width_student_trains_exports_and_runs_in_the_engine(tiny_sets, tmp_path):
    """--width 0.5: the stage table goes into the checkpoint and the export, the export command and
    training.evaluate rebuild it from the file, the engine runs it as PyTorch does, and --resume at
    another width is one clear line (it was a 285-line traceback)."""
    import numpy as np

    import pyfer
    from training.checkpoint import load_checkpoint
    from training.export import from_safetensors, read_metadata
    from training.models import SHUFFLENETV2_WIDTHS, count_parameters

    tiny = ["--data", tiny_sets[0], "--input-size", "32", "--batch-size", "8", "--threads", "1", "--quiet"]
    out = tmp_path / "half"
    train("student", "--out", str(out), "--epochs", "1", "--width", "0.5", *tiny)
    spec = load_checkpoint(out / "last.pt").spec
    assert spec.widths == SHUFFLENETV2_WIDTHS[0.5]
    export = tmp_path / "half.safetensors"
    r = subprocess.run([sys.executable, "-m", "training.export", str(out / "last.pt"), str(export)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_metadata(export)["widths"] == list(SHUFFLENETV2_WIDTHS[0.5])
    model = from_safetensors(export)
    assert count_parameters(model) < 400_000  # 0.35M: a quarter of 1.0x
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    import torch

    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(pyfer.Engine(export, threads=1).forward(x), want, rtol=1e-4, atol=1e-4)
    r = subprocess.run([sys.executable, "-m", "training.evaluate", "--weights", str(export), "--data", tiny_sets[0],
                        "--no-latency"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "params 3" in r.stdout, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "training.train", "student", "--out", str(out), "--epochs", "2",
                        "--resume", *tiny], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--width" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_the_plateau_schedule_cuts_the_rate_only_when_accuracy_stalls():
    """Validation accuracy rising every epoch keeps the rate; flat for longer than the patience
    cuts it by the factor. (With mode "min" every rising epoch would count as a stall, and the
    default recipe's rate would fall from the second epoch on.)"""
    import torch

    from training.train import build_parser, lr_schedule

    args = build_parser().parse_args(["student", "--out", "x", "--lr", "0.1", "--plateau-patience", "1",
                                      "--plateau-factor", "0.5"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.lr)
    sched = lr_schedule(opt, args)
    for accuracy in (0.5, 0.6, 0.7, 0.8, 0.9):
        sched.step(accuracy)
        assert opt.param_groups[0]["lr"] == 0.1
    for _ in range(2):
        sched.step(0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    # cosine over --epochs: half the rate at the middle epoch, near zero at the end
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cosine = lr_schedule(opt, build_parser().parse_args(["student", "--out", "x", "--schedule", "cosine",
                                                         "--epochs", "8"]))
    rates = []
    for _ in range(8):
        rates.append(opt.param_groups[0]["lr"])
        cosine.step()
    assert rates[0] == 0.1 and rates[4] == pytest.approx(0.05) and rates[7] < 0.005
    assert all(a > b for a, b in zip(rates, rates[1:]))
