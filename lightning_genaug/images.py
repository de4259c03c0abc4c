"""Image grids and PNG files, shared by the predict loops and the sample callbacks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lightning_genaug._checks import check_images, check_positive_int


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] to uint8 ``round((x + 1) * 127.5)`` clamped to [0, 255], same shape.

    >>> to_uint8(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    tensor([  0, 128, 255, 255], dtype=torch.uint8)
    """
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def from_uint8(values: torch.Tensor) -> torch.Tensor:
    """Integer pixel values in [0, 255] to float32 images ``v / 127.5 - 1`` in [-1, 1], same shape.

    >>> from_uint8(torch.tensor([0, 255], dtype=torch.uint8))
    tensor([-1.,  1.])
    """
    return values.float() / 127.5 - 1


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile images into one picture, ``nrow`` images per row, rows filled left to right.

    Args:
        images: ``(N, C, H, W)`` in [-1, 1].
        nrow: images per row.
        padding: pixels between and around images.
        pad_value: colour of the padding and of empty cells, in [0, 1].

    Returns:
        ``(C, rows * (H + padding) + padding, nrow * (W + padding) + padding)`` in [0, 1], on the CPU.

    >>> make_grid(torch.zeros(3, 1, 2, 2), nrow=2, padding=1).shape
    torch.Size([1, 7, 7])
    """
    check_images(images)
    check_positive_int("nrow", nrow)
    count, channels, height, width = images.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    pictures = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    cells = torch.full((rows * columns, channels, height, width), float(pad_value))
    cells[:count] = pictures
    # Pad each cell on its top and left; the grid's bottom and right border is added at the end.
    cells = F.pad(cells, (padding, 0, padding, 0), value=float(pad_value))
    grid = cells.view(rows, columns, channels, height + padding, width + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(channels, rows * (height + padding), columns * (width + padding))
    return F.pad(grid, (0, padding, 0, padding), value=float(pad_value))


MIN_CELL_PIXELS = 64
"""Cells of a :func:`picture_grid` are upscaled to at least this many pixels per side."""


def picture_grid(
    images: torch.Tensor, nrow: int, min_cell: int = MIN_CELL_PIXELS, gap: int = 2, gap_value: float = 1.0
) -> torch.Tensor:
    """A grid a person can look at: small images upscaled (nearest neighbour) with a thin gap between cells.

    Each image is enlarged by the smallest integer factor that makes its longer side at least
    ``min_cell`` pixels (16x16 digits become 64x64; images already that large are kept), so pixels stay
    sharp squares; cells are separated by ``gap`` pixels of ``gap_value``. Used for every grid the
    package writes (PNG files, W&B, TensorBoard).

    Args:
        images: ``(N, C, H, W)`` in [-1, 1].
        nrow: images per row.
        min_cell: minimum cell side in pixels.
        gap: pixels between and around cells.
        gap_value: colour of the gaps, in [0, 1].

    Returns:
        ``(C, H', W')`` in [0, 1], on the CPU.

    >>> picture_grid(torch.zeros(4, 1, 16, 16), nrow=2).shape  # 16 px -> 64 px cells, 2 px gaps
    torch.Size([1, 134, 134])
    """
    check_images(images)
    check_positive_int("min_cell", min_cell)
    check_positive_int("gap", gap, allow_zero=True)
    factor = max(1, math.ceil(min_cell / max(images.shape[-2:])))
    if factor > 1:
        images = F.interpolate(images.detach().float().cpu(), scale_factor=factor, mode="nearest")
    return make_grid(images, nrow, padding=gap, pad_value=gap_value)


def grid_to_uint8(grid: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [0, 1] to a ``(H, W, C)`` uint8 array (``(H, W)`` for one channel)."""
    array = (grid.detach().cpu() * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else np.ascontiguousarray(array)


def save_png(grid: torch.Tensor, path: Path) -> Path:
    """Write a ``(C, H, W)`` image in [0, 1] (C = 1 or 3) as a PNG file; parent folders are created."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid_to_uint8(grid)).save(path)
    return path


def seed_file_name(seed: int) -> str:
    """File name of the image of ``seed``, as ``predict`` and ``generate`` write it.

    >>> seed_file_name(42)
    'seed000042.png'
    """
    return f"seed{int(seed):06d}.png"


def save_seed_images(images: torch.Tensor, seeds: Sequence[int], folder: Path) -> None:
    """Write image ``i`` of ``images`` ``(N, C, H, W)`` in [-1, 1] as ``seed_file_name(seeds[i])``."""
    for seed, image in zip(seeds, images.detach().cpu(), strict=True):
        save_png((image + 1) / 2, folder / seed_file_name(seed))


def save_picture_grid(images: torch.Tensor, path: Path) -> Path:
    """Write ``images`` ``(N, C, H, W)`` in [-1, 1] as one :func:`picture_grid`, ``ceil(sqrt(N))`` a row.

    The ``grid.png`` of ``predict`` and ``generate``.
    """
    return save_png(picture_grid(images, math.ceil(math.sqrt(len(images)))), path)
