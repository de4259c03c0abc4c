"""Image files on disk: listing a folder or zip, decoding one file, and a lazily decoded image set.

Shared by :class:`~lightning_genaug.data.images.ImageDataModule` (in memory or lazy) and the
``lightning-genaug prepare`` converter, so every path decodes, converts and resizes alike.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
RESIZE_MODES = ("none", "resize", "center_crop")


class CorruptImageError(ValueError):
    """An image file that PIL cannot read (unknown format, truncated data, a decompression bomb)."""


class ImageDepthError(ValueError):
    """Pixel values of a type or range that has no unambiguous 8-bit reading; the message gives the fix."""


# What PIL raises on bytes that are not a readable image (truncated, malformed, a decompression bomb).
_UNREADABLE = (
    UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
    Image.DecompressionBombError,
)  # fmt: skip
# PIL modes of more than 8 bits per sample (one channel each); see `pixels_to_uint8`.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# PIL modes that `convert` cannot turn into RGB.
_UNCONVERTIBLE_MODES = ("LAB", "HSV")


def pixels_to_uint8(values: np.ndarray, source: str) -> np.ndarray:
    """Pixel values of any bit depth this package reads, as uint8; one policy for files and arrays.

    * ``uint8``: unchanged.
    * ``uint16`` (16-bit PNG/TIFF, PIL modes ``I;16`` and ``I;16B``, uint16 arrays): the high byte,
      ``v >> 8`` (what PIL itself does to the samples of a 16-bit RGB PNG), so ``65535 -> 255``.
    * floating point (PIL mode ``F``, float arrays): values in [0, 1], times 255, rounded.

    Raises:
        ImageDepthError: another dtype, floats outside [0, 1] or not finite; the message names
            ``source`` and says how to convert.

    >>> pixels_to_uint8(np.array([0, 257, 65535], dtype=np.uint16), "x").tolist()
    [0, 1, 255]
    >>> pixels_to_uint8(np.array([0.0, 0.5, 1.0]), "x").tolist()
    [0, 128, 255]
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind == "u" and values.dtype.itemsize == 2:
        return (values >> 8).astype(np.uint8)
    if values.dtype.kind == "f":
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ImageDepthError(
                f"{source!r} holds floating-point pixels in [{values.min()}, {values.max()}]; floats are "
                "read as [0, 1]. Scale them to [0, 1], or save the images as 8- or 16-bit PNG."
            )
        return np.rint(values * 255).astype(np.uint8)
    raise ImageDepthError(
        f"{source!r} holds pixels of type {values.dtype}; expected uint8 (0-255), uint16 (0-65535) or "
        "floats in [0, 1]. Convert them, e.g. `x.astype(np.uint8)` for integers already in 0-255."
    )


@dataclass(frozen=True)
class ImageDecoder:
    """Decodes one encoded image into uint8 ``(H, W, C)`` with the configured channels and size.

    Args:
        resolution: output side, or ``None`` to keep the image's size.
        resize_mode: ``"none"`` (an image of another size is an error), ``"resize"`` (antialiased
            Lanczos, aspect ratio not kept) or ``"center_crop"`` (central square, then resize).
        channels: 1 (``L``) or 3 (``RGB``); ``None`` keeps grey images grey and makes others RGB.
    """

    resolution: int | None = None
    resize_mode: str = "none"
    channels: int | None = 3

    def __call__(self, data: bytes, name: str) -> np.ndarray:
        """Decode ``data`` (the bytes of file ``name``) to ``(H, W, C)`` uint8.

        Raises:
            CorruptImageError: the bytes are not a readable image (the message names the file).
            ValueError: the image has the wrong size and ``resize_mode`` is ``"none"``.
        """
        try:
            with Image.open(io.BytesIO(data)) as pil_image:
                pil_image.load()
                upright = ImageOps.exif_transpose(pil_image)  # as viewers show it (EXIF orientation)
        except _UNREADABLE as error:
            raise CorruptImageError(
                f"Cannot read image {name!r} ({type(error).__name__}: {error})."
            ) from error
        return self._to_array(upright, name)

    @staticmethod
    def is_colour(data: bytes) -> bool | None:
        """Whether encoded image ``data`` has channels that differ somewhere (grey stored as RGB has not).

        Decoding such an image with ``channels=1`` discards its colour (PIL's ``L``: ITU-R 601 luma).
        ``None`` when the bytes are not a readable image.
        """
        try:
            with Image.open(io.BytesIO(data)) as pil_image:
                if pil_image.mode in ("1", "L", "LA", *HIGH_DEPTH_MODES):
                    return False
                rgb = np.asarray(pil_image.convert("RGB"))
        except _UNREADABLE:
            return None
        return bool((rgb[..., :1] != rgb[..., 1:]).any())

    def _to_array(self, pil_image: Image.Image, name: str) -> np.ndarray:
        if pil_image.mode in HIGH_DEPTH_MODES:
            pil_image = Image.fromarray(pixels_to_uint8(_samples(pil_image, name), name))
        elif pil_image.mode in _UNCONVERTIBLE_MODES:
            raise ImageDepthError(f"Image {name!r} is in colour space {pil_image.mode}; save it as RGB.")
        if pil_image.mode in ("RGBA", "LA", "PA") or "transparency" in pil_image.info:
            log.warning("Image %r has an alpha channel; it is dropped (converted to RGB).", name)
        channels = self.channels or (1 if pil_image.mode in ("L", "1") else 3)
        pil_image = self._resize(pil_image.convert("L" if channels == 1 else "RGB"), name)
        array = np.array(pil_image, dtype=np.uint8)  # writable, for torch.from_numpy
        return array[:, :, None] if array.ndim == 2 else array

    def _resize(self, pil_image: Image.Image, name: str) -> Image.Image:
        size = self.resolution
        if size is None or pil_image.size == (size, size):
            return pil_image
        if self.resize_mode == "none":
            raise ValueError(
                f"Image {name!r} is {pil_image.width}x{pil_image.height}, not {size}x{size}; set "
                "`resize_mode='resize'` (antialiased) or `'center_crop'`, or prepare the images at that size."
            )
        if self.resize_mode == "center_crop":
            side = min(pil_image.size)
            left, top = (pil_image.width - side) // 2, (pil_image.height - side) // 2
            pil_image = pil_image.crop((left, top, left + side, top + side))
        return pil_image.resize((size, size), Image.LANCZOS)


