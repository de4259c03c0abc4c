"""Lightning callbacks: the ADA controller, sample grids and generative metrics.

Every callback schedules in training batches (``every_n_batches``).
"""

from lightning_genaug.callbacks.ada import AdaptiveAugmentation, next_p
from lightning_genaug.callbacks.generative_metrics import GenerativeMetrics
from lightning_genaug.callbacks.samples import SampleGrid

__all__ = ["AdaptiveAugmentation", "GenerativeMetrics", "SampleGrid", "next_p"]
