"""Exact resume: a run interrupted mid-epoch and resumed from ``last.ckpt`` is the uninterrupted run.

A tiny 8x8 StyleGAN2-ADA (digits; an image folder decoded lazily), a few batches, p moving fast so
that it matters: the same weights of G, D and G_ema (bit for bit on the CPU), ``p``, ``r_t`` and image
count. For every datamodule (digits, an image folder in memory, CIFAR-10 pickles, streaming chunks),
more cheaply: the same batches and the same draws of every random generator, step by step, which
is all a deterministic CPU training step depends on besides the checkpointed state.
"""

from __future__ import annotations

import pickle
import random
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from streaming_data import write_indexed_images
from torch import nn

from lightning_genaug.callbacks import AdaptiveAugmentation
from lightning_genaug.data import (
    CIFAR10DataModule,
    DigitsDataModule,
    ImageDataModule,
    StreamingImageDataModule,
    prepare_dataset,
)
from lightning_genaug.data.resume import ResumableDataLoader, ResumableRandomSampler
from lightning_genaug.models.stylegan2 import StyleGAN2ADA

BATCH = 4
IMAGES = 12  # 3 batches per epoch
# Optimiser steps (G and D each step once per batch, twice with their lazy regularisation): the
# interrupted run stops after 4 batches (mid-epoch 1), the whole run trains 7 (into epoch 2).
STEPS, INTERRUPT = 17, 10
BATCHES, INTERRUPTED_BATCHES = 7, 4


def image_folder(root: Path, size: int = 8) -> Path:
    """``IMAGES`` random RGB images (written once per test)."""
    if root.exists():
        return root
    rng = np.random.default_rng(0)
    root.mkdir()
    for index in range(IMAGES):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / f"{index:02d}.png")
    return root


def cifar_pickles(root: Path) -> Path:
    """The CIFAR-10 python release's files, with a few random images."""
    if root.exists():
        return root
    rng = np.random.default_rng(0)
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)]:
        batch = {
            b"data": rng.integers(0, 256, (IMAGES // 4 + 1, 3072), dtype=np.uint8),
            b"labels": [0, 1, 2, 3],
        }
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({}))
    return root


DATAMODULES: dict[str, Callable[[Path], pl.LightningDataModule]] = {
    "digits": lambda tmp: DigitsDataModule(resolution=8, batch_size=BATCH, max_images=IMAGES),
    "folder-in-memory": lambda tmp: ImageDataModule(
        image_folder(tmp / "images"), batch_size=BATCH, in_memory=True
    ),
    "folder-lazy": lambda tmp: ImageDataModule(
        image_folder(tmp / "images"), batch_size=BATCH, in_memory=False
    ),
}


def fit(
    root: Path, make_data: Callable[[], pl.LightningDataModule], steps: int, ckpt_path: Path | None = None
):
    """Train ``steps`` batches (from ``ckpt_path`` when given); ``last.ckpt`` is written every batch."""
    pl.seed_everything(0, verbose=False)
    model = StyleGAN2ADA("tiny")
    ada = AdaptiveAugmentation(every_n_batches=1, speed_kimg=0.02, target=0.0)  # p moves every batch
    checkpoint = ModelCheckpoint(dirpath=root, save_last=True, save_top_k=0, every_n_train_steps=1)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ada, checkpoint],
        default_root_dir=root,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=make_data(), ckpt_path=ckpt_path)
    return model, ada, trainer, [str(w.message) for w in caught]


@pytest.mark.parametrize("source", ["digits", "folder-lazy"])  # the others: the cheaper test below
def test_resuming_mid_epoch_reproduces_the_uninterrupted_run(tmp_path, source):
    def make_data() -> pl.LightningDataModule:
        return DATAMODULES[source](tmp_path)

    straight, straight_ada, _, _ = fit(tmp_path / "straight", make_data, STEPS)
    _, _, first, _ = fit(tmp_path / "first", make_data, INTERRUPT)
    resumed, resumed_ada, _, messages = fit(
        tmp_path / "resumed", make_data, STEPS, ckpt_path=tmp_path / "first" / "last.ckpt"
    )
    assert int(first.lightning_module.cur_nimg) == INTERRUPTED_BATCHES * BATCH
    assert not any("not resumable" in m or "not exactly" in m for m in messages), messages
    for name in ("G", "D", "G_ema"):
        for key, value in getattr(straight, name).state_dict().items():
            torch.testing.assert_close(
                getattr(resumed, name).state_dict()[key], value, rtol=0, atol=0, msg=f"{name}.{key}"
            )
    assert float(resumed.augment_pipe.p) == float(straight.augment_pipe.p) > 0
    assert resumed_ada._rt == straight_ada._rt
    assert int(resumed.cur_nimg) == int(straight.cur_nimg) == BATCHES * BATCH


