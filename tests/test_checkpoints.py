"""KimgCheckpoint: checkpoints in kimg (or batches), and the end of every run on disk, resuming exactly.

The README's path: train the main job for a while, then continue it with a larger budget from the run's
``last.ckpt``; the two runs together are one longer run (issue 33, item 12).
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from test_main_job_warnings import MAIN_JOB, run_capturing

from lightning_genaug.callbacks import KimgCheckpoint, TrainingProgress
from lightning_genaug.data import DigitsDataModule
from lightning_genaug.models.stylegan2 import StyleGAN2ADA

BATCH = 8  # the tiny preset's
IMAGES = 24  # 3 batches per epoch


def checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def fit_tiny(
    root: Path,
    callback: KimgCheckpoint,
    max_kimg: float | None = None,
    others: list[pl.Callback] | None = None,
    **trainer_kwargs,
) -> pl.Trainer:
    """A tiny 8x8 StyleGAN2-ADA on 24 digits, batches of 8 (no validation)."""
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, *(others or [])],
        default_root_dir=root,
        limit_val_batches=0,
        **trainer_kwargs,
    )
    model = StyleGAN2ADA("tiny", max_kimg=max_kimg)
    trainer.fit(model, datamodule=DigitsDataModule(resolution=8, batch_size=BATCH, max_images=IMAGES))
    return trainer


def test_the_main_job_trained_10_steps_then_resumed_to_20_is_the_straight_20_step_run(tmp_path, monkeypatch):
    """``fit --trainer.max_steps 10``, then ``--trainer.max_steps 20 --ckpt_path <its last.ckpt>`` (the
    commands of docs/cli.md at half their length): 4 batches, then batches 5-9, in which ADA's controller
    raises p from 0 and G's lazy path-length regularisation runs (batches 5 and 9)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    monkeypatch.setenv("LIGHTNING_GENAUG_CACHE", str(tmp_path / "cache"))

    def fit(name: str, steps: int, *extra: str) -> tuple[list[str], list[str], Path]:
        root = tmp_path / name
        args = ["fit", "--config", str(MAIN_JOB), "--trainer.max_steps", str(steps)]
        args += ["--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false", *extra]
        caught, lines = run_capturing(args)
        return caught, lines, root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"

    _, _, straight = fit("straight", 20)
    _, _, first = fit("first", 10)
    caught, lines, resumed = fit("resumed", 20, "--ckpt_path", str(first))
    assert (caught, lines) == ([], [])  # no "not exactly the uninterrupted run", nothing else either
    straight_state, resumed_state = checkpoint_state(straight), checkpoint_state(resumed)
    # 10 optimiser steps are 4 batches of 32 (the first has 4 phases, the next 2 each); 20 are 9 batches
    first_state = checkpoint_state(first)
    assert (int(first_state["cur_nimg"]), int(straight_state["cur_nimg"])) == (4 * 32, 9 * 32)
    assert first_state["augment_pipe.p"] < straight_state["augment_pipe.p"]  # p moved after the resume point
    weights = [key for key in straight_state if key.split(".")[0] in ("G", "D", "G_ema")]
    assert len(weights) > 30
    for key in [*weights, "augment_pipe.p", "cur_nimg"]:
        torch.testing.assert_close(resumed_state[key], straight_state[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.parametrize(
    ("stop", "batches"),
    [({"max_steps": 10}, 4), ({"max_epochs": 2}, 6), ({"max_epochs": -1, "max_kimg": 0.04}, 5)],
    ids=["max_steps-mid-epoch", "max_epochs", "max_kimg-mid-epoch"],
)
def test_the_end_of_every_run_is_in_last_ckpt(tmp_path, stop, batches):
    """Whatever ends the run, ``last.ckpt`` holds the weights, images and batches it ended with."""
    stop = dict(stop)
    max_kimg = stop.pop("max_kimg", None)
    trainer = fit_tiny(tmp_path, KimgCheckpoint(every_n_kimg=1.0), max_kimg=max_kimg, **stop)
    model = trainer.lightning_module
    progress = next(callback for callback in trainer.callbacks if isinstance(callback, TrainingProgress))
    assert progress.batches == batches
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(saved["state_dict"]["cur_nimg"]) == batches * BATCH
    assert saved["callbacks"]["TrainingProgress"]["batches"] == batches
    for key, value in model.G_ema.state_dict().items():
        torch.testing.assert_close(saved["state_dict"][f"G_ema.{key}"], value, rtol=0, atol=0)
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["last.ckpt"]  # < 1 kimg


def test_a_stop_decided_after_the_last_batch_is_written_when_training_ends(tmp_path):
    class StopAtEpochEnd(pl.Callback):  # as an EarlyStopping in validation: after every batch hook
        def on_train_epoch_end(self, trainer, pl_module):
            trainer.should_stop = True

    trainer = fit_tiny(tmp_path, KimgCheckpoint(), max_epochs=5, others=[StopAtEpochEnd()])
    saved = checkpoint_state(tmp_path / "checkpoints" / "last.ckpt")
    assert int(saved["cur_nimg"]) == int(trainer.lightning_module.cur_nimg) == 3 * BATCH


def test_checkpoints_are_named_by_the_images_of_the_batch_that_passes_each_multiple(tmp_path):
    """Every 20 images at batches of 8: the batches ending at 24 and 40 images; nothing half-written."""
    fit_tiny(tmp_path / "kimg", KimgCheckpoint(every_n_kimg=0.02), max_epochs=2)  # 48 images
    assert sorted(path.name for path in (tmp_path / "kimg" / "checkpoints").iterdir()) == [
        "kimg000000.024.ckpt",
        "kimg000000.040.ckpt",
        "last.ckpt",
    ]
    fit_tiny(tmp_path / "batches", KimgCheckpoint(every_n_batches=2), max_steps=10)  # 4 batches, 32 images
    folder = tmp_path / "batches" / "checkpoints"
    assert sorted(path.name for path in folder.iterdir()) == [
        "kimg000000.016.ckpt",
        "kimg000000.032.ckpt",
        "last.ckpt",
    ]
    assert (folder / "last.ckpt").read_bytes() == (folder / "kimg000000.032.ckpt").read_bytes()


def test_a_resumed_run_continues_the_cadence_without_saving_its_first_batch_again(tmp_path):
    fit_tiny(tmp_path / "first", KimgCheckpoint(every_n_batches=3), max_steps=10)  # 4 batches: 3 and the end
    assert sorted(path.name for path in (tmp_path / "first" / "checkpoints").iterdir()) == [
        "kimg000000.024.ckpt",
        "last.ckpt",
    ]
    pl.seed_everything(0, verbose=False)
    resumed = KimgCheckpoint(every_n_batches=3, dirpath=tmp_path / "resumed")
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[resumed],
        limit_val_batches=0,
        max_epochs=3,  # 9 batches: the multiples 6 and 9 are saved
    )
    trainer.fit(
        StyleGAN2ADA("tiny"),
        datamodule=DigitsDataModule(resolution=8, batch_size=BATCH, max_images=IMAGES),
        ckpt_path=tmp_path / "first" / "checkpoints" / "last.ckpt",
    )
    assert sorted(path.name for path in (tmp_path / "resumed").iterdir()) == [
        "kimg000000.048.ckpt",
        "kimg000000.072.ckpt",
        "last.ckpt",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every_n_kimg": 5, "every_n_batches": 100}, "Give `every_n_kimg` or `every_n_batches`, not both"),
        ({"every_n_kimg": 0}, r"`every_n_kimg` must be in \(0.0, inf\], got 0"),
        ({"every_n_kimg": 0.0001}, "`every_n_kimg` must be at least 0.001 \\(one image\\), got 0.0001"),
        ({"every_n_batches": 0}, "`every_n_batches` must be"),
    ],
)
def test_a_bad_cadence_is_refused_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KimgCheckpoint(**kwargs)
