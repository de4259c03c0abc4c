"""Image grids and PNG files, shared by the predict loops and the sample callbacks."""

from __future__ import annotations

import math
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
