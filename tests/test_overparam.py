"""``--overparam K``: the student trains with extra linear branches (MobileOne/RepVGG style) that
fold into the plain network, so checkpoints, exports and the engine see the 1.26M-parameter
ShuffleNetV2 unchanged. The fold must be exact, the start must not jolt a trained network, and a
run must resume and continue like any other."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from test_resume import REPO, assert_same_weights, train_cmd  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.models import (ConvBN, ModelSpec, OverparamConvBN, collapse_overparam,  # noqa: E402
                             count_parameters, overparameterize, randomize_batchnorm)


def busy(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every BatchNorm with statistics and a non-zero scale, so that every branch counts."""
    return randomize_batchnorm(module, seed)


# (cin, cout, kernel, stride, groups): dense, depthwise, grouped, pointwise, odd widths
SHAPES = [(3, 5, 3, 1, 1), (6, 6, 3, 1, 1), (7, 7, 3, 1, 7), (7, 7, 3, 2, 7), (6, 6, 3, 1, 2),
          (9, 9, 1, 1, 1), (9, 4, 1, 1, 1), (8, 8, 1, 2, 1), (5, 5, 5, 1, 5)]


@pytest.mark.parametrize("cin,cout,kernel,stride,groups", SHAPES)
@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("relu", [False, True])
def test_fused_conv_computes_the_branches(cin, cout, kernel, stride, groups, k, relu):
    torch.manual_seed(k)
    block = busy(OverparamConvBN(ConvBN(cin, cout, kernel, stride, groups, relu=relu), k), seed=cin + k).eval()
    assert (block.scale is not None) == (kernel > 1)
    assert (block.identity is not None) == (cin == cout and stride == 1)
    x = torch.randn(3, cin, 11, 10)
    weight, bias = block.fused()
    assert weight.shape == block.branches[0].conv.weight.shape
    want = F.conv2d(x, weight, bias, stride, kernel // 2, groups=groups)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(want) if relu else want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_a_trained_conv_starts_out_unchanged(mode):
    torch.manual_seed(0)
    base = busy(ConvBN(6, 6, 3, 1, 6, relu=True), seed=3)
    block = OverparamConvBN(base, 3)
    getattr(base, mode)(), getattr(block, mode)()
    x = torch.randn(4, 6, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(block(x), base(x), atol=0, rtol=0)
    # and the extra branches do learn: their scales get a gradient
    block.train()
    block(x).square().sum().backward()
    assert block.branches[1].bn.weight.grad.abs().sum() > 0
    assert block.identity.weight.grad.abs().sum() > 0


def test_live_branches_start_near_the_trained_conv_and_move_it():
    torch.manual_seed(0)
    base = busy(ConvBN(6, 6, 3, 1, 6, relu=False), seed=3).eval()
    block = OverparamConvBN(base, 2, branch_scale=0.1).eval()
    x = torch.randn(4, 6, 9, 9)
    with torch.no_grad():
        change = (block(x) - base(x)).abs().max() / base(x).abs().max()
    assert 0.01 < change < 0.5
    block.train()
    block(x).square().sum().backward()
    assert block.branches[1].conv.weight.grad.abs().sum() > 0  # live: the branch's conv learns


def test_bad_blocks_are_clear_errors():
    with pytest.raises(ValueError, match="k must be >= 1"):
        OverparamConvBN(ConvBN(4, 4, 3), 0)
    with pytest.raises(ValueError, match="square, 'same'-padded"):
        OverparamConvBN(ConvBN(4, 4, 3, padding=0), 1)
    with pytest.raises(ValueError, match="square, 'same'-padded"):
        OverparamConvBN(ConvBN(4, 4, 3, folded=True), 1)


def test_the_student_collapses_into_the_plain_student_and_runs_in_the_engine(tmp_path):
    pytest.importorskip("pyfer._engine")
    import pyfer
    from pyfer.preprocess import PreprocessSpec
    from training.export import export_model

    torch.manual_seed(0)
    spec = ModelSpec("shufflenetv2")
    plain = busy(spec.build(), seed=1).eval()
    x = torch.randn(5, 1, 64, 64)
    with torch.no_grad():
        before = plain(x)
    wide = overparameterize(plain, 2)
    assert isinstance(wide.stem, ConvBN)  # the stem is left as it is
    n_over = sum(isinstance(m, OverparamConvBN) for m in wide.modules())
    assert n_over == sum(isinstance(m, ConvBN) for m in spec.build().modules()) - 1
    assert count_parameters(wide) > 2 * 1_200_000
    with torch.no_grad():
        torch.testing.assert_close(wide.eval()(x), before, atol=0, rtol=0)
    busy(wide, seed=2)  # now every branch carries weight
    with torch.no_grad():
        want = wide.eval()(x)
    folded = collapse_overparam(wide, spec)
    assert count_parameters(folded) == count_parameters(spec.build())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), want, atol=1e-4, rtol=1e-4)
        assert (want - before).abs().max() > 0.1  # the extra branches changed the answer
    path = export_model(folded, spec, PreprocessSpec(64), tmp_path / "overparam.safetensors")
    got = pyfer.Engine(str(path), threads=1).forward(x.numpy())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def run(cmd):
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


