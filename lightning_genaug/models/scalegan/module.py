"""``ScaleGAN``: a name for ``StyleGAN2ADA`` composed with Scale-GAN's parts.

Scale-GAN (arXiv 2410.20780) scales real *and* generated images by a random factor before the
discriminator and regularises D by the variance of its output instead of a gradient penalty. Both are
parts any ``StyleGAN2ADA`` takes:

- what D sees: ``augment=DataScaling(...)`` (:class:`~lightning_genaug.augment.DataScaling`), or
  ``augment=Chain([AugmentPipe(), DataScaling()])`` for ADA's pipe followed by the scaling;
- D's regulariser: ``regularizer=VarianceRegularizer(...)``
  (:class:`~lightning_genaug.regularizers.VarianceRegularizer`), ``R1()``, or ``None``.

:class:`ScaleGAN` only changes the two defaults, for users who want the name; the example configs
(``examples/configs/scalegan*.yaml``) use it and still spell the two parts out, so that an ablation is a
command-line override of one of them.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from lightning_genaug._lazy_defaults import lazy_default
from lightning_genaug.augment.scaling import DataScaling
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.regularizers import DiscriminatorRegularizer, VarianceRegularizer

SCALEGAN_AUGMENT: nn.Module = lazy_default(DataScaling, schedule="uniform", p=0.5)
"""The default ``augment`` of :class:`ScaleGAN`: uniform data scaling, ``p = 0.5`` (fresh per module)."""

SCALEGAN_REGULARIZER: DiscriminatorRegularizer = lazy_default(VarianceRegularizer)
"""The default ``regularizer`` of :class:`ScaleGAN`: the variance regulariser with the preset's weight."""


class ScaleGAN(StyleGAN2ADA):
    """``StyleGAN2ADA`` whose ``augment`` and ``regularizer`` default to Scale-GAN's parts.

    ``ScaleGAN(**kwargs)`` is ``StyleGAN2ADA(augment=DataScaling("uniform", p=0.5),
    regularizer=VarianceRegularizer(), **kwargs)``; nothing else differs.

    Args:
        augment: what D sees (default: ``DataScaling("uniform", p=0.5)``, adapted by
            ``AdaptiveAugmentation``).
        regularizer: D's regulariser (default: ``VarianceRegularizer()``).
        **kwargs: the other ``StyleGAN2ADA`` arguments.

    Example:
        >>> model = ScaleGAN(config="tiny", resolution=8, channels=1, num_classes=0)
        >>> type(model.augment_pipe).__name__, type(model.regularizer).__name__
        ('DataScaling', 'VarianceRegularizer')
    """

    def __init__(
        self,
        augment: nn.Module | None = SCALEGAN_AUGMENT,
        regularizer: DiscriminatorRegularizer | None = SCALEGAN_REGULARIZER,
        **kwargs: Any,
    ) -> None:
        if augment is SCALEGAN_AUGMENT:
            augment = DataScaling(schedule="uniform", p=0.5)
        if regularizer is SCALEGAN_REGULARIZER:
            regularizer = VarianceRegularizer()
        super().__init__(augment=augment, regularizer=regularizer, **kwargs)
