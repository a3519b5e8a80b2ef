"""``--ema DECAY``: an exponential moving average of the weights is what training validates and
saves as ``model``; the raw weights travel as ``train_model`` so that ``--resume`` continues both."""
from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from test_resume import REPO, assert_same_weights, train_cmd  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.train import weight_average  # noqa: E402


def test_weight_average_blends_each_step():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    ema = weight_average(model, 0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model.train()
    model(torch.randn(2, 1, 8, 8))  # moves the BatchNorm statistics
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module[0].weight, 0.9 * start + 0.1 * model[0].weight)
    torch.testing.assert_close(ema.module[1].running_mean, 0.1 * model[1].running_mean)


def run(cmd):
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    return r


@pytest.mark.slow
def test_ema_run_saves_the_average_and_resumes_exactly(tmp_path, ferplus_dir):
    straight, split = tmp_path / "straight", tmp_path / "split"
    r = run(train_cmd(straight, 2, "--ema", "0.9", "--keep-epochs"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert [load_checkpoint(straight / f"ep{n}.pt").state["epoch"] for n in (1, 2)] == [0, 1]
    r = run(train_cmd(split, 1, "--ema", "0.9"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the same run continued: resuming without --ema (or a plain run with it) is refused
    r = run(train_cmd(split, 2, "--resume"))
    assert r.returncode != 0 and "--ema 0.9 -> 0.0" in r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    r = run(train_cmd(split, 2, "--ema", "0.9", "--resume"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_same_weights(straight / "last.pt", split / "last.pt")
    a = load_checkpoint(straight / "last.pt").state
    # the average is not the raw weights (a checkpoint that saved the raw ones would fail here)
    diff = max(float((a["model"][k].float() - a["train_model"][k].float()).abs().max()) for k in a["model"])
    assert diff > 1e-4


@pytest.mark.slow
def test_resuming_a_plain_run_with_ema_is_refused(tmp_path, ferplus_dir):
    out = tmp_path / "plain"
    r = run(train_cmd(out, 1))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = run(train_cmd(out, 2, "--ema", "0.9", "--resume"))
    assert r.returncode != 0 and "--ema 0.0 -> 0.9" in r.stderr


@pytest.mark.parametrize("decay", ["1.0", "-0.1"])
def test_bad_decay_is_a_clear_error(tmp_path, decay):
    r = run([sys.executable, "-m", "training.train", "student", "--out", str(tmp_path / "x"), "--ema", decay])
    assert r.returncode != 0 and "--ema must be in [0, 1)" in r.stderr
