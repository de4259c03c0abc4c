"""Lightning callbacks: augmentation strength, sample grids, generative metrics, checkpoints in kimg.

Every callback schedules in training batches (``every_n_batches``), the unit of the D regularisers'
lazy interval too (``R1(every_n_batches=...)``; ``KimgCheckpoint`` also in thousands of images), and
reads the run's batches and images from the Trainer's one :class:`TrainingProgress`
(:func:`training_progress`); each keeps only when it last acted.
"""

from lightning_genaug.callbacks._progress import TrainingProgress, training_progress
from lightning_genaug.callbacks.ada import AdaptiveAugmentation, next_p
from lightning_genaug.callbacks.augmentation_strength import (
    BaseAugmentationStrength,
    FixedAugmentation,
    StrengthReading,
)
from lightning_genaug.callbacks.checkpoints import BestMetricCheckpoint, KimgCheckpoint
from lightning_genaug.callbacks.generative_metrics import GenerativeMetrics
from lightning_genaug.callbacks.progress_bar import KimgProgressBar
from lightning_genaug.callbacks.samples import SampleGrid
from lightning_genaug.callbacks.scheduled_augmentation import ScheduledAugmentation, scheduled_p

__all__ = [
    "AdaptiveAugmentation",
    "BaseAugmentationStrength",
    "BestMetricCheckpoint",
    "FixedAugmentation",
    "GenerativeMetrics",
    "KimgCheckpoint",
    "KimgProgressBar",
    "SampleGrid",
    "ScheduledAugmentation",
    "StrengthReading",
    "TrainingProgress",
    "next_p",
    "scheduled_p",
    "training_progress",
]
