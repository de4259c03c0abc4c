"""KimgProgressBar: the run's pace in s/kimg and the time left to max_kimg or max_epochs, in the fit CLI."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.callbacks import KimgProgressBar
from lightning_genaug.callbacks import progress_bar as progress_bar_module
from lightning_genaug.cli import GenAugCLI
from lightning_genaug.models.stylegan2 import StyleGAN2ADA

BATCH = 8


@pytest.fixture
def one_second_per_call(monkeypatch):
    """The bar's clock advances by exactly one second at every reading."""
    ticks = itertools.count()
    monkeypatch.setattr(progress_bar_module.time, "perf_counter", lambda: float(next(ticks)))


class ReadTheBar(pl.Callback):
    """What the bar shows after each batch (list it after the bar)."""

    def __init__(self, bar: KimgProgressBar) -> None:
        self.bar, self.shown = bar, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.shown.append(self.bar.get_metrics(trainer, pl_module))


def fit(tmp_path: Path, module: pl.LightningModule, batches: int, **trainer_args) -> list[dict]:
    bar = KimgProgressBar(window=50)
    reader = ReadTheBar(bar)
    images = torch.rand(batches * BATCH, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[bar, reader],
        default_root_dir=tmp_path,
        **trainer_args,
    )
    trainer.fit(module, DataLoader(TensorDataset(images), batch_size=BATCH))
    return reader.shown


def test_pace_and_time_left_to_max_kimg(tmp_path: Path, one_second_per_call) -> None:
    model = StyleGAN2ADA("tiny", resolution=8, channels=1, num_classes=0, max_kimg=0.032)  # 4 batches
    shown = fit(tmp_path, model, batches=8, max_epochs=-1)
    assert len(shown) == 4  # max_kimg stopped the run
    # one clock reading per batch: 1 s per 8 images is 125 s per kimg
    assert [row["s/kimg"] for row in shown] == ["125.0"] * 4
    assert [row["left"] for row in shown] == ["0:00:03", "0:00:02", "0:00:01", "0:00:00"]


def test_time_left_to_max_epochs_for_a_module_without_max_kimg(tmp_path: Path, one_second_per_call) -> None:
    model = StyleGAN2ADA("tiny", resolution=8, channels=1, num_classes=0)
    shown = fit(tmp_path, model, batches=2, max_epochs=3)  # 6 batches in all
    assert [row["left"] for row in shown] == [f"0:00:0{left}" for left in (5, 4, 3, 2, 1, 0)]


def test_reaching_max_kimg_says_why_the_run_stopped(tmp_path: Path, caplog) -> None:
    model = StyleGAN2ADA("tiny", resolution=8, channels=1, num_classes=0, max_kimg=0.016)
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):  # whatever an earlier test set there
        fit(tmp_path, model, batches=4, max_epochs=-1)
    assert "Stopping: 0.016 kimg reached `max_kimg` (0.016)." in caplog.text


def test_fit_shows_the_kimg_bar_unless_the_config_names_a_bar_or_turns_it_off(tmp_path: Path) -> None:
    base = ["--model", "StyleGAN2ADA", "--model.config", "tiny", "--data", "DigitsDataModule"]
    base += ["--trainer.default_root_dir", str(tmp_path)]
    default = GenAugCLI(base, run=False)
    assert isinstance(default.trainer.progress_bar_callback, KimgProgressBar)
    own = GenAugCLI([*base, "--trainer.callbacks+", "lightning.pytorch.callbacks.TQDMProgressBar"], run=False)
    assert type(own.trainer.progress_bar_callback).__name__ == "TQDMProgressBar"
    off = GenAugCLI([*base, "--trainer.enable_progress_bar", "false"], run=False)
    assert off.trainer.progress_bar_callback is None
