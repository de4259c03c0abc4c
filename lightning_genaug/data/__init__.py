"""DataModules emitting the package's batch contract: float (B, C, H, W) in [-1, 1], int64 labels."""

from lightning_genaug.data.base import ImageTensorDataset, InMemoryImageDataModule
from lightning_genaug.data.batch import split_batch
from lightning_genaug.data.cifar10 import CIFAR10DataModule
from lightning_genaug.data.digits import DigitsDataModule
from lightning_genaug.data.images import ImageDataModule
from lightning_genaug.data.streaming import StreamingImageDataModule, prepare_dataset

__all__ = [
    "CIFAR10DataModule",
    "DigitsDataModule",
    "ImageDataModule",
    "ImageTensorDataset",
    "InMemoryImageDataModule",
    "StreamingImageDataModule",
    "prepare_dataset",
    "split_batch",
]
