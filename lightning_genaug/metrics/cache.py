"""Real-data statistics computed once and cached on disk.

A cache entry is keyed by the dataset's fingerprint, the extractor's fingerprint, the image
resolution and the number of real images; its file name is a hash of that key, so a changed
dataset, extractor or resolution never reuses stale statistics.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "LIGHTNING_GENAUG_CACHE"
_FINGERPRINT_ITEMS = 8


def default_cache_dir() -> Path:
    """``$LIGHTNING_GENAUG_CACHE`` if set, else ``~/.cache/lightning_genaug/real_stats``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return Path("~/.cache/lightning_genaug/real_stats").expanduser()


def _update_digest(digest: Any, item: Any) -> None:
    """Feed every tensor, array and scalar of a (nested) dataset item into a hash."""
    if isinstance(item, torch.Tensor):
        tensor = item.detach().to("cpu").contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    elif isinstance(item, np.ndarray):
        digest.update(f"{item.dtype}{item.shape}".encode())
        digest.update(np.ascontiguousarray(item).tobytes())
    elif isinstance(item, Mapping):
        for key in sorted(item, key=str):
            digest.update(str(key).encode())
            _update_digest(digest, item[key])
    elif isinstance(item, Sequence) and not isinstance(item, (str, bytes)):
        for element in item:
            _update_digest(digest, element)
    else:
        digest.update(repr(item).encode())


def dataset_fingerprint(data: Any) -> str | None:
    """A cheap identity of a dataset: its type, length and a few evenly spaced items.

    Args:
        data: a map-style dataset (``__len__`` and ``__getitem__``) or an image tensor ``(N, C, H, W)``.

    Returns:
        A hex digest, or ``None`` when ``data`` cannot be indexed (an iterable dataset): then give
        the callback an explicit ``dataset_fingerprint``.
    """
    try:
        length = len(data)
    except TypeError:
        return None
    if length == 0 or not hasattr(data, "__getitem__"):
        return None
    digest = hashlib.sha256(f"{type(data).__qualname__}:{length}".encode())
    step = max(1, length // _FINGERPRINT_ITEMS)
    for index in sorted({*range(0, length, step), length - 1}):
        _update_digest(digest, data[index])
    return digest.hexdigest()[:16]


@dataclass
class RealStatistics:
    """Features of the real images and their Gaussian statistics.

    Attributes:
        mu: ``(D,)`` float64 mean.
        sigma: ``(D, D)`` float64 covariance.
        features: ``(N, D)`` float32 features (kept for KID and precision/recall), or ``None``.
        num_images: number of real images ``N``.
    """

    mu: torch.Tensor
    sigma: torch.Tensor
    features: torch.Tensor | None
    num_images: int


class RealStatisticsCache:
    """On-disk cache of :class:`RealStatistics`.

    Args:
        cache_dir: folder of the cache files (created on first save).
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir).expanduser()

    @staticmethod
    def make_key(
        dataset_id: str, extractor_id: str, image_shape: Sequence[int], num_images: int | None
    ) -> dict[str, Any]:
        """The cache key: dataset, extractor, ``(C, H, W)`` and the number of real images (or "all")."""
        return {
            "dataset": dataset_id,
            "extractor": extractor_id,
            "resolution": [int(size) for size in image_shape],
            "num_images": "all" if num_images is None else int(num_images),
        }

    def path(self, key: Mapping[str, Any]) -> Path:
        """File of the entry for ``key``."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        return self.cache_dir / f"real-{digest}.pt"

    def load(self, key: Mapping[str, Any], need_features: bool) -> RealStatistics | None:
        """The cached statistics for ``key``, or ``None`` if absent (or without features when needed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        entry = torch.load(path, map_location="cpu", weights_only=True)
        if entry.get("key") != dict(key) or (need_features and entry.get("features") is None):
            return None
        log.info("Loaded real-data statistics from %s", path)
        return RealStatistics(entry["mu"], entry["sigma"], entry.get("features"), int(entry["num_images"]))

    def save(self, key: Mapping[str, Any], stats: RealStatistics) -> Path:
        """Write ``stats`` for ``key`` atomically (a temporary file renamed into place)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "key": dict(key),
            "mu": stats.mu,
            "sigma": stats.sigma,
            "features": stats.features,
            "num_images": stats.num_images,
        }
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save(entry, partial)
        os.replace(partial, path)
        log.info("Saved real-data statistics to %s", path)
        return path
