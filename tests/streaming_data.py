"""Helpers for the streaming tests: image folders whose pixels encode each image's index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lightning_genaug.images import to_uint8


def write_indexed_images(root: Path, count: int, size: int = 8, classes: int = 2) -> Path:
    """``count`` constant images ``class{i % classes}/{i:05d}.png``; image ``i``: R = i % 256, G = i // 256.

    Files sort in index order within a class folder; :func:`image_indices` reads the index back.
    """
    for i in range(count):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((size, size, 3), dtype=np.uint8)
        pixels[..., 0], pixels[..., 1] = i % 256, i // 256
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")
    return root


def image_indices(images: torch.Tensor) -> list[int]:
    """The indices encoded by :func:`write_indexed_images` in a float batch ``(B, 3, H, W)`` in [-1, 1]."""
    pixels = to_uint8(images)[:, :, 0, 0].long()
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()
