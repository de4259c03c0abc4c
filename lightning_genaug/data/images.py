"""``ImageDataModule``: images from a folder tree, a zip of one, or an ``.npz``/``.npy`` array."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from lightning_genaug._checks import MissingPathError, check_choice, check_positive_int, check_range
from lightning_genaug.data.base import InMemoryImageDataModule
from lightning_genaug.data.files import (
    IMAGE_SUFFIXES,
    RESIZE_MODES,
    CorruptImageError,
    ImageDecoder,
    ImageFiles,
    LazyImages,
    open_image_files,
    pixels_to_uint8,
)

log = logging.getLogger(__name__)

COLOUR_TO_GREY = (
    "%r holds colour images (e.g. %r) and `channels: 1` converts them to grey; set `channels: 3` "
    "(--data.channels 3) to train in colour, or store the images in grey to train in grey."
)
"""The warning of a colour source read with ``channels=1`` (a grey config kept for colour data)."""

# Decode up front when the uint8 images take at most this much RAM (ImageDataModule's `memory_budget_gb`).
DEFAULT_MEMORY_BUDGET_GB = 2.0


class ImageDataModule(InMemoryImageDataModule):
    """Images from a folder tree, a zip of one, or an array file, as ``(images, labels)`` batches.

    Sources:
        * a folder: every image file below it; with sub-folders, the first-level sub-folder is the
          class (sorted names -> ids 0, 1, ...).
        * a ``.zip`` of such a folder (read without extracting).
        * an ``.npy`` array ``(N, H, W, C)`` or ``(N, H, W)`` uint8, or an ``.npz`` with ``images``
          (or ``x``) and optional ``labels`` (or ``y``). Arrays are always read whole.

    Folders and zips are either decoded once into memory (fast epochs, ``N * C * H * W`` bytes of
    RAM, corrupt files found before training) or kept on disk and decoded in the DataLoader
    workers (*lazy*: RAM bounded whatever the set size; set ``num_workers``). Labels, resizing,
    x-flip, ``max_images``, the validation split and ``skip_corrupt`` behave the same in both modes.

    Args:
        path: the folder, zip or array file.
        resolution: output size ``H = W``; ``None`` keeps the source size (all images must match).
        resize_mode: what to do when an image is not ``resolution`` x ``resolution``:
            ``"none"`` (raise an error), ``"resize"`` (resize of the whole image, aspect ratio not
            kept) or ``"center_crop"`` (crop the central square, then resize). Image files are
            resized with PIL's Lanczos filter, array inputs with torch's antialiased bicubic.
        channels: 1 (grayscale) or 3 (RGB). Grayscale sources are replicated to RGB; RGBA is
            converted to RGB (alpha dropped) with a warning. ``None`` takes the first image's.
        skip_corrupt: skip unreadable or truncated files with a warning instead of raising (lazily:
            the next readable image stands in for a corrupt one).
        in_memory: ``True`` decodes every image up front, ``False`` decodes lazily in the workers,
            ``None`` (default) decodes up front when the decoded set fits in ``memory_budget_gb``.
        memory_budget_gb: the in-memory limit used when ``in_memory`` is ``None``, in GiB of uint8
            images (``N * C * H * W`` bytes, counted at the output resolution).
        **kwargs: batch_size, num_workers, val_fraction, max_images, xflip, use_labels, seed
            (see :class:`~lightning_genaug.data.base.InMemoryImageDataModule`).

    Batches: float ``(B, C, H, W)`` in [-1, 1], plus int64 labels ``(B,)`` for labelled sources.
    """

    def __init__(
        self,
        path: str | Path,
        resolution: int | None = None,
        resize_mode: str = "none",
        channels: int | None = 3,
        skip_corrupt: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.0,
        max_images: int | None = None,
        xflip: bool = False,
        use_labels: bool = True,
        seed: int = 0,
        in_memory: bool | None = None,
        memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
    ) -> None:
        super().__init__(batch_size, num_workers, val_fraction, max_images, xflip, use_labels, seed)
        self.path = Path(path).expanduser()
        if not self.path.exists():  # now, not in `setup` after the model and the trainer are built
            raise MissingPathError(
                f"`path` {str(path)!r} does not exist; give a folder of images, a .zip of one, or an "
                ".npz/.npy array file"
            )
        if resolution is not None:
            check_positive_int("resolution", resolution)
        if channels is not None:
            check_choice("channels", channels, (1, 3))
        self.decoder = ImageDecoder(
            resolution, check_choice("resize_mode", resize_mode, RESIZE_MODES), channels
        )
        self.skip_corrupt = skip_corrupt
        self.in_memory = in_memory
        self.memory_budget_gb = check_range("memory_budget_gb", memory_budget_gb, 0.0)

    @property
    def resolution(self) -> int | None:
        return self.decoder.resolution

    @property
    def resize_mode(self) -> str:
        return self.decoder.resize_mode

    @property
    def channels(self) -> int | None:
        return self.decoder.channels

    def load(self) -> tuple[torch.Tensor | LazyImages, torch.Tensor | None]:
        if self.channels is not None:
            rule = (
                "colour images converted to grey (ITU-R 601 luma)"
                if self.channels == 1
                else "grey images replicated to RGB"
            )
            log.info(
                "Images are read with %d channel(s) (`channels: %d`): %s, alpha dropped.",
                self.channels,
                self.channels,
                rule,
            )
        if self.path.suffix.lower() in (".npy", ".npz") and self.path.is_file():
            images, labels = load_array_file(self.path)
            return self._fit_array(images), labels
        files = open_image_files(self.path)
        names = files.names()
        first_shape = self._first_shape(files, names)
        if self.channels == 1:
            self._warn_if_colour(files, names)
        if not self._fits_in_memory(len(names), first_shape):
            if self.num_workers == 0:
                log.warning(
                    "Lazy decoding with `num_workers=0` decodes in the training process; set `num_workers`."
                )
            labels, self._class_names = labels_from_folders(names, files.source)
            return LazyImages(files, names, self.decoder, first_shape, self.skip_corrupt), labels
        return self._decode_all(files, names, first_shape)

    def _first_shape(self, files: ImageFiles, names: list[str]) -> tuple[int, int, int]:
        """``(C, H, W)`` of the first readable image (every image has it once decoded)."""
        for name in names:
            try:
                height, width, channels = self.decoder(files.read(name), name).shape
                return channels, height, width
            except CorruptImageError as error:
                if not self.skip_corrupt:
                    raise ValueError(f"{error} Remove or replace it, or pass `skip_corrupt=True`.") from error
        raise ValueError(
            f"No readable image found in {files.source!r} (looked for {', '.join(IMAGE_SUFFIXES)}); "
            "check `path`."
        )

    def _warn_if_colour(self, files: ImageFiles, names: list[str]) -> None:
        """Say so when ``channels=1`` turns colour images grey (the first readable image is looked at).

        A config written for grey data (the digits' ``channels: 1``) kept while only ``path`` changes
        would otherwise train colour photographs in grey without a word.
        """
        for name in names:
            colour = ImageDecoder.is_colour(files.read(name))
            if colour is None:  # unreadable: `_first_shape` has skipped it or stopped
                continue
            if colour:
                log.warning(COLOUR_TO_GREY, files.source, name)
            return

    def _fits_in_memory(self, count: int, shape: tuple[int, int, int]) -> bool:
        if self.in_memory is not None:
            return self.in_memory
        size = count * shape[0] * shape[1] * shape[2]
        fits = size <= self.memory_budget_gb * 2**30
        log.info(
            "%d images of shape %s take %.2f GiB decoded: %s (`memory_budget_gb=%s`).",
            count,
            shape,
            size / 2**30,
            "decoding them into memory" if fits else "decoding lazily",
            self.memory_budget_gb,
        )
        return fits

    def _decode_all(
        self, files: ImageFiles, names: list[str], image_shape: tuple[int, int, int]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every image as uint8 ``(N, C, H, W)``, filled in place (peak RAM: the set itself), and labels."""
        images = torch.empty(len(names), *image_shape, dtype=torch.uint8)
        expected = (image_shape[1], image_shape[2], image_shape[0])
        decoded: list[str] = []
        for name in names:
            try:
                array = self.decoder(files.read(name), name)
            except CorruptImageError as error:
                if not self.skip_corrupt:
                    raise ValueError(f"{error} Remove or replace it, or pass `skip_corrupt=True`.") from error
                log.warning("%s Skipping it (`skip_corrupt=True`).", error)
                continue
            if array.shape != expected:
                raise ValueError(
                    f"Images in {files.source!r} have different sizes {sorted({expected, array.shape})} "
                    f"(e.g. {name!r}); set `resolution` and `resize_mode='resize'` or `'center_crop'`."
                )
            images[len(decoded)] = torch.from_numpy(array).permute(2, 0, 1)
            decoded.append(name)
        labels, self._class_names = labels_from_folders(decoded, files.source)
        return images[: len(decoded)], labels

    def _fit_array(self, images: np.ndarray) -> torch.Tensor:
        """Convert an ``(N, H, W, C)`` uint8 array to the configured channels and resolution."""
        tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        channels = tensor.shape[1]
        if channels == 4:
            log.warning("The array has 4 channels (RGBA); the alpha channel is dropped.")
            tensor, channels = tensor[:, :3], 3
        target_channels = self.channels or channels
        if channels == 1 and target_channels == 3:
            tensor = tensor.expand(-1, 3, -1, -1)
        elif channels == 3 and target_channels == 1:
            sample = tensor[:64]
            if bool((sample[:, :1] != sample[:, 1:]).any()):
                log.warning(COLOUR_TO_GREY, str(self.path), "the first images")
            luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            tensor = (tensor.float() * luma).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        size = self.resolution
        if size is not None and tuple(tensor.shape[-2:]) != (size, size):
            if self.resize_mode == "none":
                raise ValueError(
                    f"Array images are {tensor.shape[-1]}x{tensor.shape[-2]}, not {size}x{size}; set "
                    "`resize_mode='resize'` or `'center_crop'`."
                )
            tensor = resize_uint8(tensor, size, center_crop=self.resize_mode == "center_crop")
        return tensor.contiguous()


def labels_from_folders(names: list[str], source: str) -> tuple[torch.Tensor | None, list[str] | None]:
    """Class ids from the first-level folder of each relative name (``None`` when all are at the root).

    A zip whose single top-level folder wraps the class folders (``train/cat/0.png``) is handled by
    using the deepest common folder level above the files as the root.
    """
    parts = [PurePosixPath(name).parts[:-1] for name in names]
    depth = 0
    while all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    folders = [p[depth] if len(p) > depth else None for p in parts]
    if all(folder is None for folder in folders):
        return None, None
    if any(folder is None for folder in folders):
        loose = [name for name, folder in zip(names, folders, strict=True) if folder is None][:3]
        raise ValueError(
            f"{source!r} mixes images in class sub-folders with images at its top level (e.g. {loose}); "
            "move every image into a class folder, or put them all at the top level."
        )
    class_names = sorted(set(folders))  # type: ignore[arg-type]
    if len(class_names) == 1:
        return None, None
    index = {name: i for i, name in enumerate(class_names)}
    return torch.tensor([index[f] for f in folders], dtype=torch.int64), class_names


def load_array_file(path: Path) -> tuple[np.ndarray, torch.Tensor | None]:
    """Load ``(N, H, W, C)`` images (and labels) from an ``.npy`` or ``.npz`` file, as uint8.

    uint16 and float arrays follow the bit-depth policy of image files
    (:func:`~lightning_genaug.data.files.pixels_to_uint8`).
    """
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"Cannot read array file {str(path)!r} ({error}).") from error
    labels = None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            image_key = next((k for k in ("images", "x", "arr_0") if k in data.files), None)
            if image_key is None:
                raise ValueError(f"{str(path)!r} has arrays {data.files}; name the images array `images`.")
            images = data[image_key]
            label_key = next((k for k in ("labels", "y") if k in data.files), None)
            if label_key is not None:
                labels = torch.from_numpy(np.asarray(data[label_key])).long()
    else:
        images = data
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Images in {str(path)!r} have shape {images.shape}; expected (N, H, W, C) with C in 1, 3, 4 "
            "(channels last) or (N, H, W)."
        )
    images = pixels_to_uint8(images, str(path))
    if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
        raise ValueError(
            f"{str(path)!r} has labels of shape {tuple(labels.shape)} for {len(images)} images; "
            "expected one integer label per image, shape (N,)."
        )
    return images, labels


def resize_uint8(images: torch.Tensor, size: int, center_crop: bool = False) -> torch.Tensor:
    """Antialiased resize of uint8 ``(N, C, H, W)`` images to ``(N, C, size, size)``."""
    if center_crop:
        side = min(images.shape[-2:])
        top, left = (images.shape[-2] - side) // 2, (images.shape[-1] - side) // 2
        images = images[..., top : top + side, left : left + side]
    resized = torch.nn.functional.interpolate(
        images.float(), size=(size, size), mode="bicubic", antialias=True, align_corners=False
    )
    return resized.round().clamp(0, 255).to(torch.uint8)
