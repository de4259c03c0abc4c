"""Discriminator regularisers as objects: what phase ``Dreg`` of a GAN module computes.

A regulariser is the one home of its weight ``gamma`` and its ``every_n_batches`` (lazy regularisation:
every ``every_n_batches`` batches, its loss multiplied by ``every_n_batches``, the unit every callback
of the package schedules in) and computes its loss,
``gamma / 2 * mean(penalty)`` (:meth:`~DiscriminatorRegularizer.loss`); the module only asks it for
the loss and for when it is due. The rule for the values: what is given to the regulariser wins; a
field left at ``None`` takes the model preset's value (``StyleGAN2Config.gamma`` or ``r1_interval``),
filled in once, when the module builds its networks (:meth:`~DiscriminatorRegularizer.fill_defaults`).

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
    """Base class: a weight, a lazy interval and a per-sample penalty of D on real images.

    Args:
        gamma: weight, ``>= 0`` (the loss is ``gamma / 2 * mean(penalty)``); ``None``: the preset's
            ``gamma``, filled in when the module builds its networks.
        every_n_batches: run every this many training batches (lazy regularisation, the loss then
            multiplied by ``every_n_batches``); ``None``: the preset's ``r1_interval``, filled in likewise.
    """

    log_name = "penalty"
    """The penalty is logged as ``loss/<log_name>``."""

    def __init__(self, gamma: float | None = None, every_n_batches: int | None = None) -> None:
        super().__init__()
        self.gamma = None if gamma is None else check_range("gamma", gamma, 0.0)
        self.every_n_batches = (
            None if every_n_batches is None else check_positive_int("every_n_batches", every_n_batches)
        )
        self.preset_fields: frozenset[str] = frozenset()
        """The fields :meth:`fill_defaults` took from a model preset; a value given here never is one."""

    def fill_defaults(self, gamma: float, every_n_batches: int) -> None:
        """Take ``gamma`` and ``every_n_batches`` (a model preset's) for the fields left at ``None``.

        The fields filled are recorded in :attr:`preset_fields`, so "taken from the preset" is known, not
        guessed from the values: ``R1(gamma=0.05)`` sets its gamma explicitly even when the preset's is
        0.05 as well.

        Example:
            >>> regularizer = R1(gamma=0.05)
            >>> regularizer.fill_defaults(gamma=0.05, every_n_batches=16)
            >>> regularizer.gamma, regularizer.every_n_batches, sorted(regularizer.preset_fields)
            (0.05, 16, ['every_n_batches'])
        """
        filled = set()
        if self.gamma is None:
            self.gamma = check_range("gamma", gamma, 0.0)
            filled.add("gamma")
        if self.every_n_batches is None:
            self.every_n_batches = check_positive_int("every_n_batches", every_n_batches)
            filled.add("every_n_batches")
        self.preset_fields = self.preset_fields | filled

    def is_due(self, batch_index: int) -> bool:
        """Whether it runs at the ``batch_index``-th batch (from 0): ``gamma > 0`` and on the interval."""
        gamma, every_n_batches = self._values()
        return gamma > 0 and batch_index % every_n_batches == 0

    def loss(
        self, discriminator: Discriminator, augment: Augment, real: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``gamma / 2 * mean(penalty)`` (before the lazy gain ``every_n_batches``) and the mean penalty.

        Args are :meth:`penalty`'s.

        Returns:
            ``(loss, mean_penalty)``, both 0-d.
        """
        gamma, _ = self._values()
        mean_penalty = self.penalty(discriminator, augment, real, labels).mean()
        return mean_penalty * (gamma / 2), mean_penalty

    def _values(self) -> tuple[float, int]:
        if self.gamma is None or self.every_n_batches is None:
            raise RuntimeError(
                f"{type(self).__name__} has gamma={self.gamma}, every_n_batches={self.every_n_batches}: give "
                "both, or let the module fill in its preset's (`fill_defaults`, when it builds its networks)."
            )
        return self.gamma, self.every_n_batches

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
        every_n_batches: lazy interval in training batches (``None``: the preset's ``r1_interval``).
        sigma: perturbation scale ``sigma`` (images in [-1, 1]), > 0.
        num_pairs: perturbation pairs per image (more pairs, a less noisy estimate).
    """

    log_name = "variance"

    def __init__(
        self,
        gamma: float | None = None,
        every_n_batches: int | None = None,
        sigma: float = 0.01,
        num_pairs: int = 1,
    ) -> None:
        super().__init__(gamma, every_n_batches)
        self.sigma = check_range("sigma", sigma, 0.0, low_inclusive=False)
        self.num_pairs = check_positive_int("num_pairs", num_pairs)

    def penalty(
        self, discriminator: Discriminator, augment: Augment, real: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad():
            seen = augment(real)
        return variance_penalty(discriminator, seen, labels, sigma=self.sigma, num_pairs=self.num_pairs)


__all__ = ["R1", "DiscriminatorRegularizer", "VarianceRegularizer"]
