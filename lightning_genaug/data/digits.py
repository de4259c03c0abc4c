"""``DigitsDataModule``: scikit-learn's bundled handwritten digits, a real dataset needing no download."""

from __future__ import annotations

import torch

from lightning_genaug._checks import check_choice, check_positive_int
from lightning_genaug.data.base import InMemoryImageDataModule


class DigitsDataModule(InMemoryImageDataModule):
    """The 1,797 8x8 handwritten digits (10 classes) shipped inside scikit-learn, upsampled.

    The source images have 17 grey levels (0-16); they are scaled to [0, 255] and upsampled with
    bicubic interpolation to ``resolution`` (16 by default: large enough that strokes look like
    handwriting, small enough that a GAN trains on a 2-core CPU in minutes).

    Args:
        resolution: output size ``H = W`` (>= 8).
        channels: 1 (grayscale) or 3 (grey replicated to RGB, for colour augmentations and
            Inception-style metrics).
        **kwargs: batch_size, num_workers, val_fraction, max_images, xflip, use_labels, seed
            (see :class:`~lightning_genaug.data.base.InMemoryImageDataModule`).

    Batches: float ``(B, C, resolution, resolution)`` in [-1, 1] and int64 labels ``(B,)``.

    Example:
        >>> dm = DigitsDataModule(resolution=16, batch_size=8)
        >>> dm.image_shape, dm.num_classes, dm.num_images
        ((1, 16, 16), 10, 1797)
    """

    def __init__(
        self,
        resolution: int = 16,
        channels: int = 1,
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        max_images: int | None = None,
        xflip: bool = False,
        use_labels: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, max_images, xflip, use_labels, seed)
        check_positive_int("resolution", resolution)
        if resolution < 8:
            raise ValueError(f"`resolution` must be >= 8 (the digits are 8x8), got {resolution}.")
        self.resolution = resolution
        self.channels = check_choice("channels", channels, (1, 3))
        self._class_names = [str(digit) for digit in range(10)]

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images).float().mul(255.0 / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
        if self.resolution != 8:
            images = torch.nn.functional.interpolate(
                images, size=(self.resolution, self.resolution), mode="bicubic", align_corners=False
            )
        images = images.round().clamp(0, 255).to(torch.uint8).expand(-1, self.channels, -1, -1)
        return images.contiguous(), torch.from_numpy(digits.target).long()
