"""The batch contract: ``(images, labels)``, ``images`` alone, or a dict with ``"image"``/``"label"``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def split_batch(batch: Any, image_key: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return ``(images, labels)`` from a batch that follows the package's contract.

    Accepted forms: a tensor ``(B, C, H, W)``; a tuple/list whose first item is the images and whose
    optional second item is int64 labels ``(B,)``; a mapping with ``image_key`` (default ``"image"``)
    and optional ``"label"``.

    Raises:
        ValueError: if no image tensor can be found; the message says to set ``image_key``.
    """
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, Mapping):
        key = image_key or "image"
        if key not in batch:
            raise ValueError(
                f"The batch is a dict with keys {sorted(batch)} but has no {key!r} entry; "
                "set `image_key` to the key that holds the images."
            )
        labels = batch.get("label")
        return batch[key], labels if isinstance(labels, torch.Tensor) else None
    if isinstance(batch, Sequence) and len(batch) > 0 and isinstance(batch[0], torch.Tensor):
        labels = batch[1] if len(batch) > 1 and isinstance(batch[1], torch.Tensor) else None
        if labels is not None and (labels.ndim != 1 or labels.is_floating_point()):
            labels = None
        return batch[0], labels
    raise ValueError(
        f"Cannot find images in a batch of type {type(batch).__name__}; expected a tensor, "
        "(images, labels) or a dict with an image entry (set `image_key`)."
    )
