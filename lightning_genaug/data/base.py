"""The image dataset and the DataModule logic shared by every local data source.

Sources (folder, zip, array, scikit-learn digits, CIFAR-10 pickles) are decoded once into a uint8
tensor ``(N, C, H, W)`` at the target resolution, or (folders and zips too large for RAM) kept as
:class:`~lightning_genaug.data.files.LazyImages` decoded per item in the DataLoader workers; batches
are converted to float in [-1, 1] on the fly. Decoding up front catches corrupt files before
training starts and makes epochs cheap (a GAN sees its data hundreds of times); memory is
``N * C * H * W`` bytes.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_genaug._checks import check_positive_int, check_range
from lightning_genaug.data.files import LazyImages
from lightning_genaug.data.resume import ResumableDataLoader, ResumableRandomSampler, loader_generator
from lightning_genaug.images import from_uint8

log = logging.getLogger(__name__)


class ImageTensorDataset(Dataset):
    """Images stored as uint8 ``(N, C, H, W)``; items are ``(image, label)`` or ``image``.

    Args:
        images: uint8 tensor ``(N, C, H, W)``, or :class:`~lightning_genaug.data.files.LazyImages`
            (decoded per item, in the DataLoader workers).
        labels: int64 tensor ``(N,)`` or ``None`` for unconditional data.
        xflip: if ``True`` the dataset has ``2N`` items, the second half mirrored left-right
            (the dataset x-flip doubling of the ADA paper).

    Items: float ``(C, H, W)`` in [-1, 1], with an int64 label when ``labels`` is given.
    """

    def __init__(
        self, images: torch.Tensor | LazyImages, labels: torch.Tensor | None = None, xflip: bool = False
    ) -> None:
        self.images = images
        self.labels = labels
        self.xflip = xflip

    def __len__(self) -> int:
        return len(self.images) * (2 if self.xflip else 1)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        base_index = index % len(self.images)
        image = from_uint8(self.images[base_index])
        if index >= len(self.images):
            image = image.flip(-1)
        if self.labels is None:
            return image
        return image, self.labels[base_index]


class InMemoryImageDataModule(pl.LightningDataModule):
    """Base class: subclasses implement :meth:`load` returning ``(uint8 images, labels | None)``.

    Args:
        batch_size: images per batch.
        num_workers: DataLoader workers (0 loads in the main process; data is already in memory).
        val_fraction: fraction of the images held out for ``val_dataloader`` (0 disables it).
        max_images: keep a fixed-seed random subset of this many images (the limited-data setting).
        xflip: double the training set with mirrored copies.
        use_labels: emit ``(images, labels)`` batches when the source has labels.
        seed: seed of the subset and of the validation split.
    """

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        max_images: int | None = None,
        xflip: bool = False,
        use_labels: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_positive_int("batch_size", batch_size)
        check_positive_int("num_workers", num_workers, allow_zero=True)
        check_range("val_fraction", val_fraction, 0.0, 1.0, high_inclusive=False)
        if max_images is not None:
            check_positive_int("max_images", max_images)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.max_images = max_images
        self.xflip = xflip
        self.use_labels = use_labels
        self.seed = seed
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._class_names: list[str] | None = None
        self.train_dataset: ImageTensorDataset | None = None
        self.val_dataset: ImageTensorDataset | None = None

    def load(self) -> tuple[torch.Tensor | LazyImages, torch.Tensor | None]:
        """Return every image of the source as uint8 ``(N, C, H, W)`` and int64 labels ``(N,)`` or None.

        The images may be a :class:`~lightning_genaug.data.files.LazyImages`, decoded when indexed.
        """
        raise NotImplementedError

    def _ensure_loaded(self) -> None:
        if self._images is not None:
            return
        images, labels = self.load()
        if labels is not None and len(labels) != len(images):
            raise ValueError(
                f"{len(labels)} labels for {len(images)} images: each image needs exactly one label."
            )
        if self.max_images is not None and self.max_images < len(images):
            subset = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            subset = subset[: self.max_images].sort().values
            images = images[subset]
            labels = labels[subset] if labels is not None else None
        self._images = images.contiguous() if isinstance(images, torch.Tensor) else images
        self._labels = labels if self.use_labels else None
        log.info("Loaded %d images of shape %s", len(images), tuple(images.shape[1:]))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images this DataModule emits."""
        self._ensure_loaded()
        return tuple(self._images.shape[1:])  # type: ignore[union-attr,return-value]

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unconditional data or ``use_labels=False``)."""
        self._ensure_loaded()
        return 0 if self._labels is None else int(self._labels.max().item()) + 1

    @property
    def num_images(self) -> int:
        """Number of images before x-flip doubling and the validation split."""
        self._ensure_loaded()
        return len(self._images)  # type: ignore[arg-type]

    @property
    def class_names(self) -> list[str] | None:
        """Class names in label order, when the source has them."""
        self._ensure_loaded()
        return self._class_names

    @property
    def has_validation_data(self) -> bool:
        """Whether :meth:`val_dataloader` yields images (``val_fraction`` holds at least one out).

        ``lightning-genaug fit`` turns validation off when it does not (no empty-loader warning).
        """
        return self._num_val() > 0

    def _num_val(self) -> int:
        self._ensure_loaded()
        return int(round(len(self._images) * self.val_fraction))  # type: ignore[arg-type]

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        num_val = self._num_val()
        images, labels = self._images, self._labels
        if num_val == len(images):
            raise ValueError(
                f"`val_fraction={self.val_fraction}` leaves no training image out of {len(images)}; lower it."
            )
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed + 1))
        val_idx, train_idx = order[:num_val].sort().values, order[num_val:].sort().values

        def pick(index: torch.Tensor) -> torch.Tensor | None:
            return labels[index] if labels is not None else None

        if num_val == 0:  # every image trains: share the tensor (indexing would copy the whole set)
            self.train_dataset = ImageTensorDataset(images, labels, xflip=self.xflip)
            return
        self.train_dataset = ImageTensorDataset(images[train_idx], pick(train_idx), xflip=self.xflip)
        self.val_dataset = ImageTensorDataset(images[val_idx], pick(val_idx))

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        """A shuffled loader resumes exactly (see :mod:`~lightning_genaug.data.resume`); others are plain."""
        options = dict(
            batch_size=self.batch_size, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )
        if not shuffle:
            return DataLoader(dataset, **options)
        sampler = ResumableRandomSampler(dataset, seed=self.seed)
        drop_last = len(dataset) >= self.batch_size
        generator = loader_generator(self.seed)
        return ResumableDataLoader(
            dataset, sampler=sampler, drop_last=drop_last, generator=generator, **options
        )

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        return self._loader(self.val_dataset, shuffle=False) if self.val_dataset is not None else []

    def test_dataloader(self) -> DataLoader:
        """The validation split when there is one, else every image (no x-flip copies), in order.

        This lets ``lightning-genaug test`` evaluate a model on a whole dataset, e.g. a test split
        given as its own ``path``/``root``.
        """
        self.setup("test")
        if self.val_dataset is not None:
            return self._loader(self.val_dataset, shuffle=False)
        return self._loader(ImageTensorDataset(self._images, self._labels), shuffle=False)
