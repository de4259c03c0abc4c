"""The EMA generator ``G_ema``: its decay from a half-life in images, and the update itself.

Sampling, metrics and export use ``G_ema``, an exponential moving average of ``G``'s weights (Karras
et al. 2018); its buffers (noise maps, ``w_avg``) are copied from ``G``, as in the reference.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, cur_nimg: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Decay of the EMA generator for one minibatch, from a half-life in images.

    ``beta = 0.5 ** (batch_size / ema_nimg)`` with ``ema_nimg = ema_kimg * 1000``, shortened to
    ``cur_nimg * ema_rampup`` early in training when a ramp-up is set: after ``ema_nimg`` images the
    weight of an old generator in the average has halved.

    Args:
        batch_size: images in the (global) minibatch.
        cur_nimg: images shown to D before this minibatch.
        ema_kimg: half-life in thousands of images.
        ema_rampup: ramp-up ratio, or ``None`` for no ramp-up.

    Returns:
        ``beta`` in [0, 1): the weight of the previous EMA weights.

    >>> ema_beta(batch_size=10, cur_nimg=10**6, ema_kimg=0.01, ema_rampup=None)
    0.5
    >>> ema_beta(batch_size=64, cur_nimg=0, ema_kimg=500, ema_rampup=0.05)  # first step copies G
    0.0
    """
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: nn.Module, source: nn.Module, beta: float) -> None:
    """Move ``ema`` towards ``source`` in place: ``w_ema <- beta w_ema + (1 - beta) w``, buffers copied.

    Both modules must have the same architecture (``ema`` is a deep copy of ``source``).

    >>> source, ema = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    >>> _ = source.weight.data.fill_(1.0), ema.weight.data.fill_(0.0)
    >>> update_ema(ema, source, beta=0.75)
    >>> ema.weight.item()
    0.25
    """
    ema_params = list(ema.parameters())
    torch._foreach_lerp_(ema_params, [p.detach() for p in source.parameters()], 1.0 - beta)
    for ema_buffer, buffer in zip(ema.buffers(), source.buffers(), strict=True):
        ema_buffer.copy_(buffer)
