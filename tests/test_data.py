"""DataModules: every source emits the batch contract, and bad input gets an error naming the fix."""

from __future__ import annotations

import logging
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_genaug.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    ImageDataModule,
    split_batch,
)
from lightning_genaug.data.files import LazyImages


def write_image(path: Path, size: tuple[int, int] = (8, 8), mode: str = "RGB", value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = len(mode) if mode != "L" else 1
    array = np.full((size[1], size[0], channels), value, dtype=np.uint8).squeeze(-1 if channels == 1 else ())
    Image.fromarray(array, mode=mode).save(path)


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for label, name in enumerate(["cat", "dog"]):
        for i in range(3):
            write_image(root / name / f"{i}.png", value=40 * label + 10 * i)
    return root


def first_batch(dm) -> tuple[torch.Tensor, torch.Tensor | None]:
    dm.setup("fit")
    return split_batch(next(iter(dm.train_dataloader())))


def test_digits_batches_follow_the_contract():
    dm = DigitsDataModule(resolution=16, batch_size=8)
    images, labels = first_batch(dm)
    assert images.shape == (8, 1, 16, 16) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert images.min() == -1 and images.max() == 1  # the digits span the full range
    assert labels.dtype == torch.int64 and labels.shape == (8,)
    assert dm.num_classes == 10 and dm.num_images == 1797 and dm.image_shape == (1, 16, 16)


def test_digits_rgb_subset_and_validation_split():
    dm = DigitsDataModule(resolution=8, channels=3, max_images=100, val_fraction=0.2, batch_size=4)
    dm.setup("fit")
    assert dm.image_shape == (3, 8, 8)
    assert len(dm.train_dataset) == 80 and len(dm.val_dataset) == 20
    images, _ = split_batch(next(iter(dm.val_dataloader())))
    torch.testing.assert_close(images[:, 0], images[:, 2])  # grey replicated to RGB


def test_test_loader_is_the_validation_split_or_every_image():
    with_val = DigitsDataModule(resolution=8, max_images=100, val_fraction=0.2, batch_size=50)
    with_val.setup()
    assert len(with_val.test_dataloader().dataset) == 20
    without_val = DigitsDataModule(resolution=8, max_images=100, xflip=True, batch_size=50)
    assert without_val.val_dataloader() == []
    assert len(without_val.test_dataloader().dataset) == 100  # no mirrored copies


def test_max_images_subset_is_fixed_by_seed():
    def subset(seed: int) -> torch.Tensor:
        dm = DigitsDataModule(resolution=8, max_images=50, seed=seed)
        dm.setup()
        return dm.train_dataset.images

    assert torch.equal(subset(0), subset(0))
    assert not torch.equal(subset(0), subset(1))


def test_xflip_doubles_the_dataset_with_mirrored_copies():
    dm = DigitsDataModule(resolution=8, max_images=10, xflip=True)
    dm.setup()
    assert len(dm.train_dataset) == 20
    original, label = dm.train_dataset[3]
    mirrored, mirrored_label = dm.train_dataset[13]
    assert torch.equal(mirrored, original.flip(-1)) and label == mirrored_label


def test_folder_with_class_subfolders(class_folder: Path):
    dm = ImageDataModule(class_folder, batch_size=6)
    images, labels = first_batch(dm)
    assert images.shape == (6, 3, 8, 8)
    assert dm.class_names == ["cat", "dog"] and dm.num_classes == 2
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_zip_of_a_folder_matches_the_folder(class_folder: Path, tmp_path: Path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(class_folder.rglob("*.png")):
            zf.write(file, "train/" + file.relative_to(class_folder).as_posix())
    from_zip, from_folder = ImageDataModule(archive), ImageDataModule(class_folder)
    from_zip.setup(), from_folder.setup()
    assert torch.equal(from_zip.train_dataset.images, from_folder.train_dataset.images)
    assert torch.equal(from_zip.train_dataset.labels, from_folder.train_dataset.labels)
    assert from_zip.class_names == ["cat", "dog"]


def test_unlabelled_folder_gives_image_only_batches(tmp_path: Path):
    for i in range(4):
        write_image(tmp_path / f"{i}.png")
    dm = ImageDataModule(tmp_path, batch_size=2)
    images, labels = first_batch(dm)
    assert labels is None and dm.num_classes == 0 and images.shape == (2, 3, 8, 8)


def test_grayscale_rgba_and_channel_conversion(tmp_path: Path, caplog):
    write_image(tmp_path / "gray.png", mode="L", value=200)
    write_image(tmp_path / "rgba.png", mode="RGBA", value=200)
    with caplog.at_level(logging.WARNING):
        dm = ImageDataModule(tmp_path, channels=3)
        assert dm.image_shape == (3, 8, 8)
    assert "alpha" in caplog.text
    assert ImageDataModule(tmp_path, channels=1).image_shape == (1, 8, 8)


def test_resize_and_center_crop_are_explicit(tmp_path: Path):
    write_image(tmp_path / "a.png", size=(16, 12))
    write_image(tmp_path / "b.png", size=(8, 8))
    with pytest.raises(ValueError, match="different sizes.*resize_mode"):
        ImageDataModule(tmp_path).image_shape
    with pytest.raises(ValueError, match="a.png.*resize_mode"):
        ImageDataModule(tmp_path, resolution=8).image_shape
    assert ImageDataModule(tmp_path, resolution=8, resize_mode="resize").image_shape == (3, 8, 8)
    assert ImageDataModule(tmp_path, resolution=4, resize_mode="center_crop").image_shape == (3, 4, 4)


def test_center_crop_keeps_the_centre(tmp_path: Path):
    array = np.zeros((8, 24, 3), dtype=np.uint8)
    array[:, 8:16] = 255  # a white central square in a black wide image
    Image.fromarray(array).save(tmp_path / "wide.png")
    dm = ImageDataModule(tmp_path, resolution=8, resize_mode="center_crop")
    dm.setup()
    assert dm.train_dataset.images.min() == 255


def test_empty_folder_error_names_the_path(tmp_path: Path):
    with pytest.raises(ValueError, match=f"No readable image found in '{tmp_path}'"):
        ImageDataModule(tmp_path).image_shape


def test_missing_path_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageDataModule(tmp_path / "nope").image_shape


def test_corrupt_and_truncated_files_name_the_file(tmp_path: Path, caplog):
    write_image(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    full = tmp_path / "full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(full)
    (tmp_path / "truncated.jpg").write_bytes(full.read_bytes()[:300])
    full.unlink()
    with pytest.raises(ValueError, match="broken.png.*skip_corrupt=True"):
        ImageDataModule(tmp_path).image_shape
    (tmp_path / "broken.png").unlink()
    with pytest.raises(ValueError, match="truncated.jpg"):
        ImageDataModule(tmp_path, resolution=8, resize_mode="resize").image_shape
    with caplog.at_level(logging.WARNING):
        dm = ImageDataModule(tmp_path, resolution=8, resize_mode="resize", skip_corrupt=True)
        assert dm.num_images == 1
    assert "truncated.jpg" in caplog.text


def test_images_mixed_with_class_folders_is_an_error(class_folder: Path):
    write_image(class_folder / "stray.png")
    with pytest.raises(ValueError, match="stray.png"):
        ImageDataModule(class_folder).image_shape


def test_npz_with_labels_and_npy(tmp_path: Path):
    images = np.random.default_rng(0).integers(0, 255, (10, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(10) % 3
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    dm = ImageDataModule(tmp_path / "data.npz", batch_size=10)
    dm.setup()
    assert dm.num_classes == 3
    first_image, first_label = dm.train_dataset[0]
    expected = torch.from_numpy(images[0]).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(first_image, expected)
    assert first_label == 0
    np.save(tmp_path / "gray.npy", images[..., 0])
    assert ImageDataModule(tmp_path / "gray.npy", channels=1).image_shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 8, 8, 3), dtype=np.int64), "type int64.*uint8"),
        (np.zeros((4, 8, 8, 5), dtype=np.uint8), r"shape \(4, 8, 8, 5\).*channels last"),
        (np.zeros((8, 8), dtype=np.uint8), r"shape \(8, 8\)"),
    ],
)
def test_bad_arrays_name_the_shape_or_dtype(tmp_path: Path, array: np.ndarray, match: str):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(ValueError, match=match):
        ImageDataModule(tmp_path / "bad.npy").image_shape


