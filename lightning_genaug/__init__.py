"""lightning-genaug: non-leaking augmentation for generative image models, as Lightning parts.

Public names are imported lazily so ``import lightning_genaug`` stays fast and pulls in no heavy
optional dependency (wandb, torch-fidelity) until a class that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

_EXPORTS: dict[str, str] = {
    "AugmentPipe": "lightning_genaug.augment.ada_pipe",
    "Chain": "lightning_genaug.augment.chain",
    "DistAugTransforms": "lightning_genaug.augment.distaug",
    "DataScaling": "lightning_genaug.augment.scaling",
    "DiffAugment": "lightning_genaug.augment.diffaug",
    "KorniaAugment": "lightning_genaug.augment.kornia",
    "PairedAugment": "lightning_genaug.augment.paired",
    "AdaptiveAugmentation": "lightning_genaug.callbacks.ada",
    "ScheduledAugmentation": "lightning_genaug.callbacks.scheduled_augmentation",
    "FixedAugmentation": "lightning_genaug.callbacks.augmentation_strength",
    "GenerativeMetrics": "lightning_genaug.callbacks.generative_metrics",
    "FID": "lightning_genaug.metrics.options",
    "KID": "lightning_genaug.metrics.options",
    "IS": "lightning_genaug.metrics.options",
    "PR": "lightning_genaug.metrics.options",
    "RealData": "lightning_genaug.metrics.options",
    "SampleGrid": "lightning_genaug.callbacks.samples",
    "KimgCheckpoint": "lightning_genaug.callbacks.checkpoints",
    "BestMetricCheckpoint": "lightning_genaug.callbacks.checkpoints",
    "R1": "lightning_genaug.regularizers.discriminator",
    "VarianceRegularizer": "lightning_genaug.regularizers.discriminator",
    "BalancedConsistency": "lightning_genaug.regularizers.consistency",
    "StyleGAN2ADA": "lightning_genaug.models.stylegan2",
    "SparseTransformerDistAug": "lightning_genaug.models.sparse_transformer",
    "ScaleGAN": "lightning_genaug.models.scalegan",
    "PredictOptions": "lightning_genaug.models.predict",
    "ImageDataModule": "lightning_genaug.data",
    "DigitsDataModule": "lightning_genaug.data",
    "CIFAR10DataModule": "lightning_genaug.data",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from lightning_genaug.augment.ada_pipe import AugmentPipe
    from lightning_genaug.augment.chain import Chain
    from lightning_genaug.augment.diffaug import DiffAugment
    from lightning_genaug.augment.distaug import DistAugTransforms
    from lightning_genaug.augment.kornia import KorniaAugment
    from lightning_genaug.augment.paired import PairedAugment
    from lightning_genaug.augment.scaling import DataScaling
    from lightning_genaug.callbacks.ada import AdaptiveAugmentation
    from lightning_genaug.callbacks.augmentation_strength import FixedAugmentation
    from lightning_genaug.callbacks.checkpoints import BestMetricCheckpoint, KimgCheckpoint
    from lightning_genaug.callbacks.generative_metrics import GenerativeMetrics
    from lightning_genaug.callbacks.samples import SampleGrid
    from lightning_genaug.callbacks.scheduled_augmentation import ScheduledAugmentation
    from lightning_genaug.data import CIFAR10DataModule, DigitsDataModule, ImageDataModule
    from lightning_genaug.metrics.options import FID, IS, KID, PR, RealData
    from lightning_genaug.models.predict import PredictOptions
    from lightning_genaug.models.scalegan import ScaleGAN
    from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug
    from lightning_genaug.models.stylegan2 import StyleGAN2ADA
    from lightning_genaug.regularizers.consistency import BalancedConsistency
    from lightning_genaug.regularizers.discriminator import R1, VarianceRegularizer


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lightning_genaug' has no attribute {name!r}")
