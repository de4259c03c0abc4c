"""``CIFAR10DataModule``: CIFAR-10 from a local path (the python pickles or an image folder/zip)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightning_genaug._checks import check_choice
from lightning_genaug.data.images import ImageDataModule
from lightning_genaug.safe_pickle import MALFORMED, NUMPY_GLOBALS, read_data, refusal_reason

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
            batch_images, batch_labels = read_cifar_batch(file)
            images.append(batch_images)
            labels.extend(batch_labels)
        return torch.from_numpy(np.concatenate(images)), torch.tensor(labels, dtype=torch.int64)


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2: latin-1 text to bytes, nothing else."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("the pickle calls `_codecs.encode` other than to spell bytes")
    return text.encode("latin1")


# The release's batches are Python 2 pickles of a dict of strings, lists and one numpy array.
CIFAR_BATCH_GLOBALS = {**NUMPY_GLOBALS, ("_codecs", "encode"): _latin1_bytes}


def read_cifar_batch(file: Path) -> tuple[np.ndarray, list[int]]:
    """One batch file of the ``cifar-10-python`` release, read as data (its bytes are never run as code).

    Returns:
        uint8 images ``(N, 3, 32, 32)`` and their ``N`` labels in 0-9.

    Raises:
        ValueError: the file is not such a batch: it names a global a batch does not need (a pickle
            that would run code), is truncated, or holds another layout; the message names the file.
    """
    try:
        raw = file.read_bytes()
        batch = read_data(raw, CIFAR_BATCH_GLOBALS, encoding="latin1", expected="a CIFAR-10 batch")
    except MALFORMED as error:
        raise ValueError(
            f"CIFAR-10 batch {str(file)!r} is refused: {refusal_reason(error)}. Batches are read as data, "
            "never run; re-extract cifar-10-python.tar.gz."
        ) from None
    if isinstance(batch, dict):  # Python 2 strings arrive as str, Python 3 pickles may hold bytes keys
        batch = {key.decode("latin1") if isinstance(key, bytes) else key: item for key, item in batch.items()}
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
        and isinstance(labels, list)
        and len(labels) == len(data)
        and all(type(label) is int and 0 <= label < len(CIFAR10_CLASSES) for label in labels)
    ):
        found = sorted(map(str, batch))[:10] if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"CIFAR-10 batch {str(file)!r} does not hold the release's layout: a dict with 'data' (uint8, "
            f"N x 3072) and 'labels' (N integers in 0-9); found {found}. Re-extract cifar-10-python.tar.gz."
        )
    return data.reshape(-1, 3, 32, 32), labels


def find_pickle_folder(root: Path) -> Path | None:
    """Return the folder holding the pickled CIFAR-10 batches under ``root``, or None."""
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "batches.meta").is_file() or (candidate / "test_batch").is_file():
            return candidate
    return None
