"""``Chain``: augmentations applied one after the other, exposing one strength ``p`` (ADA protocol)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_genaug.augment.protocol import AugmentationStrength, DelegatedStrength


class Chain(DelegatedStrength, nn.Module):
    """Apply ``augmentations`` in order; the first one's ``p`` is the chain's ``p``.

    A controller (``AdaptiveAugmentation``) adapts the chain through its ``p``, :meth:`observe` and
    :meth:`pop_stats`, which are the first augmentation's: the others keep their own strength. Scale-GAN
    with ADA is ``Chain([AugmentPipe(), DataScaling()])``: ADA's ``p`` adapts, the scaling keeps its ``p``.

    Args:
        augmentations: ``nn.Module`` s called as ``aug(images, generator=...)``, mapping
            ``(B, C, H, W)`` to ``(B, C, H, W)``; the first implements the ADA protocol (a 0-d ``p``
            buffer, ``observe``, ``pop_stats``).

    Example:
        >>> from lightning_genaug.augment import AugmentPipe, DataScaling
        >>> chain = Chain([AugmentPipe(p=0.2), DataScaling("fixed", p=1.0, scale=0.5)])
        >>> float(chain.p), chain(torch.zeros(2, 1, 8, 8)).shape
        (0.20000000298023224, torch.Size([2, 1, 8, 8]))
    """

    def __init__(self, augmentations: Sequence[nn.Module]) -> None:
        super().__init__()
        augmentations = list(augmentations)
        if not augmentations:
            raise ValueError("`augmentations` is empty; give at least one augmentation module.")
        for index, augmentation in enumerate(augmentations):
            if not isinstance(augmentation, nn.Module):
                raise TypeError(
                    f"`augmentations[{index}]` must be an nn.Module, got {type(augmentation).__name__}."
                )
        if not isinstance(augmentations[0], AugmentationStrength):
            raise TypeError(
                f"`augmentations[0]` ({type(augmentations[0]).__name__}) gives the chain its strength "
                "and must implement the ADA protocol (a `p` buffer, `observe()`, `pop_stats()`), e.g. "
                "AugmentPipe, "
                "DiffAugment or DataScaling."
            )
        self.augmentations = nn.ModuleList(augmentations)

    def strength_owner(self) -> nn.Module:
        """The first augmentation: its ``p``, ``observe`` and ``pop_stats`` are the chain's."""
        return self.augmentations[0]

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` through every augmentation in order, each drawing from ``generator``."""
        for augmentation in self.augmentations:
            images = augmentation(images, generator=generator)
        return images


__all__ = ["Chain"]
