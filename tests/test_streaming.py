"""``prepare`` + ``StreamingImageDataModule``: every image once, the batch contract, seeded shuffling,
mid-epoch resume from a checkpoint, and a clear error without litdata."""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from streaming_data import image_indices, write_indexed_images
from torch import nn

from lightning_genaug.data import StreamingImageDataModule, prepare_dataset

COUNT, BATCH = 48, 4


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("streaming")
    write_indexed_images(root / "images", COUNT, size=12)
    (root / "images" / "class1" / "broken.png").write_bytes(b"not an image")
    prepare_dataset(root / "images", root / "chunks", resolution=8, workers=1, skip_corrupt=True)
    return root / "chunks"


def epoch_indices(loader) -> list[int]:
    return [i for images, _ in loader for i in image_indices(images)]


def test_prepare_writes_every_readable_image_once_with_its_label(prepared: Path):
    metadata = json.loads((prepared / "genaug.json").read_text())
    assert metadata["num_images"] == COUNT and metadata["class_names"] == ["class0", "class1"]
    dm = StreamingImageDataModule(str(prepared), batch_size=BATCH, num_workers=0)
    assert dm.image_shape == (3, 8, 8) and dm.num_classes == 2
    seen = []
    for images, labels in dm.test_dataloader():
        assert (
            images.shape == (BATCH, 3, 8, 8) and images.dtype == torch.float32 and labels.dtype == torch.int64
        )
        indices = image_indices(images)
        assert [i % 2 for i in indices] == labels.tolist()  # image i is in folder class{i % 2}
        seen += indices
    assert sorted(seen) == list(range(COUNT))


def test_training_order_is_shuffled_per_epoch_and_fixed_by_seed(prepared: Path):
    def orders(seed: int) -> tuple[list[int], list[int]]:
        loader = StreamingImageDataModule(
            str(prepared), batch_size=BATCH, num_workers=0, seed=seed
        ).train_dataloader()
        return epoch_indices(loader), epoch_indices(loader)

    first, second = orders(0)
    assert sorted(first) == sorted(second) == list(range(COUNT))
    assert first != sorted(first) and first != second
    assert orders(0) == (first, second) and orders(1)[0] != first


class IndexRecorder(pl.LightningModule):
    """Records the image indices of every training batch (one dummy parameter to optimise)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(image_indices(batch[0]))
        return self.weight * 0.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path: Path, prepared: Path, steps: int, num_workers: int, ckpt_path: Path | None = None):
    model = IndexRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    dm = StreamingImageDataModule(str(prepared), batch_size=BATCH, num_workers=num_workers)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model.seen, trainer


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resuming_from_a_checkpoint_continues_the_data_order(
    tmp_path: Path, prepared: Path, num_workers: int
):
    uninterrupted, _ = fit(tmp_path / "a", prepared, steps=8, num_workers=num_workers)
    first_part, trainer = fit(tmp_path / "b", prepared, steps=3, num_workers=num_workers)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    second_part, _ = fit(
        tmp_path / "c", prepared, steps=8, num_workers=num_workers, ckpt_path=tmp_path / "mid.ckpt"
    )
    assert first_part + second_part == uninterrupted


def test_prepare_refuses_a_non_empty_output_dir(tmp_path: Path):
    write_indexed_images(tmp_path / "images", 2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.bin").write_bytes(b"")
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_dataset(tmp_path / "images", tmp_path / "out", resolution=8)


def test_prepare_says_when_it_upsamples_and_to_what_resolution_not_to(tmp_path: Path, caplog):
    write_indexed_images(tmp_path / "images", 2, size=8)
    with caplog.at_level("WARNING", logger="lightning_genaug"):
        prepare_dataset(tmp_path / "images", tmp_path / "native", resolution=8, workers=1)
    assert "upsamples" not in caplog.text  # 8 px images at 8 px: nothing said
    with caplog.at_level("WARNING", logger="lightning_genaug"):
        prepare_dataset(tmp_path / "images", tmp_path / "up", resolution=64, workers=1)
    assert "--resolution 64 upsamples them up to 8x" in caplog.text and "Pass --resolution 8" in caplog.text


def test_missing_metadata_names_the_prepare_command(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="lightning-genaug prepare"):
        StreamingImageDataModule(str(tmp_path)).image_shape


def test_without_litdata_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr("lightning_genaug.imports.LITDATA_AVAILABLE", False)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "lightning-genaug\[stream\]"'):
        StreamingImageDataModule("anywhere")
