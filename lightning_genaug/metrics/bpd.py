"""Bits per dimension (bits per sub-pixel), the likelihood models' metric.

``bpd = NLL_nats / (ln 2 * C * H * W)``: the negative log-likelihood of one image in nats,
converted to bits and divided by its number of sub-pixels (3072 for a 32x32 RGB image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lightning_genaug._checks import check_positive_int


def nats_to_bits_per_dim(nll_nats: torch.Tensor | float, num_dims: int) -> torch.Tensor:
    """Convert a total negative log-likelihood in nats to bits per dimension.

    ``bpd = nll_nats / (ln 2 * num_dims)``.

    Args:
        nll_nats: NLL of one image (or a tensor of per-image NLLs, any shape), in nats.
        num_dims: sub-pixels per image, ``C * H * W``.

    Returns:
        A tensor of the shape of ``nll_nats``.

    >>> round(float(nats_to_bits_per_dim(3072 * math.log(256), 3 * 32 * 32)), 6)
    8.0
    """
    check_positive_int("num_dims", num_dims)
    if not isinstance(nll_nats, torch.Tensor):
        nll_nats = torch.tensor(float(nll_nats), dtype=torch.float64)
    return nll_nats / (math.log(2) * num_dims)


def num_subpixels(image_shape: Sequence[int]) -> int:
    """``C * H * W`` of an image shape ``(C, H, W)``."""
    if len(image_shape) != 3:
        raise ValueError(f"`image_shape` must be (C, H, W), got {tuple(image_shape)}.")
    return math.prod(int(size) for size in image_shape)


def bits_per_dim_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-image bits per dimension of a categorical (autoregressive) model over sub-pixel values.

    ``bpd_b = sum_d CE(logits_{b,:,d}, targets_{b,d}) / (ln 2 * D)``, with ``D`` the number of
    sub-pixels per image.

    Args:
        logits: ``(B, K, *dims)`` unnormalised log-probabilities over ``K`` values (256 for 8-bit).
        targets: ``(B, *dims)`` int64 sub-pixel values in ``[0, K)``.

    Returns:
        ``(B,)`` bits per dimension of each image.

    >>> uniform, targets = torch.zeros(2, 256, 3, 4, 4), torch.zeros(2, 3, 4, 4, dtype=torch.long)
    >>> bits_per_dim_from_logits(uniform, targets).round(decimals=4).tolist()
    [8.0, 8.0]
    """
    if logits.ndim < 2 or logits.shape[0] != targets.shape[0] or logits.shape[2:] != targets.shape[1:]:
        raise ValueError(
            f"`logits` must be (B, K, *dims) and `targets` (B, *dims); got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}."
        )
    nll = F.cross_entropy(logits, targets, reduction="none").flatten(1).to(torch.float64).sum(dim=1)
    return nats_to_bits_per_dim(nll, targets[0].numel())
