"""Sharpness-aware minimization (train --sam RHO): the probe's weights, gradients and BatchNorm."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from training.sam import sharpness_probe  # noqa: E402


def test_the_gradient_is_taken_at_the_steepest_point_of_the_ball_and_the_weights_come_back():
    # L(w) = sum(a * w^2) / 2: grad = a * w, so the probe's point and its gradient are known by hand
    a = torch.tensor([1.0, 4.0, 0.5])
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    model = nn.Module()
    model.w = w
    start = w.detach().clone()
    (a * w * w / 2).sum().backward()
    g = a * start
    rho = 0.05
    with sharpness_probe(model, rho):
        probe = start + rho * g / g.norm()
        torch.testing.assert_close(w.detach(), probe)
        w.grad = None
        (a * w * w / 2).sum().backward()
    torch.testing.assert_close(w.detach(), start)  # back where the step starts from
    torch.testing.assert_close(w.grad, a * probe)  # with the probe's gradient, for the step


def test_the_probe_pass_leaves_batchnorm_statistics_and_momentum_alone():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.BatchNorm2d(3, momentum=None)).train()
    x = torch.randn(4, 1, 6, 6)
    model(x).sum().backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with sharpness_probe(model, 0.1):
        model(x * 3 + 1).sum().backward()
    after = model.state_dict()
    for name in ("1.running_mean", "1.running_var", "2.running_mean", "2.running_var", "2.num_batches_tracked"):
        torch.testing.assert_close(after[name], before[name])
    assert model[1].momentum == 0.1 and model[2].momentum is None
    model(x * 3 + 1)  # outside the probe, training passes move them again
    assert not torch.allclose(model.state_dict()["1.running_mean"], before["1.running_mean"])


def test_weights_come_back_when_the_probe_pass_fails():
    model = nn.Linear(3, 2)
    model(torch.randn(4, 3)).sum().backward()
    start = model.weight.detach().clone()
    with pytest.raises(RuntimeError, match="boom"):
        with sharpness_probe(model, 0.5):
            raise RuntimeError("boom")
    torch.testing.assert_close(model.weight.detach(), start)


def test_a_sam_epoch_takes_two_passes_a_batch_and_another_path():
    import torch.nn.functional as F

    from pyfer.preprocess import PreprocessSpec
    from training.models import ModelSpec
    from training.train import build_parser, train_epoch

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 8, (16,), generator=g)

    def one_epoch(flags: list[str]) -> tuple[torch.Tensor, int]:
        args = build_parser().parse_args(["student", "--out", "unused", "--batch-size", "8", "--quiet", *flags])
        torch.manual_seed(0)
        model = ModelSpec("shufflenetv2").build(dropout=0.0)
        passes = []
        model.register_forward_pre_hook(lambda _m, _inp: passes.append(1))
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        train_epoch(args, 0, model, opt, PreprocessSpec(32), x, y, F.one_hot(y, 8).float(), None, None, None, False)
        return model.fc.weight.detach().clone(), len(passes)

    plain, plain_passes = one_epoch([])
    sharp, sharp_passes = one_epoch(["--sam", "0.05"])
    assert (plain_passes, sharp_passes) == (2, 4)
    assert not torch.allclose(plain, sharp)


def test_the_cli_refuses_a_negative_radius():
    from training.train import build_parser, check_args

    args = build_parser().parse_args(["student", "--out", "unused", "--sam", "-0.1"])
    with pytest.raises(SystemExit, match="--sam"):
        check_args(args)
    with pytest.raises(ValueError, match="rho"):
        with sharpness_probe(nn.Linear(2, 2), 0.0):
            pass
