"""``CIFAR10DataModule``: CIFAR-10 from a local path (the python pickles or an image folder/zip)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from lightning_genaug._checks import check_choice
from lightning_genaug.data.images import ImageDataModule

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 read from disk; it never downloads.

    ``path`` may be the standard ``cifar-10-python`` release (a folder holding ``data_batch_1`` ...
    ``test_batch``, or its parent holding ``cifar-10-batches-py/``), or any folder or zip of images
    with one sub-folder per class (e.g. ``train/airplane/0001.jpg``).

    Args:
        path: the local path (the same argument as :class:`~lightning_genaug.data.images.ImageDataModule`'s).
        split: ``"train"`` (the 50k training batches) or ``"test"``; used for the pickled release only.
        **kwargs: everything :class:`~lightning_genaug.data.images.ImageDataModule` accepts
            (``max_images`` gives the limited-data subsets of the ADA paper).
    """

    def __init__(
        self,
        path: str | Path,
        split: str = "train",
        batch_size: int = 64,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        max_images: int | None = None,
        xflip: bool = False,
        use_labels: bool = True,
        skip_corrupt: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(
            path=path,
            resolution=32,
            resize_mode="none",
            channels=3,
            skip_corrupt=skip_corrupt,
            batch_size=batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            max_images=max_images,
            xflip=xflip,
            use_labels=use_labels,
            seed=seed,
        )
        self.split = check_choice("split", split, ("train", "test"))

    def load(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        batches_dir = find_pickle_folder(self.path)
        if batches_dir is None:
            return super().load()
        self._class_names = CIFAR10_CLASSES
        names = [f"data_batch_{i}" for i in range(1, 6)] if self.split == "train" else ["test_batch"]
        images, labels = [], []
        for name in names:
            file = batches_dir / name
            if not file.is_file():
                raise FileNotFoundError(
                    f"CIFAR-10 batch {str(file)!r} is missing; re-extract cifar-10-python.tar.gz."
                )
            with file.open("rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.extend(batch[b"labels"])
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def find_pickle_folder(root: Path) -> Path | None:
    """Return the folder holding the pickled CIFAR-10 batches under ``root``, or None."""
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "batches.meta").is_file() or (candidate / "test_batch").is_file():
            return candidate
    return None