def test_labels_that_do_not_match_images(tmp_path: Path):
    np.savez(tmp_path / "data.npz", images=np.zeros((4, 8, 8, 3), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="labels of shape \\(3,\\) for 4 images"):
        ImageDataModule(tmp_path / "data.npz").image_shape


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"resize_mode": "squash"}, "resize_mode.*center_crop"),
        ({"channels": 4}, "channels"),
    ],
)
def test_constructor_arguments_are_checked(tmp_path: Path, kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        ImageDataModule(tmp_path, **kwargs)


def test_cifar10_pickles_and_image_folder(tmp_path: Path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 9]}
        with (batches / name).open("wb") as handle:
            pickle.dump(batch, handle)
    (batches / "batches.meta").write_bytes(pickle.dumps({}))
    train = CIFAR10DataModule(tmp_path)
    assert train.num_images == 20 and train.image_shape == (3, 32, 32) and train.num_classes == 10
    assert CIFAR10DataModule(batches, split="test").num_images == 4

    folder = tmp_path / "jpegs"
    for name in ["airplane", "truck"]:
        write_image(folder / "train" / name / "0001.png", size=(32, 32))
    assert CIFAR10DataModule(folder).num_classes == 2


class _Python2Pickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 strings (``BINSTRING``), as the cifar-10-python release holds them."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_string(self, obj: bytes) -> None:
        header = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else None
        self.write((header or pickle.BINSTRING + struct.pack("<i", len(obj))) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_string


def write_release_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    """A batch file laid out as the release's: a Python 2 pickle (protocol 2) of a dict of byte strings."""
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": labels, b"data": data}
    batch[b"filenames"] = [b"img_%d.png" % i for i in range(len(labels))]
    with path.open("wb") as handle:
        _Python2Pickler(handle, protocol=2).dump(batch)


def test_cifar10_batches_in_the_release_format_are_read_as_data(tmp_path: Path):
    data = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        write_release_batch(tmp_path / name, data, [3, 0, 9])
    with (tmp_path / "batches.meta").open("wb") as handle:
        _Python2Pickler(handle, protocol=2).dump({b"label_names": [b"airplane"], b"num_vis": 3072})
    assert b"cnumpy" in (tmp_path / "data_batch_1").read_bytes()[:200]  # a numpy array, pickled as numpy does
    images, labels = CIFAR10DataModule(tmp_path).load()
    assert images.shape == (15, 3, 32, 32) and labels.tolist() == [3, 0, 9] * 5
    np.testing.assert_array_equal(images[:3].numpy(), data.reshape(3, 3, 32, 32))


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("code", r"is refused: the pickle refers to `os\.makedirs`, which a CIFAR-10 batch does not need"),
        ("truncated", r"is refused: .*(EOF|truncated|ran out)"),
        ("layout", r"does not hold the release's layout: .*'data' \(uint8, N x 3072\)"),
    ],
)
def test_cifar10_batch_that_runs_code_or_is_not_a_batch_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    marker = tmp_path / "code-ran"
    write_release_batch(batches / "test_batch", np.zeros((1, 3072), dtype=np.uint8), [0])
    if content == "code":
        (batches / "test_batch").write_bytes(pickle.dumps({b"data": _RunsCode(marker), b"labels": [0]}))
    elif content == "truncated":
        (batches / "test_batch").write_bytes((batches / "test_batch").read_bytes()[:-50])
    else:
        write_release_batch(batches / "test_batch", np.zeros((1, 100), dtype=np.uint8), [0])
    with pytest.raises(ValueError, match=r"CIFAR-10 batch '.*test_batch' " + message):
        CIFAR10DataModule(tmp_path, split="test").load()
    assert not marker.exists()


