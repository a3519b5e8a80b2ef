"""MixStyle (train --mixstyle P): feature statistics mixed between paired faces in training only."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training.mixstyle import EARLY_STAGES, MixStyle  # noqa: E402
from training.models import ModelSpec  # noqa: E402


def _features(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.rand(n, 4, 1, 1, generator=g) * 3 + 0.5  # each face and channel its own style
    shift = torch.randn(n, 4, 1, 1, generator=g) * 2
    return torch.randn(n, 4, 5, 7, generator=g) * scale + shift


def test_mixed_statistics_are_the_drawn_mix_of_the_pair():
    x = _features()
    mixer = MixStyle(1.0, alpha=0.3)
    mixer.reseed(4)
    out = mixer.mix(x)
    rng = np.random.default_rng([4])  # the same draws, by hand
    lam = torch.from_numpy(rng.beta(0.3, 0.3, size=(6, 1, 1, 1))).float()
    perm = torch.from_numpy(rng.permutation(6))
    mu, sigma = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True)
    torch.testing.assert_close(out.mean((2, 3), keepdim=True), lam * mu + (1 - lam) * mu[perm], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((2, 3), keepdim=True), lam * sigma + (1 - lam) * sigma[perm],
                               atol=1e-4, rtol=1e-4)
    # the content is kept: each face's normalized map is unchanged
    normed = (x - mu) / sigma
    torch.testing.assert_close((out - out.mean((2, 3), keepdim=True)) / out.std((2, 3), keepdim=True), normed,
                               atol=1e-4, rtol=1e-4)
    assert not torch.allclose(out, x, atol=1e-3)


def test_faces_of_one_style_are_left_as_they_are():
    g = torch.Generator().manual_seed(2)
    content = torch.randn(6, 3, 4, 4, generator=g)
    content = (content - content.mean((2, 3), keepdim=True)) / content.std((2, 3), keepdim=True)
    x = content * 2.5 + 0.7  # the same mean and spread for every face
    torch.testing.assert_close(MixStyle(1.0).mix(x), x, atol=1e-4, rtol=1e-4)


def test_no_gradient_flows_through_the_statistics():
    x = _features().requires_grad_()
    weights = torch.rand(x.shape, generator=torch.Generator().manual_seed(3)) + 0.5
    mixer = MixStyle(1.0)
    mixer.reseed(0)
    (mixer.mix(x) * weights).sum().backward()
    # with the statistics detached, d out / d x = mixed sigma / own sigma, the same over each map
    ratio = x.grad / weights
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))
    assert not torch.allclose(ratio, torch.ones_like(ratio))


@pytest.mark.parametrize("arch", sorted(EARLY_STAGES))
def test_the_hooks_act_in_training_only_and_leave_the_network_unchanged(arch):
    torch.manual_seed(0)
    model = ModelSpec(arch).build(dropout=0.0)
    plain = ModelSpec(arch).build(dropout=0.0)
    plain.load_state_dict(model.state_dict())
    MixStyle(1.0).attach(model, arch)
    assert model.state_dict().keys() == plain.state_dict().keys()  # exports are unchanged
    x = torch.randn(4, 1, 32, 32)
    model.eval(), plain.eval()
    torch.testing.assert_close(model(x), plain(x))
    model.train(), plain.train()
    assert not torch.allclose(model(x), plain(x), atol=1e-4)


def test_the_probability_and_the_seed_decide_which_batches_are_mixed():
    model = ModelSpec("shufflenetv2").build(dropout=0.0).train()
    mixer = MixStyle(0.5)
    mixer.attach(model, "shufflenetv2")
    x = torch.randn(4, 1, 32, 32)
    calls = []
    real_mix = mixer.mix
    mixer.mix = lambda f: calls.append(len(f)) or real_mix(f)
    mixer.reseed(1, 2)
    first = [model(x).detach() for _ in range(40)]
    assert 20 <= len(calls) <= 60  # two stages a pass, each mixed about half the time
    count = len(calls)
    mixer.reseed(1, 2)
    again = [model(x).detach() for _ in range(40)]
    assert len(calls) == 2 * count  # the same draws after the same seed
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        model(x[:1])  # a batch of one has no partner: left alone
    assert len(calls) == 2 * count


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="probability"):
        MixStyle(0.0)
    with pytest.raises(ValueError, match="alpha"):
        MixStyle(0.5, alpha=0)
    with pytest.raises(ValueError, match="faceresnet"):
        MixStyle(0.5).attach(ModelSpec("shufflenetv2").build(), "faceresnet")


@pytest.mark.parametrize("flags, message", [(["--mixstyle", "1.5"], "--mixstyle"),
                                            (["--mixstyle", "0.5", "--mixstyle-alpha", "0"], "--mixstyle")])
def test_the_cli_refuses_bad_mixstyle_flags(flags, message):
    from training.train import build_parser, check_args

    args = build_parser().parse_args(["distill", "--out", "unused", "--teacher", "t.pt", *flags])
    with pytest.raises(SystemExit, match=message):
        check_args(args)


def test_an_epoch_with_mixstyle_is_repeatable_and_differs_from_one_without():
    """train_epoch reseeds MixStyle by epoch, so a resumed run trains as the uninterrupted one."""
    import torch.nn.functional as F

    from pyfer.preprocess import PreprocessSpec
    from training.train import build_parser, train_epoch

    args = build_parser().parse_args(["student", "--out", "unused", "--batch-size", "8", "--quiet", "--mixstyle", "1"])
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (16, 1, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 8, (16,), generator=g)

    def one_epoch(mixstyle: MixStyle | None) -> torch.Tensor:
        torch.manual_seed(0)
        model = ModelSpec("shufflenetv2").build(dropout=0.0)
        if mixstyle is not None:
            mixstyle.attach(model, "shufflenetv2")
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        train_epoch(args, 3, model, opt, PreprocessSpec(32), x, y, F.one_hot(y, 8).float(), None, None, None, False,
                    mixstyle=mixstyle)
        return model.fc.weight.detach().clone()

    mixstyle = MixStyle(1.0)
    mixed = one_epoch(mixstyle)
    torch.testing.assert_close(one_epoch(mixstyle), mixed)  # its draws went on, but the epoch reseeds them
    assert not torch.allclose(one_epoch(None), mixed)


def test_bf16_features_are_mixed_with_fp32_statistics_and_stay_bf16():
    x = _features()
    exact, low = MixStyle(1.0), MixStyle(1.0)
    exact.reseed(5), low.reseed(5)
    out = low.mix(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), exact.mix(x.bfloat16().float()), atol=0.05, rtol=0.01)