def test_an_overparam_run_keeps_the_folded_network(tmp_path, ferplus_dir):
    from training.predict import load_model

    out = tmp_path / "wide"
    r = run(train_cmd(out, 1, "--overparam", "2", "--train-limit", "256"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "folding to 1,261,372" in r.stdout
    # what the run saved and validated is the plain student, and it is what the branches fold into
    ck = load_checkpoint(out / "last.pt")
    assert ck.state["overparam"] == 2
    model, spec, _ = load_model(out / "last.pt")
    wide = overparameterize(spec.build(), 2)
    wide.load_state_dict(ck.state["train_model"])
    x = torch.randn(4, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), wide.eval()(x), atol=1e-4, rtol=1e-4)
    for wrong in ([], ["--overparam", "1"]):
        r = run(train_cmd(out, 2, "--resume", "--train-limit", "256", *wrong))
        assert r.returncode != 0 and "--overparam 2 -> " in r.stderr, r.stderr[-2000:]
    # a new run from the folded checkpoint starts from what it computes: its identity BatchNorms
    # are measured again, else the batch statistics of training would jolt it
    from argparse import Namespace

    from pyfer.preprocess import PreprocessSpec
    from training.data import to_model_input
    from training.train import initial_model

    prep = PreprocessSpec(64)
    faces = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (512, 1, 64, 64), dtype=np.uint8))
    args = Namespace(pretrained=None, init=str(out / "last.pt"), dropout=0.0, seed=0)
    start = initial_model(args, spec, prep, faces)
    x = to_model_input(faces[:256], prep)
    with torch.no_grad():
        want = model.eval()(x)
        assert (start.train()(x) - want).abs().max() <= 0.1 * want.abs().max()


@pytest.mark.slow
def test_an_overparam_run_resumes_exactly(tmp_path, ferplus_dir):
    straight, split = tmp_path / "straight", tmp_path / "split"
    r = run(train_cmd(straight, 2, "--overparam", "2"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = run(train_cmd(split, 1, "--overparam", "2"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = run(train_cmd(split, 2, "--overparam", "2", "--resume"))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert_same_weights(straight / "last.pt", split / "last.pt")


@pytest.mark.parametrize("extra,message", [(["--overparam", "-1"], "--overparam must be >= 0"),
                                          (["--overparam", "1", "--ema", "0.9"], "cannot be combined"),
                                          (["--overparam-scale", "0.1"], "is for --overparam"),
                                          (["--overparam", "1", "--overparam-scale", "-1"], "must be >= 0")])
def test_bad_options_are_clear_errors(tmp_path, extra, message):
    r = run([sys.executable, "-m", "training.train", "student", "--out", str(tmp_path / "x"), *extra])
    assert r.returncode != 0 and message in r.stderr, r.stderr[-2000:]