# ------------------------------------------------------------------ the data order and random states
# Cheaper than training a GAN: a module that records each batch and one draw of every generator.


class DrawRecorder(pl.LightningModule):
    """Records every training batch (its bytes) and a draw of torch's, numpy's and Python's generators."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen: list[tuple] = []

    def training_step(self, batch, batch_idx):
        images = batch[0] if isinstance(batch, list | tuple) else batch
        self.seen.append(
            (images.numpy().tobytes(), torch.rand(()).item(), np.random.random(), random.random())
        )
        return self.weight * 0.0

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def record(
    root: Path, make_data, steps: int, ckpt_path: Path | None = None, every_n_epochs: int | None = None
) -> tuple[list[tuple], list[str]]:
    pl.seed_everything(0, verbose=False)
    model = DrawRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(
                dirpath=root,
                save_last=True,
                save_top_k=0,
                every_n_train_steps=None if every_n_epochs else 1,
                every_n_epochs=every_n_epochs,
            )
        ],
        default_root_dir=root,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=make_data(), ckpt_path=ckpt_path)
    return model.seen, [str(w.message) for w in caught]


def streaming_chunks(root: Path) -> Path:
    if not (root / "chunks").exists():
        write_indexed_images(root / "images", IMAGES, size=8)
        prepare_dataset(root / "images", root / "chunks", resolution=8, workers=1)
    return root / "chunks"


RECORDED: dict[str, Callable[[Path], pl.LightningDataModule]] = {
    "cifar10": lambda tmp: CIFAR10DataModule(
        cifar_pickles(tmp / "cifar"), batch_size=BATCH, max_images=IMAGES
    ),
    "streaming": lambda tmp: StreamingImageDataModule(
        str(streaming_chunks(tmp)), batch_size=BATCH, num_workers=0
    ),
    "digits": DATAMODULES["digits"],
    "folder-in-memory": DATAMODULES["folder-in-memory"],
}


@pytest.mark.parametrize(
    ("source", "interrupt"),
    [("cifar10", 4), ("streaming", 4), ("folder-in-memory", 4), ("digits", 3)],
    ids=["cifar10", "streaming", "folder-in-memory", "digits-at-epoch-end"],
)
def test_resuming_replays_the_batches_and_random_draws_of_the_uninterrupted_run(tmp_path, source, interrupt):
    def make_data() -> pl.LightningDataModule:
        return RECORDED[source](tmp_path)

    straight, _ = record(tmp_path / "straight", make_data, 7)
    first, _ = record(tmp_path / "first", make_data, interrupt)
    resumed, messages = record(tmp_path / "resumed", make_data, 7, ckpt_path=tmp_path / "first" / "last.ckpt")
    assert first == straight[:interrupt]
    assert resumed == straight[interrupt:]
    assert not any("not resumable" in m or "not exactly" in m for m in messages), messages


def test_an_epoch_end_checkpoint_of_an_epoch_cut_short_warns_that_lightning_skips_its_rest(tmp_path):
    def make_data() -> pl.LightningDataModule:
        return DATAMODULES["digits"](tmp_path)

    record(tmp_path / "first", make_data, 4, every_n_epochs=1)  # epoch 1 cut after 1 of 3 batches
    _, messages = record(tmp_path / "resumed", make_data, 7, ckpt_path=tmp_path / "first" / "last.ckpt")
    assert any("ends epoch 1 after 1 of its 3 batches" in m and "every_n_train_steps" in m for m in messages)


def test_a_loader_whose_sampler_lightning_replaced_warns_that_the_resume_is_not_exact():
    images = torch.zeros(8, 1, 8, 8)
    loader = ResumableDataLoader(images, batch_size=2, sampler=torch.utils.data.RandomSampler(images))
    with pytest.warns(UserWarning, match=r"RandomSampler .* not exactly the uninterrupted one"):
        loader.load_state_dict({"epoch": None, "batches": 1, "pass_ended": False})


def test_the_sampler_resumes_a_pass_part_way_and_draws_each_epoch_from_the_seed_alone():
    sampler = ResumableRandomSampler(range(10), seed=3)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(10)) and first != second
    sampler.set_epoch(0)
    sampler.start = 4
    assert list(sampler) == first[4:]
    assert list(ResumableRandomSampler(range(10), seed=3)) == first
