"""What :class:`~lightning_genaug.callbacks.GenerativeMetrics` evaluates, and against which real images.

Each metric's own options live in a small object of that metric (:class:`FID`, :class:`KID`,
:class:`IS`, :class:`PR`); the real images, their number and where their statistics are cached live
in one :class:`RealData`. A config names them with ``class_path``/``init_args`` like any other part,
and the strings ``"fid"``, ``"kid"``, ``"is"``, ``"pr"`` stand for the objects with their defaults.
Each object builds its torchmetric (:mod:`lightning_genaug.metrics.image_metrics`) against the real
statistics at every evaluation. No Lightning.

Example:
    >>> metric_options(["fid", KID(subsets=50, subset_size=500)])
    (FID(), KID(subsets=50, subset_size=500))
    >>> RealData(num_images=5000).num_images
    5000
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from lightning_utilities.core.rank_zero import rank_zero_warn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric

from lightning_genaug._checks import check_positive_int
from lightning_genaug.metrics.cache import RealStatistics, RealStatisticsCache, default_cache_dir
from lightning_genaug.metrics.image_metrics import (
    FrechetInceptionDistance,
    InceptionScore,
    KernelInceptionDistance,
    PrecisionRecall,
)


class MetricOption:
    """One metric of :class:`~lightning_genaug.callbacks.GenerativeMetrics` with its options.

    Subclasses set :attr:`name` (the string that stands for them), :attr:`logged` (the value names
    their torchmetric's ``compute`` returns, logged as ``metrics/<value>``) and implement
    :meth:`build`.
    """

    name: ClassVar[str]
    logged: ClassVar[tuple[str, ...]]
    needs_real_features: ClassVar[bool] = False
    """Whether the metric compares individual real features (not only their mean and covariance)."""
    reads_logits: ClassVar[bool] = False
    """Whether the metric is fed the extractor's class logits instead of its features."""

    def _options(self) -> dict[str, Any]:
        """The options, as set in ``__init__`` (the object holds nothing else)."""
        return dict(vars(self))

    def check(self, num_gen: int) -> None:
        """Raise a ``ValueError`` naming the fix when ``num_gen`` generated images cannot be evaluated."""

    def build(self, reference: RealStatistics, num_gen: int, seed: int) -> Metric:
        """The torchmetric, fed features ``(N, D)`` (logits for :class:`IS`), with ``reference`` as real data.

        Args:
            reference: the real statistics (with features when :attr:`needs_real_features`).
            num_gen: generated images per evaluation.
            seed: the evaluation's seed (KID's subsets).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self._options().items())
        return f"{type(self).__name__}({options})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._options() == self._options()

    def __hash__(self) -> int:
        return hash((type(self), tuple(self._options().items())))


class FID(MetricOption):
    """Fréchet Inception Distance (logged as ``metrics/fid``); no options.

    >>> FID().logged
    ('fid',)
    """

    name = "fid"
    logged = ("fid",)

    def build(self, reference: RealStatistics, num_gen: int, seed: int) -> Metric:
        return FrechetInceptionDistance(None, num_features=reference.mu.shape[0], reference=reference)


class KID(MetricOption):
    """Kernel Inception Distance over random subsets (``metrics/kid`` and ``metrics/kid_std``).

    Args:
        subsets: number of random subsets.
        subset_size: images per subset; lowered to the real and generated images available, with a
            warning (so the default suits 50k-image evaluations and small ones alike).

    >>> KID(subsets=50).subset_size
    1000
    """

    name = "kid"
    logged = ("kid", "kid_std")
    needs_real_features = True

    def __init__(self, subsets: int = 100, subset_size: int = 1000) -> None:
        self.subsets = check_positive_int("subsets", subsets)
        self.subset_size = check_positive_int("subset_size", subset_size)

    def build(self, reference: RealStatistics, num_gen: int, seed: int) -> Metric:
        subset_size = min(self.subset_size, reference.num_images, num_gen)
        if subset_size < self.subset_size:
            rank_zero_warn(
                f"GenerativeMetrics: KID's `subset_size` {self.subset_size} exceeds the available images; "
                f"using {subset_size}."
            )
        return KernelInceptionDistance(
            None, subsets=self.subsets, subset_size=subset_size, seed=seed, reference=reference
        )


class IS(MetricOption):
    """Inception Score over ``splits`` chunks of the generated images (``metrics/is``, ``metrics/is_std``).

    Args:
        splits: number of chunks; at most the generated images per evaluation.

    >>> IS(splits=5).splits
    5
    """

    name = "is"
    logged = ("is", "is_std")
    reads_logits = True

    def __init__(self, splits: int = 10) -> None:
        self.splits = check_positive_int("splits", splits)

    def check(self, num_gen: int) -> None:
        if num_gen < self.splits:
            raise ValueError(
                f"`num_gen` ({num_gen}) must be >= the Inception Score's `splits` ({self.splits}); generate "
                f"more images or use `IS(splits={num_gen})`."
            )

    def build(self, reference: RealStatistics, num_gen: int, seed: int) -> Metric:
        return InceptionScore(None, splits=self.splits)


class PR(MetricOption):
    """Improved precision and recall (``metrics/precision``, ``metrics/recall``).

    Args:
        k: neighbourhood size (3 in Kynkaanniemi et al. 2019).

    >>> PR(k=5).k
    5
    """

    name = "pr"
    logged = ("precision", "recall")
    needs_real_features = True

    def __init__(self, k: int = 3) -> None:
        self.k = check_positive_int("k", k)

    def build(self, reference: RealStatistics, num_gen: int, seed: int) -> Metric:
        return PrecisionRecall(None, k=self.k, reference=reference)


METRIC_OPTIONS: dict[str, type[MetricOption]] = {cls.name: cls for cls in (FID, KID, IS, PR)}
"""The metric objects by the string that stands for each with its defaults."""


def metric_options(metrics: str | MetricOption | Sequence[str | MetricOption]) -> tuple[MetricOption, ...]:
    """The metric objects of ``metrics``: names become default objects, each metric at most once.

    Raises:
        ValueError: an unknown name, no metric, or one metric twice.
        TypeError: an item that is neither a name nor a metric object.

    >>> metric_options("kid")
    (KID(subsets=100, subset_size=1000),)
    """
    items = [metrics] if isinstance(metrics, str | MetricOption) else list(metrics)
    names = ", ".join(f"{name!r}" for name in METRIC_OPTIONS)
    if not items:
        raise ValueError(
            f"`metrics` must name at least one of {names}, got {metrics!r}; e.g. `metrics: [fid]`."
        )
    options: list[MetricOption] = []
    for item in items:
        if isinstance(item, str):
            if item.lower() not in METRIC_OPTIONS:
                raise ValueError(
                    f"`metrics` names {item!r}, which is none of {names}; use one of them or a metric object "
                    "(FID(), KID(...), IS(...), PR(...))."
                )
            item = METRIC_OPTIONS[item.lower()]()
        elif not isinstance(item, MetricOption):
            raise TypeError(
                f"`metrics` items must be names ({names}) or metric objects (FID, KID, IS, PR), got "
                f"{type(item).__name__} {item!r}."
            )
        if any(option.name == item.name for option in options):
            raise ValueError(
                f"`metrics` gives {item.name!r} twice ({metrics!r}); keep one, with the options you want."
            )
        options.append(item)
    return tuple(options)


class RealData:
    """The real images the generated ones are compared with, and the cache of their statistics.

    Args:
        source: a ``DataLoader``, a map-style ``Dataset`` or an image tensor ``(N, C, H, W)`` in
            [-1, 1]; ``None``: the run's training data (the fit loop's, else the datamodule's).
        num_images: how many images, from the first (``None``: all of them).
        fingerprint: a string naming the data in the cache (default: a hash of its length and a
            few items; needed for data without a stable hash).
        cache_dir: folder of the real-statistics cache (default ``$LIGHTNING_GENAUG_CACHE`` or
            ``~/.cache/lightning_genaug/real_stats``).
        use_cache: ``False`` recomputes the statistics at the first evaluation of each run.

    >>> RealData(torch.zeros(4, 1, 8, 8)).num_images is None
    True
    """

    def __init__(
        self,
        source: DataLoader | Dataset | torch.Tensor | None = None,
        num_images: int | None = None,
        fingerprint: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
    ) -> None:
        if source is not None and not isinstance(source, DataLoader | Dataset | torch.Tensor):
            raise TypeError(
                "`source` must be a DataLoader, a Dataset, an image tensor (N, C, H, W) or None (the "
                f"training data), got {type(source).__name__}."
            )
        self.source = source
        self.num_images = None if num_images is None else check_positive_int("num_images", num_images)
        self.fingerprint = fingerprint
        self.cache_dir = cache_dir
        self.use_cache = use_cache

    @property
    def cache(self) -> RealStatisticsCache | None:
        """Where the statistics are kept, or ``None`` when ``use_cache`` is off."""
        if not self.use_cache:
            return None
        return RealStatisticsCache(default_cache_dir() if self.cache_dir is None else self.cache_dir)

    def __repr__(self) -> str:
        source = None if self.source is None else type(self.source).__name__
        return (
            f"RealData(source={source}, num_images={self.num_images!r}, fingerprint={self.fingerprint!r}, "
            f"cache_dir={self.cache_dir!r}, use_cache={self.use_cache!r})"
        )


__all__ = ["FID", "IS", "KID", "METRIC_OPTIONS", "PR", "MetricOption", "RealData", "metric_options"]
