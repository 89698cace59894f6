"""An exponential moving average of a network's weights (Polyak averaging, as in progressive GANs, StyleGAN and
the GAN literature since): a copy of the generator whose weights trail the trained ones, smoother than any one
step's. Trainers keep the copy beside the network (``training.method_base.Method.keep_averages``), checkpoint it
like any network, and sample, validate and export it instead of the raw weights."""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["averaged_copy", "decay_at", "ema_update"]


def averaged_copy(net: nn.Module) -> nn.Module:
    """The average's starting point: a frozen copy of ``net`` (same weights, buffers and memory layout)."""
    return copy.deepcopy(net).requires_grad_(False)


def decay_at(decay: float, num_updates: int | None) -> float:
    """The decay of the update that follows ``num_updates`` updates: ``min(decay, (1 + n) / (10 + n))``, a short
    memory early on so the average does not drag the initial weights along (TensorFlow's ExponentialMovingAverage
    rule); ``decay`` itself when ``num_updates`` is None."""
    if num_updates is None:
        return decay
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


def ema_update(ema: nn.Module, net: nn.Module, decay: float, num_updates: int | None = None,
               average_buffers: bool = True) -> None:
    """``ema <- d * ema + (1 - d) * net`` for the parameters, ``d`` from :func:`decay_at`.

    Floating-point buffers (batch norm's running statistics) are averaged the same way with
    ``average_buffers``, or copied from ``net`` without; other buffers (batch counters) are copied."""
    d = decay_at(decay, num_updates)
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters(), strict=True):
            pe.lerp_(p.detach(), 1.0 - d)
        for be, b in zip(ema.buffers(), net.buffers(), strict=True):
            if average_buffers and be.is_floating_point():
                be.lerp_(b, 1.0 - d)
            else:
                be.copy_(b)