def _samples(pil_image: Image.Image, name: str) -> np.ndarray:
    """The samples of a one-channel high-depth image; PIL's 32-bit ``I`` is read as 16-bit data."""
    values = np.asarray(pil_image)
    if pil_image.mode != "I":
        return values
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageDepthError(
            f"Image {name!r} holds 32-bit integers in [{values.min()}, {values.max()}]; 32-bit images are "
            "read as 16-bit data (0-65535). Save it as an 8- or 16-bit PNG."
        )
    return values.astype(np.uint16)


class ImageFiles:
    """The image files of a folder tree or a zip archive: sorted relative names, bytes by name.

    Picklable, and safe to use from forked DataLoader workers (a zip is reopened in each process).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.source = str(path)
        self._archive: zipfile.ZipFile | None = None
        self._archive_pid: int | None = None

    @property
    def is_zip(self) -> bool:
        return self.path.suffix.lower() == ".zip"

    def names(self) -> list[str]:
        """Relative names (POSIX separators) of every image file, sorted."""
        if self.is_zip:
            members = self._zip().namelist()
            return sorted(
                n
                for n in members
                if not n.endswith("/") and PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES
            )
        return sorted(
            file.relative_to(self.path).as_posix()
            for file in self.path.rglob("*")
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
        )

    def read(self, name: str) -> bytes:
        """The bytes of image ``name`` (as listed by :meth:`names`)."""
        return self._zip().read(name) if self.is_zip else (self.path / name).read_bytes()

    def _zip(self) -> zipfile.ZipFile:
        if self._archive is None or self._archive_pid != os.getpid():
            try:
                self._archive = zipfile.ZipFile(self.path)
            except zipfile.BadZipFile as error:
                raise ValueError(f"{self.source!r} is not a valid zip archive ({error}).") from error
            self._archive_pid = os.getpid()
        return self._archive

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_archive": None, "_archive_pid": None}


def open_image_files(path: Path) -> ImageFiles:
    """:class:`ImageFiles` for a folder or a ``.zip``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is neither a folder nor a zip.
    """
    if not path.exists():
        raise FileNotFoundError(f"Image source {str(path)!r} does not exist; check `path`.")
    if not (path.is_dir() or path.suffix.lower() == ".zip"):
        raise ValueError(
            f"Unsupported image source {str(path)!r}: expected a folder, a .zip, a .npy or a .npz file."
        )
    return ImageFiles(path)


class LazyImages:
    """An image set that decodes each image when it is indexed; looks like a uint8 ``(N, C, H, W)`` tensor.

    ``images[i]`` is the decoded uint8 ``(C, H, W)`` tensor of image ``i``; ``images[index_tensor]`` is
    the subset as another :class:`LazyImages` (so splits and subsets cost no decoding). Memory is
    the list of names.

    Args:
        files: where the encoded images are.
        names: the images, in order.
        decoder: decodes one file.
        image_shape: ``(C, H, W)`` every decoded image must have.
        skip_corrupt: replace an unreadable image by the next readable one (with a warning)
            instead of raising.
    """

    def __init__(
        self,
        files: ImageFiles,
        names: list[str],
        decoder: ImageDecoder,
        image_shape: tuple[int, int, int],
        skip_corrupt: bool = False,
    ) -> None:
        self.files = files
        self.names = names
        self.decoder = decoder
        self.image_shape = tuple(image_shape)
        self.skip_corrupt = skip_corrupt

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.names), *self.image_shape)  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int | torch.Tensor) -> torch.Tensor | LazyImages:
        if isinstance(index, torch.Tensor) and index.ndim == 1:
            names = [self.names[i] for i in index.tolist()]
            return LazyImages(self.files, names, self.decoder, self.image_shape, self.skip_corrupt)
        index = int(index)
        for attempt in range(len(self.names)):
            name = self.names[(index + attempt) % len(self.names)]
            try:
                return self._decode(name)
            except CorruptImageError as error:
                if not self.skip_corrupt:
                    raise ValueError(f"{error} Remove or replace it, or pass `skip_corrupt=True`.") from error
                log.warning("%s Using the next image instead (`skip_corrupt=True`).", error)
        raise ValueError(f"No readable image found in {self.files.source!r}; check `path`.")

    def _decode(self, name: str) -> torch.Tensor:
        array = self.decoder(self.files.read(name), name)
        image = torch.from_numpy(array).permute(2, 0, 1)
        if tuple(image.shape) != self.image_shape:
            raise ValueError(
                f"Image {name!r} in {self.files.source!r} decodes to {tuple(image.shape)}, not "
                f"{self.image_shape} like the first image; set `resolution` and `resize_mode='resize'` "
                "or `'center_crop'`."
            )
        return image
