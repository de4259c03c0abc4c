"""Discriminator regularisers as objects: what phase ``Dreg`` of a GAN module computes.

A regulariser has a weight ``gamma`` and an ``interval`` (lazy regularisation: every ``interval``
batches, its loss multiplied by ``interval``) and a per-sample :meth:`~DiscriminatorRegularizer.penalty`;
the loss is ``gamma / 2 * mean(penalty)``. ``gamma`` or ``interval`` left at ``None`` take the
model preset's values (``StyleGAN2Config.gamma`` and ``r1_interval``).

- :class:`R1` (Mescheder et al. 2018): ``||grad_x D(A(x))||^2`` on un-augmented reals, the gradient taken
  through the augmentation ``A``, as in StyleGAN2-ADA.
- :class:`VarianceRegularizer` (our Scale-GAN design, see ``docs/scalegan.md``):
  ``Var_e D(x' + sigma e) / sigma^2`` with ``x'`` the reals as D sees them, a finite-difference estimate
  of the same squared gradient norm that needs no double back-propagation.

Pass ``regularizer=None`` to a module for no D regulariser.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lightning_genaug._checks import check_positive_int, check_range
from lightning_genaug.regularizers.functional import r1_penalty, variance_penalty

Discriminator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Augment = Callable[[torch.Tensor], torch.Tensor]


class DiscriminatorRegularizer(nn.Module):
    """Base class: a weight, an interval and a per-sample penalty of D on real images.

    Args:
        gamma: weight, ``>= 0`` (the loss is ``gamma / 2 * mean(penalty)``); ``None``: the preset's.
        interval: run every this many batches (lazy regularisation); ``None``: the preset's.
    """

    log_name = "penalty"
    """The penalty is logged as ``loss/<log_name>``."""

    def __init__(self, gamma: float | None = None, interval: int | None = None) -> None:
        super().__init__()
        self.gamma = None if gamma is None else check_range("gamma", gamma, 0.0)
        self.interval = None if interval is None else check_positive_int("interval", interval)

    def penalty(
        self, discriminator: Discriminator, augment: Augment, real: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Per-sample penalty ``(B,)``.

        Args:
            discriminator: ``D(images, labels) -> logits (B, 1)`` on images as given (no augmentation).
            augment: what D sees of an image: the module's augmentation ``A`` (``(B, C, H, W)`` in and out).
            real: un-augmented real images ``(B, C, H, W)``.
            labels: D's conditioning ``(B, c_dim)``.
        """
        raise NotImplementedError


class R1(DiscriminatorRegularizer):
    """R1: ``gamma / 2 * ||grad_x D(A(x))||^2`` on real images (StyleGAN2's D regulariser).

    The gradient is taken w.r.t. the *un-augmented* reals ``x``, through the augmentation, as in the
    StyleGAN2-ADA reference.

    Example:
        >>> w = torch.randn(1, 1, 4, 4)
        >>> linear_d = lambda x, c: (x * w).sum(dim=(1, 2, 3))
        >>> penalty = R1().penalty(linear_d, lambda x: x, torch.zeros(2, 1, 4, 4), torch.zeros(2, 0))
        >>> bool(torch.allclose(penalty, w.square().sum()))
        True
    """

    log_name = "r1"

    def penalty(
        self, discriminator: Discriminator, augment: Augment, real: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        real = real.detach().requires_grad_(True)
        return r1_penalty(real, discriminator(augment(real), labels))


class VarianceRegularizer(DiscriminatorRegularizer):
    """Variance regulariser: ``gamma / 2 * Var_e D(x' + sigma e) / sigma^2`` on reals as D sees them.

    ``x' = A(x)`` is drawn once (no gradient) and shared by the perturbed copies, so the variance
    measures D's sensitivity to the perturbation only; see
    :func:`lightning_genaug.regularizers.functional.variance_penalty`.

    Args:
        gamma: weight (``None``: the preset's R1 weight, so the two are swappable).
        interval: lazy interval (``None``: the preset's ``r1_interval``).
        sigma: perturbation scale ``sigma`` (images in [-1, 1]), > 0.
        num_pairs: perturbation pairs per image (more pairs, a less noisy estimate).
    """

    log_name = "variance"

    def __init__(
        self, gamma: float | None = None, interval: int | None = None, sigma: float = 0.01, num_pairs: int = 1
    ) -> None:
        super().__init__(gamma, interval)
        self.sigma = check_range("sigma", sigma, 0.0, low_inclusive=False)
        self.num_pairs = check_positive_int("num_pairs", num_pairs)

    def penalty(
        self, discriminator: Discriminator, augment: Augment, real: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad():
            seen = augment(real)
        return variance_penalty(discriminator, seen, labels, sigma=self.sigma, num_pairs=self.num_pairs)


__all__ = ["R1", "DiscriminatorRegularizer", "VarianceRegularizer"]
