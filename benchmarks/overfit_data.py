"""Data of the over-fitting settings (``benchmarks/overfit.py``): the reals, fixed subsets, datamodules."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_genaug.images import from_uint8

# Where this project's CIFAR-10 zips live beside a checkout (never on a user's machine: pass --data-root).
DEFAULT_CIFAR_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def digits(resolution: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 ``(N, C, R, R)`` and their labels, as ``DigitsDataModule`` makes them."""
    from lightning_genaug.data import DigitsDataModule

    return DigitsDataModule(resolution=resolution, channels=channels).load()


def read_image_zip(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of a zip laid out ``<split>/<class>/<name>.jpg``: uint8 ``(N, 3, 32, 32)``, labels."""
    from lightning_genaug.data import ImageDataModule

    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} does not exist: give CIFAR-10 as a zip of JPEGs in class folders "
            "(`<split>/<class>/<name>.jpg`, as train-10k-jpeg.zip and test-jpeg.zip are laid out)."
        )
    images, labels = ImageDataModule(path, resolution=32, channels=3).load()
    return torch.as_tensor(images), labels


def load_dataset(
    dataset: str, data_root: str | None, resolution: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reals of a setting and the labelled images its metric classifier is trained on.

    Returns ``(images, labels, classifier_images, classifier_labels)``, uint8 ``(N, 3, R, R)`` images.
    The digits (at ``resolution``) classifier is trained on all digits; the CIFAR-10 one on the test
    split only (``data_root`` holds both zips).
    """
    if dataset == "digits":
        images, labels = digits(resolution, channels=3)
        return images, labels, images, labels
    if dataset != "cifar10" or data_root is None:
        raise ValueError(
            f"`dataset` must be 'digits' or 'cifar10' (with `data_root`), got {dataset!r} "
            f"(data_root {data_root!r})."
        )
    root = Path(data_root)
    return (*read_image_zip(root / "train-10k-jpeg.zip"), *read_image_zip(root / "test-jpeg.zip"))


def downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` box-filtered to ``(N, C, resolution, resolution)`` (``H`` a multiple)."""
    factor = images.shape[-1] // resolution
    pooled = torch.nn.functional.avg_pool2d(images.float(), factor)
    return pooled.round().clamp(0, 255).to(torch.uint8)


def training_subset(count: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training subset and of the held-out rest (a fixed draw, shared by all jobs)."""
    order = torch.randperm(total, generator=torch.Generator().manual_seed(0))
    return order[:count].sort().values, order[count:].sort().values


class TensorDataModule(pl.LightningDataModule):
    """Batches ``(images in [-1, 1], labels)`` of a fixed uint8 tensor; ``image_shape`` for the module."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.image_shape = tuple(images.shape[1:])
        self.num_classes = int(labels.max()) + 1

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        dataset = torch.utils.data.TensorDataset(from_uint8(self.images), self.labels)
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=True)


class SplitTensorDataModule(TensorDataModule):
    """A :class:`TensorDataModule` with a fixed validation set ``val = (uint8 images, labels)``."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        val: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        super().__init__(images, labels, batch_size)
        self.val = val

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        dataset = torch.utils.data.TensorDataset(from_uint8(self.val[0]), self.val[1])
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size)
