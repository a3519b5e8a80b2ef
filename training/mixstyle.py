"""MixStyle: mix the feature statistics of two faces in a batch, for robustness to domain shift.

MixStyle (Zhou, Yang, Qiao and Xiang, "Domain Generalization with MixStyle", ICLR 2021) treats
the per-channel mean and standard deviation of an early feature map as a face's "style": lighting,
contrast, film grain and tone, which differ between FERPlus's webcam faces and SFEW's film stills.
In training, after each chosen stage and with probability ``p`` per batch, every face's features
are re-normalized to a mix of its own statistics and another face's:

    mu, sigma = mean and std of x over H x W (per face, per channel; no gradient through them)
    x' = (x - mu) / sigma * (lam sigma + (1 - lam) sigma[perm]) + (lam mu + (1 - lam) mu[perm])

with lam ~ Beta(alpha, alpha) per face and perm a random pairing within the batch. The content
(where the features are) is kept; only its statistics change, so the labels and the teacher's
answers on the unmixed image still hold.

It is a forward hook, so the network, its parameters and its exports are unchanged; in eval mode
it does nothing.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# The early stages of each architecture: style lives in low-level features, and mixing the
# late ones would change what the face shows (the paper mixes after ResNet's first two stages).
EARLY_STAGES = {"shufflenetv2": ("stage2", "stage3"), "effresnet18": ("layer1", "layer2")}


class MixStyle:
    """The hook; ``attach`` puts it after the early stages, ``reseed`` makes an epoch's draws
    repeatable (a resumed run mixes as the uninterrupted one did)."""

    def __init__(self, p: float, alpha: float = 0.1, eps: float = 1e-6):
        if not 0.0 < p <= 1.0:
            raise ValueError(f"MixStyle probability must be in (0, 1], got {p!r}")
        if alpha <= 0:
            raise ValueError(f"MixStyle alpha must be > 0, got {alpha!r}")
        self.p, self.alpha, self.eps = p, alpha, eps
        self.rng = np.random.default_rng(0)

    def reseed(self, *seed: int) -> None:
        self.rng = np.random.default_rng(list(seed))

    def attach(self, model: nn.Module, arch: str) -> list:
        if arch not in EARLY_STAGES:
            raise ValueError(f"MixStyle has no stage list for {arch!r}; known: {sorted(EARLY_STAGES)}")
        return [model.get_submodule(name).register_forward_hook(self.hook) for name in EARLY_STAGES[arch]]

    def hook(self, module: nn.Module, _inputs, x: torch.Tensor) -> torch.Tensor | None:
        if not module.training or self.rng.random() >= self.p or len(x) < 2:
            return None  # the stage's output as it is
        return self.mix(x)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        features = x.float()  # statistics in fp32 also under bf16 autocast (--amp)
        lam = torch.from_numpy(self.rng.beta(self.alpha, self.alpha, size=(n, 1, 1, 1))).to(features)
        perm = torch.from_numpy(self.rng.permutation(n)).to(x.device)
        mu = features.mean((2, 3), keepdim=True).detach()
        sigma = (features.var((2, 3), keepdim=True) + self.eps).sqrt().detach()
        normed = (features - mu) / sigma
        mixed = normed * (lam * sigma + (1 - lam) * sigma[perm]) + (lam * mu + (1 - lam) * mu[perm])
        return mixed.to(x.dtype)