def test_cifar10_wrong_size_images(tmp_path: Path):
    write_image(tmp_path / "a.png", size=(8, 8))
    with pytest.raises(ValueError, match="not 32x32"):
        CIFAR10DataModule(tmp_path).image_shape


def test_split_batch_accepts_every_batch_form():
    images, labels = torch.zeros(2, 3, 4, 4), torch.tensor([0, 1])
    assert split_batch(images)[1] is None
    assert split_batch((images, labels))[1] is labels
    assert split_batch({"image": images, "label": labels})[0] is images
    assert split_batch({"img": images}, image_key="img")[0] is images
    with pytest.raises(ValueError, match="image_key"):
        split_batch({"img": images})


# ------------------------------------------------------------------------------ lazy decoding


def distinct_class_folder(root: Path, per_class: int = 5, size: tuple[int, int] = (12, 10)) -> Path:
    """Two class folders of distinct, non-square images (so resizing and order are visible)."""
    rng = np.random.default_rng(0)
    for name in ["cat", "dog"]:
        for i in range(per_class):
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    return root


def all_items(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(images), torch.stack(labels)


@pytest.mark.parametrize("as_zip", [False, True])
def test_lazy_mode_gives_the_same_data_as_in_memory(tmp_path: Path, as_zip: bool):
    source = distinct_class_folder(tmp_path / "images")
    if as_zip:
        archive = tmp_path / "images.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for file in sorted(source.rglob("*.png")):
                zf.write(file, file.relative_to(source).as_posix())
        source = archive
    options = dict(
        resolution=8, resize_mode="center_crop", xflip=True, max_images=8, val_fraction=0.25, seed=3
    )
    eager = ImageDataModule(source, in_memory=True, **options)
    lazy = ImageDataModule(source, in_memory=False, **options)
    eager.setup(), lazy.setup()
    assert lazy.image_shape == eager.image_shape == (3, 8, 8) and lazy.class_names == ["cat", "dog"]
    for split in ("train_dataset", "val_dataset"):
        lazy_images, lazy_labels = all_items(getattr(lazy, split))
        eager_images, eager_labels = all_items(getattr(eager, split))
        assert torch.equal(lazy_images, eager_images) and torch.equal(lazy_labels, eager_labels)
    assert len(lazy.train_dataset) == 12  # 6 training images, doubled by x-flip


def test_lazy_zip_decodes_in_dataloader_workers(tmp_path: Path):
    source = distinct_class_folder(tmp_path / "images", per_class=4)
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(source.rglob("*.png")):
            zf.write(file, file.relative_to(source).as_posix())
    dm = ImageDataModule(
        archive, resolution=8, resize_mode="resize", in_memory=False, num_workers=2, batch_size=2
    )
    dm.setup()
    seen = torch.cat([images for images, _ in dm.test_dataloader()])
    expected = ImageDataModule(archive, resolution=8, resize_mode="resize", in_memory=True)
    expected.setup()
    assert torch.equal(seen, torch.stack([expected.train_dataset[i][0] for i in range(8)]))


def test_default_mode_follows_the_memory_budget(tmp_path: Path):
    source = distinct_class_folder(tmp_path / "images", per_class=2, size=(8, 8))

    def images(dm: ImageDataModule):
        dm.setup()
        return dm.train_dataset.images

    assert isinstance(images(ImageDataModule(source)), torch.Tensor)  # 4 * 3 * 8 * 8 bytes fit in 2 GiB
    assert isinstance(images(ImageDataModule(source, memory_budget_gb=1e-7)), LazyImages)


def test_lazy_corrupt_files_name_the_file_or_are_replaced(tmp_path: Path, caplog):
    write_image(tmp_path / "a.png", value=10)
    write_image(tmp_path / "b.png", value=20)
    (tmp_path / "c.png").write_bytes(b"not an image")
    strict = ImageDataModule(tmp_path, in_memory=False)
    strict.setup()
    with pytest.raises(ValueError, match="c.png.*skip_corrupt=True"):
        strict.train_dataset[2]
    tolerant = ImageDataModule(tmp_path, in_memory=False, skip_corrupt=True)
    tolerant.setup()
    with caplog.at_level(logging.WARNING):
        replaced = tolerant.train_dataset[2]
    assert "c.png" in caplog.text
    torch.testing.assert_close(replaced, tolerant.train_dataset[0])  # the next readable image, wrapping round
