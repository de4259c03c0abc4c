"""Balanced consistency regularisation (bCR, Zhao et al. 2021) as an object.

``w_real * ||D(x) - D(T(x))||^2 + w_fake * ||D(G(z)) - D(T(G(z)))||^2``, added to D's main loss, with
``T`` a fixed transform applied at full strength (x-flip and integer translation by default, as in the
bCR and ADA papers' comparison).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lightning_genaug._checks import check_range
from lightning_genaug.regularizers.functional import consistency_penalty


def default_bcr_transform() -> nn.Module:
    """bCR's ``T`` in the ADA paper's comparison: x-flip and integer translation (up to 1/8), ``p = 1``."""
    from lightning_genaug.augment.ada_pipe import AugmentPipe

    return AugmentPipe(preset=None, p=1.0, xflip=1.0, xint=1.0)


class BalancedConsistency(nn.Module):
    """bCR: ``w_real ||D(x) - D(T(x))||^2 + w_fake ||D(G(z)) - D(T(G(z)))||^2``.

    Args:
        weight_real: weight on real images, ``>= 0``.
        weight_fake: weight on generated images, ``>= 0``.
        transform: ``T`` (an ``nn.Module`` mapping ``(B, C, H, W)`` to ``(B, C, H, W)``), applied as is;
            ``None``: x-flip and integer translation at ``p = 1``.

    Example:
        >>> bcr = BalancedConsistency(weight_real=10.0, weight_fake=0.0)
        >>> d = lambda x, c: x.mean(dim=(1, 2, 3)).unsqueeze(1)
        >>> x = torch.zeros(4, 1, 8, 8)
        >>> float(bcr(d, x, None, d(x, None), x, None, d(x, None)))  # T(0) = 0: consistent
        0.0
    """

    def __init__(
        self, weight_real: float = 10.0, weight_fake: float = 10.0, transform: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.weight_real = check_range("weight_real", weight_real, 0.0)
        self.weight_fake = check_range("weight_fake", weight_fake, 0.0)
        if weight_real == 0 and weight_fake == 0:
            raise ValueError(
                "BalancedConsistency got `weight_real=0` and `weight_fake=0`, which adds nothing; give a "
                "positive weight, or pass `consistency=None` to the module."
            )
        self.transform = default_bcr_transform() if transform is None else transform

    def forward(
        self,
        discriminator: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor],
        real: torch.Tensor,
        real_c: torch.Tensor | None,
        real_logits: torch.Tensor,
        fake: torch.Tensor,
        gen_c: torch.Tensor | None,
        fake_logits: torch.Tensor,
    ) -> torch.Tensor:
        """The 0-d consistency loss.

        Args:
            discriminator: ``D(images, c) -> logits (B, 1)`` as the module runs it (augmentation included).
            real, fake: ``(B, C, H, W)`` images; ``real_c``, ``gen_c``: their conditioning.
            real_logits, fake_logits: ``(B, 1)`` D's logits for ``real`` and ``fake`` (same pass as the loss).
        """
        total = real_logits.new_zeros(())
        for weight, images, c, logits in (
            (self.weight_real, real, real_c, real_logits),
            (self.weight_fake, fake, gen_c, fake_logits),
        ):
            if weight > 0:
                transformed = discriminator(self.transform(images), c).float()
                total = total + weight * consistency_penalty(logits, transformed)
        return total


__all__ = ["BalancedConsistency", "default_bcr_transform"]
