"""Sharpness-aware minimization (Foret, Kleiner, Mobahi and Neyshabur, ICLR 2021).

SAM seeks weights whose whole neighbourhood has a low loss: flat minima, which are reported to
generalize better, also across domains (Cha et al., "SWAD", NeurIPS 2021, compare SAM on DomainBed).
Each step costs two passes:

    g   = grad L(w)                         (the caller's first backward pass)
    e   = rho * g / ||g||                   (the steepest ascent within a ball of radius rho)
    g'  = grad L(w + e)                     (the second pass, inside ``sharpness_probe``)
    w  <- optimizer step from w, with g'    (the probe moves the weights back before the step)

The second pass does not move BatchNorm's running statistics (momentum 0 while probing): they
keep describing the weights the step starts from, as with one pass.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def sharpness_probe(model: nn.Module, rho: float):
    """Move ``model``'s weights to w + rho * g / ||g|| (g: the gradients now in ``.grad``) for the
    duration of the block, then back. Inside the block, the caller computes the gradients at the
    moved weights; they are left in ``.grad`` for the optimizer's step."""
    if rho <= 0:
        raise ValueError(f"SAM's radius rho must be > 0, got {rho!r}")
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.norm(torch.stack([p.grad.detach().float().norm() for p in params])) if params else None
    steps = []
    with torch.no_grad():
        for p in params:
            e = p.grad * (rho / (norm + 1e-12))
            p.add_(e)
            steps.append(e)
    batchnorms = [(m, m.momentum, m.num_batches_tracked.clone()) for m in model.modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m, _, _ in batchnorms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum, tracked in batchnorms:
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
        with torch.no_grad():
            for p, e in zip(params, steps):
                p.sub_(e)
