"""Data larger than RAM: ``prepare`` writes litdata chunks, ``StreamingImageDataModule`` streams them.

`litdata <https://github.com/Lightning-AI/litdata>`_ (Lightning's streaming data library) does the
chunk format, the local cache of remote data, shuffling, sharding across ranks and nodes, and
mid-epoch resumable loaders. What this module adds is the image convention of the package:

* :func:`prepare_dataset` decodes a folder or zip once at a fixed resolution into chunks of items
  ``{"image": uint8 (C, H, W), "label": int, "index": int}`` (``index`` is the image's position in
  the sorted source) and writes ``genaug.json`` next to litdata's ``index.json``: resolution,
  channels, class names and the number of images.
* :class:`StreamingImageDataModule` emits the package's batch contract (float ``(B, C, H, W)`` in
  [-1, 1], int64 labels) from a local directory or any URL litdata reads (``s3://``, ``gs://`` ...).

litdata is an optional dependency: ``pip install "lightning-genaug[stream]"``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_genaug._checks import check_positive_int
from lightning_genaug.data.files import CorruptImageError, ImageDecoder, ImageFiles, open_image_files
from lightning_genaug.data.images import labels_from_folders
from lightning_genaug.data.resume import (
    RandomStatesInCheckpoint,
    loader_generator,
    rng_states,
    set_rng_states,
)
from lightning_genaug.images import from_uint8
from lightning_genaug.imports import require_litdata

log = logging.getLogger(__name__)

METADATA_FILE = "genaug.json"


@dataclass(frozen=True)
class _EncodeImage:
    """litdata ``optimize`` function: one ``(index, name, label)`` input -> zero or one chunk item.

    An unreadable image without ``skip_corrupt`` is not raised in the worker (litdata would print the
    worker's traceback and its own): its message goes to a file in ``failures``, later inputs are
    passed over, and :func:`prepare_dataset` raises it as one error once ``optimize`` returns.
    """

    files: ImageFiles
    decoder: ImageDecoder
    skip_corrupt: bool
    failures: str

    def __call__(self, item: tuple[int, str, int]) -> Iterator[dict[str, Any]]:
        index, name, label = item
        if not self.skip_corrupt and any(Path(self.failures).iterdir()):
            return  # the data set is refused already: decode nothing more
        try:
            array = self.decoder(self.files.read(name), name)
        except CorruptImageError as error:
            if not self.skip_corrupt:
                (Path(self.failures) / f"{index:012d}.txt").write_text(str(error))
                return
            log.warning("%s Skipping it (`--skip-corrupt`).", error)
            return
        yield {"image": torch.from_numpy(array).permute(2, 0, 1).contiguous(), "label": label, "index": index}


def prepare_dataset(
    source: str | Path,
    output_dir: str | Path,
    resolution: int,
    center_crop: bool = False,
    channels: int = 3,
    workers: int = 1,
    skip_corrupt: bool = False,
    chunk_bytes: str = "64MB",
) -> dict[str, Any]:
    """Convert a folder or zip of images into litdata chunks for :class:`StreamingImageDataModule`.

    Args:
        source: folder tree (class sub-folders give labels) or ``.zip`` of one.
        output_dir: a new or empty local directory.
        resolution: output side; images of another size are resized (antialiased Lanczos).
        center_crop: crop each image to its central square before resizing (else the aspect ratio
            is not kept).
        channels: 1 (grey) or 3 (RGB).
        workers: processes decoding in parallel.
        skip_corrupt: leave unreadable files out with a warning instead of stopping.
        chunk_bytes: target chunk size (litdata's ``chunk_bytes``).

    Returns:
        The metadata written to ``output_dir/genaug.json``.

    Raises:
        FileExistsError: ``output_dir`` is not empty.
        ValueError: an unreadable image without ``skip_corrupt`` (nothing is left in ``output_dir``).
    """
    litdata = require_litdata()
    check_positive_int("resolution", resolution)
    check_positive_int("workers", workers)
    output_dir = Path(output_dir).expanduser().resolve()
    if output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"`output_dir` {str(output_dir)!r} is not empty; choose a new directory.")
    files = open_image_files(Path(source).expanduser())
    names = files.names()
    if not names:
        raise ValueError(f"No image found in {files.source!r}; check the source path.")
    labels, class_names = labels_from_folders(names, files.source)
    inputs = [(i, name, -1 if labels is None else int(labels[i])) for i, name in enumerate(names)]
    decoder = ImageDecoder(resolution, "center_crop" if center_crop else "resize", channels)
    _warn_if_upsampling(files, names, resolution)
    caller_random_states = rng_states()  # litdata.optimize seeds torch, numpy and random with 42
    created = not output_dir.exists()
    with tempfile.TemporaryDirectory(prefix="genaug-prepare-") as failures:
        try:
            litdata.optimize(
                fn=_EncodeImage(files, decoder, skip_corrupt, failures),
                inputs=inputs,
                output_dir=str(output_dir),
                chunk_bytes=chunk_bytes,
                num_workers=workers,
                start_method="fork" if os.name == "posix" else None,
                verbose=False,
            )
        finally:
            set_rng_states(caller_random_states)
        reports = sorted(Path(failures).iterdir())
        if reports:
            _remove_output(output_dir, created)
            raise ValueError(
                f"{reports[0].read_text().rstrip('.')}; remove or replace it, or pass --skip-corrupt "
                "(skip_corrupt=True) to leave unreadable files out."
            )
    index = json.loads((output_dir / "index.json").read_text())
    metadata = {
        "resolution": resolution,
        "channels": channels,
        "class_names": class_names,
        "num_images": sum(chunk["chunk_size"] for chunk in index["chunks"]),
        "source": files.source,
    }
    (output_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2))
    log.info("Wrote %d images to %s", metadata["num_images"], output_dir)
    return metadata


def _warn_if_upsampling(files: Any, names: list[str], resolution: int) -> None:
    """Warn, with the factor and the fix, when the images (the first 16) are smaller than ``resolution``."""
    from PIL import Image

    sides = []
    for name in names[:16]:
        try:
            with Image.open(io.BytesIO(files.read(name))) as image:
                sides.append(min(image.size))
        except Exception:  # an unreadable file is reported by the encoding pass, with its own error
            continue
    if sides and max(sides) < resolution:
        native = 1 << (max(sides).bit_length() - 1)
        log.warning(
            "The images are at most %d px (the first %d read): --resolution %d upsamples them up to %.0fx, "
            "and the network learns interpolated pixels. Pass --resolution %d unless that is wanted.",
            max(sides),
            len(sides),
            resolution,
            resolution / min(sides),
            native,
        )


def _remove_output(output_dir: Path, created: bool) -> None:
    """Remove what ``optimize`` wrote to ``output_dir`` (empty before), and the folder if it made it."""
    for path in sorted(output_dir.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    if created:
        output_dir.rmdir()


def read_metadata(input_dir: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``genaug.json`` record of a prepared dataset (local path or a URL litdata reads)."""
    if "://" not in input_dir or input_dir.startswith("local:"):
        path = Path(input_dir.removeprefix("local:")).expanduser() / METADATA_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} does not exist: `input_dir` must be a directory written by "
                "`lightning-genaug prepare SRC OUT --resolution R`."
            )
        return json.loads(path.read_text())
    from litdata.streaming.downloader import get_downloader

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, METADATA_FILE)
        get_downloader(input_dir, tmp, [], storage_options or {}).download_file(
            input_dir.rstrip("/") + "/" + METADATA_FILE, local
        )
        return json.loads(Path(local).read_text())


