"""Augmentations as plain ``nn.Module`` s (no Lightning): what D sees, and DistAug's transforms.

- :class:`AugmentPipe`: StyleGAN2-ADA's 18 transforms with one adaptable strength ``p``.
- :class:`DiffAugment`: DiffAugment's colour/translation/cutout policy (a baseline).
- :class:`DataScaling`: Scale-GAN's data scaling.
- :class:`KorniaAugment`: kornia augmentations gated by the same adaptable strength ``p``.
- :class:`Chain`: several of them in order, exposing the first one's ``p``.
- :class:`PairedAugment`: one ``AugmentPipe`` draw for a (condition, image) pair (paired D's).
- :class:`DistAugTransforms`: Distribution Augmentation's transforms for likelihood models.
"""

from lightning_genaug.augment.ada_pipe import AugmentPipe
from lightning_genaug.augment.chain import Chain
from lightning_genaug.augment.diffaug import DiffAugment
from lightning_genaug.augment.distaug import DistAugTransforms
from lightning_genaug.augment.kornia import KorniaAugment
from lightning_genaug.augment.paired import PairedAugment
from lightning_genaug.augment.protocol import AugmentationStrength, ParametricAugmentation, SignAccumulator
from lightning_genaug.augment.scaling import DataScaling

__all__ = [
    "AugmentPipe",
    "AugmentationStrength",
    "Chain",
    "DataScaling",
    "DiffAugment",
    "DistAugTransforms",
    "KorniaAugment",
    "PairedAugment",
    "ParametricAugmentation",
    "SignAccumulator",
]
