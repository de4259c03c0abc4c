"""Real images for the metrics: read in order, shared among processes, their statistics cached.

:class:`RealImages` reads a dataset (or an image tensor) in a fixed order, each process a
contiguous block of it (:func:`shard`), extracts features and reduces them into
:class:`~lightning_genaug.metrics.cache.RealStatistics` of the whole set (torchmetrics sums and
concatenates the blocks across processes, in rank order: the single-process result). The
statistics are loaded from a :class:`~lightning_genaug.metrics.cache.RealStatisticsCache` when an
entry exists and saved there otherwise. No Lightning: the process rank, the number of processes and
how they agree are arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from lightning_genaug._checks import check_images
from lightning_genaug.metrics.cache import RealStatistics, RealStatisticsCache, dataset_fingerprint
from lightning_genaug.metrics.extractors import extract_features, extractor_fingerprint
from lightning_genaug.metrics.image_metrics import RealFeatureStatistics


def shard(total: int, world_size: int, rank: int) -> range:
    """Rank ``rank``'s contiguous block of ``range(total)``, split as evenly as possible over ``world_size``.

    Blocks are in rank order, so concatenating them rank after rank (what the metrics' ``"cat"``
    reduction does) gives back ``range(total)`` in order: the single-process order.

    >>> [shard(5, 2, rank) for rank in range(2)]
    [range(0, 2), range(2, 5)]
    """
    return range(total * rank // world_size, total * (rank + 1) // world_size)


class RealImages:
    """The first ``num_real`` images of a dataset, read in order in batches of ``batch_size``.

    Args:
        source: a ``DataLoader`` (its dataset is read with its ``collate_fn`` and ``num_workers``,
            never shuffled), a map-style ``Dataset`` or an image tensor ``(N, C, H, W)`` in [-1, 1].
        images_of: maps a collated batch to its images ``(B, C, H, W)`` (e.g. the batch contract's
            ``split_batch(batch, image_key)[0]``).
        batch_size: images per batch.
        num_real: how many images, from the first (``None``: all of them).

    Raises:
        TypeError: if the dataset has no length (an iterable dataset).
        ValueError: if it is empty.
    """

    def __init__(
        self,
        source: DataLoader | Dataset | torch.Tensor,
        images_of: Callable[[Any], torch.Tensor],
        batch_size: int,
        num_real: int | None = None,
    ) -> None:
        self.loader = source if isinstance(source, DataLoader) else None
        self.data = source.dataset if isinstance(source, DataLoader) else source
        self.images_of = images_of
        self.batch_size = batch_size
        length = self._checked_length(self.data)
        self.total = length if num_real is None else min(num_real, length)

    @staticmethod
    def _checked_length(data: Any) -> int:
        try:
            length = len(data)
        except TypeError as error:
            raise TypeError(
                f"GenerativeMetrics needs real data with a length (a map-style Dataset or a tensor), got "
                f"{type(data).__name__}; pass `real_data=` with a map-style dataset."
            ) from error
        if length == 0:
            raise ValueError("GenerativeMetrics: the real dataset is empty.")
        return length

    def batches(self, indices: Sequence[int], use_workers: bool = True) -> Iterator[Any]:
        """Batches of the items at ``indices``, in order, collated like the source loader's."""
        if isinstance(self.data, torch.Tensor):
            for start in range(0, len(indices), self.batch_size):
                yield self.data[indices[start : start + self.batch_size]]
            return
        kwargs: dict[str, Any] = {}
        if self.loader is not None:
            workers = self.loader.num_workers if use_workers else 0
            kwargs = {"collate_fn": self.loader.collate_fn, "num_workers": workers}
        yield from DataLoader(Subset(self.data, indices), batch_size=self.batch_size, shuffle=False, **kwargs)

    def cache_key(self, extractor: nn.Module, fingerprint: str | None = None) -> dict[str, Any] | None:
        """The :class:`RealStatisticsCache` key of these images seen by ``extractor``.

        Args:
            extractor: the feature extractor.
            fingerprint: names the dataset (default: :func:`dataset_fingerprint` of it).

        Returns:
            The key, or ``None`` when the dataset has no fingerprint (it cannot be cached).
        """
        fingerprint = fingerprint or dataset_fingerprint(self.data)
        if fingerprint is None:
            return None
        first_images = self.images_of(next(self.batches([0], use_workers=False)))
        image_shape = tuple(first_images.shape[1:])
        return RealStatisticsCache.make_key(
            fingerprint, extractor_fingerprint(extractor), image_shape, self.total
        )

    def compute(
        self,
        extractor: nn.Module,
        device: torch.device,
        keep_features: bool,
        rank: int = 0,
        world_size: int = 1,
        progress_bar: bool = False,
    ) -> RealStatistics:
        """Statistics of the images; process ``rank`` of ``world_size`` extracts its :func:`shard` of them.

        Every process must call this (the statistics are reduced across processes when
        ``torch.distributed`` is initialised).

        Args:
            extractor: maps images ``(B, C, H, W)`` in [-1, 1] to features ``(B, D)``, on ``device``.
            device: where the images are moved for extraction.
            keep_features: keep the ``(N, D)`` features (KID and precision/recall need them).
            rank: this process's rank.
            world_size: the number of processes.
            progress_bar: show a progress bar (over all processes' images).
        """
        if self.total < world_size:
            raise ValueError(
                f"GenerativeMetrics needs at least one real image per process, got {self.total}."
            )
        indices = list(shard(self.total, world_size, rank))
        statistics: RealFeatureStatistics | None = None
        bar = tqdm(
            total=self.total, desc="metrics: real images", unit="img", leave=False, disable=not progress_bar
        )
        with bar:
            for batch in self.batches(indices):
                images = check_images(self.images_of(batch), "real images")
                features = extract_features(extractor, images.to(device))[0]
                if statistics is None:
                    statistics = RealFeatureStatistics(features.shape[1], keep_features).to(device)
                statistics.update(features)
                bar.update(images.shape[0] * world_size)
        return statistics.compute()

    def statistics(
        self,
        extractor: nn.Module,
        device: torch.device,
        keep_features: bool,
        cache: RealStatisticsCache | None = None,
        fingerprint: str | None = None,
        rank: int = 0,
        world_size: int = 1,
        any_rank: Callable[[bool], bool] = bool,
        progress_bar: bool = False,
    ) -> RealStatistics:
        """The cached statistics when every process finds them, else :meth:`compute` (saved by rank 0).

        Args:
            extractor: as in :meth:`compute`.
            device: as in :meth:`compute`.
            keep_features: as in :meth:`compute`; a cache entry without features is not used then.
            cache: where statistics are kept (``None``: always compute).
            fingerprint: names the dataset in the cache key (see :meth:`cache_key`).
            any_rank: ``True`` on every process when its argument is ``True`` on one (a collective,
                e.g. Lightning's ``strategy.reduce_boolean_decision(flag, all=False)``); the
                default suits one process.
            rank: as in :meth:`compute`; rank 0 saves the entry.
            world_size: as in :meth:`compute`.
            progress_bar: as in :meth:`compute`.
        """
        key = None
        stats = None
        if cache is not None:
            key = self.cache_key(extractor, fingerprint)
            if key is not None:
                stats = cache.load(key, keep_features)
        if any_rank(stats is None):
            stats = self.compute(extractor, device, keep_features, rank, world_size, progress_bar)
            if key is not None and rank == 0:
                cache.save(key, stats)
        return stats