def _streaming_dataset_class() -> type:
    """A ``litdata.StreamingDataset`` emitting the batch contract (defined once litdata is importable)."""
    litdata = require_litdata()

    class StreamingImages(litdata.StreamingDataset):
        """Items ``(float (C, H, W) in [-1, 1], int64 label)``, or the image alone when unlabelled."""

        def __init__(self, *args: Any, use_labels: bool = True, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.use_labels = use_labels

        def __getitem__(self, index: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
            item = super().__getitem__(index)
            image = from_uint8(item["image"])
            if not self.use_labels:
                return image
            return image, torch.tensor(item["label"], dtype=torch.int64)

    return StreamingImages


def _streaming_loader_class() -> type:
    """litdata's ``StreamingDataLoader`` with the process's random states in its checkpointed state."""
    litdata = require_litdata()

    class StreamingLoader(RandomStatesInCheckpoint, litdata.StreamingDataLoader):
        """Resumes the data order (litdata) and the random states (ours) exactly."""

    return StreamingLoader


class StreamingImageDataModule(pl.LightningDataModule):
    """Images prepared by ``lightning-genaug prepare``, streamed with litdata.

    Each epoch is shuffled (seeded: every rank draws the same permutation of chunks and items, and
    each rank then reads its own disjoint share; with several nodes litdata shards per node and per
    rank). The train loader is a ``litdata.StreamingDataLoader``: Lightning saves its state in the
    checkpoint and a run resumed with ``ckpt_path`` continues the data order mid-epoch.

    Args:
        input_dir: prepared directory, or a URL litdata reads (``s3://bucket/ffhq256`` ...).
        val_dir: an optional second prepared directory for ``val_dataloader``/``test_dataloader``.
        batch_size: images per batch and per process.
        num_workers: DataLoader workers per process.
        shuffle: shuffle the training data every epoch.
        seed: shuffling seed (the same on every rank).
        use_labels: emit ``(images, labels)`` when the data set has classes.
        cache_dir: where remote chunks are cached (litdata's default when ``None``).
        max_cache_size: bound of that cache (e.g. ``"50GB"``).

    Batches: float ``(B, C, H, W)`` in [-1, 1], plus int64 labels ``(B,)`` for labelled data.
    """

    def __init__(
        self,
        input_dir: str,
        val_dir: str | None = None,
        batch_size: int = 32,
        num_workers: int = 2,
        shuffle: bool = True,
        seed: int = 0,
        use_labels: bool = True,
        cache_dir: str | None = None,
        max_cache_size: str = "50GB",
    ) -> None:
        super().__init__()
        require_litdata()
        self.input_dir = str(input_dir)
        self.val_dir = None if val_dir is None else str(val_dir)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.num_workers = check_positive_int("num_workers", num_workers, allow_zero=True)
        self.shuffle = shuffle
        self.seed = seed
        self.use_labels = use_labels
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size
        self._metadata: dict[str, Any] | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """The ``genaug.json`` record: resolution, channels, class names, number of images."""
        if self._metadata is None:
            self._metadata = read_metadata(self.input_dir)
        return self._metadata

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images this DataModule emits."""
        side = int(self.metadata["resolution"])
        return int(self.metadata["channels"]), side, side

    @property
    def class_names(self) -> list[str] | None:
        return self.metadata.get("class_names")

    @property
    def num_classes(self) -> int:
        """Number of classes (0 for unconditional data or ``use_labels=False``)."""
        return len(self.class_names or []) if self.use_labels else 0

    @property
    def num_images(self) -> int:
        return int(self.metadata["num_images"])

    def _dataset(self, input_dir: str, shuffle: bool) -> Any:
        dataset_class = _streaming_dataset_class()
        return dataset_class(
            input_dir,
            cache_dir=self.cache_dir,
            shuffle=shuffle,
            drop_last=True if shuffle else None,
            seed=self.seed,
            max_cache_size=self.max_cache_size,
            use_labels=self.use_labels and self.num_classes > 0,
        )

    def _loader(self, input_dir: str, shuffle: bool) -> Any:
        return _streaming_loader_class()(
            self._dataset(input_dir, shuffle),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=shuffle,
            persistent_workers=self.num_workers > 0,
            generator=loader_generator(self.seed),
        )

    def train_dataloader(self) -> Any:
        return self._loader(self.input_dir, shuffle=self.shuffle)

    @property
    def has_validation_data(self) -> bool:
        """Whether :meth:`val_dataloader` yields images (a ``val_dir`` is given)."""
        return self.val_dir is not None

    def val_dataloader(self) -> Any:
        return [] if self.val_dir is None else self._loader(self.val_dir, shuffle=False)

    def test_dataloader(self) -> Any:
        """The ``val_dir`` data when given, else the training data, in order."""
        return self._loader(self.val_dir or self.input_dir, shuffle=False)


def prepare_command(argv: list[str], options: argparse.Namespace | None = None) -> dict[str, Any]:
    """``lightning-genaug prepare SRC OUT --resolution R [--center-crop] [--workers N] ...``.

    A bad value, a missing source, a non-empty ``OUT``, an unreadable image (without
    ``--skip-corrupt``) or a missing litdata end the command with one line, exit code 2.

    Args:
        argv: the arguments after ``prepare``.
        options: ``argv`` parsed already (by the caller, before torch was imported).
    """
    from lightning_genaug.tools.arguments import ToolArgumentError
    from lightning_genaug.tools.parsers import check_prepare_paths, prepare_parser

    parser = prepare_parser()
    options = parser.parse_args(argv) if options is None else options
    start = time.perf_counter()
    try:
        check_prepare_paths(options)
        metadata = prepare_dataset(
            options.source,
            options.output_dir,
            options.resolution,
            center_crop=options.center_crop,
            channels=options.channels,
            workers=options.workers,
            skip_corrupt=options.skip_corrupt,
            chunk_bytes=options.chunk_bytes,
        )
    except ToolArgumentError as error:
        parser.error(parser.option_message(error).rstrip("."))
    except (ValueError, OSError, ModuleNotFoundError) as error:
        parser.error(str(error).rstrip("."))
    seconds = time.perf_counter() - start
    print(
        f"Wrote {metadata['num_images']} images ({options.resolution}x{options.resolution}, "
        f"{len(metadata['class_names'] or [])} classes) to {options.output_dir} in {seconds:.1f} s "
        f"({metadata['num_images'] / seconds:.0f} images/s)."
    )
    return metadata
