"""Regularisers of GAN training as objects a module is composed with (no Lightning).

- :class:`R1`, :class:`VarianceRegularizer`: the discriminator regulariser of phase ``Dreg``
  (``StyleGAN2ADA(regularizer=...)``).
- :class:`BalancedConsistency`: bCR, added to D's main loss (``StyleGAN2ADA(consistency=...)``).
- :mod:`~lightning_genaug.regularizers.functional`: their formulas as pure functions.
"""

from lightning_genaug.regularizers.consistency import BalancedConsistency
from lightning_genaug.regularizers.discriminator import R1, DiscriminatorRegularizer, VarianceRegularizer
from lightning_genaug.regularizers.functional import (
    consistency_penalty,
    output_variance,
    r1_penalty,
    variance_penalty,
)

__all__ = [
    "R1",
    "BalancedConsistency",
    "DiscriminatorRegularizer",
    "VarianceRegularizer",
    "consistency_penalty",
    "output_variance",
    "r1_penalty",
    "variance_penalty",
]
