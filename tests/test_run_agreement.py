"""Data, model and metrics agree on channels, resolution and classes before the first training step.

A disagreement stops the run in ``setup``, in one line naming both values and the option to change
(issue 34: a swapped data path trained colour photographs as greyscale, then the metric's extractor
crashed after training).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug._checks import MismatchError
from lightning_genaug.callbacks import GenerativeMetrics
from lightning_genaug.data import DigitsDataModule, ImageDataModule
from lightning_genaug.metrics import KID
from lightning_genaug.metrics.trained_extractor import ClassifierFeatures
from lightning_genaug.models.stylegan2 import StyleGAN2ADA


def digits(**overrides) -> DigitsDataModule:
    """16 labelled 16x16 grey digits (10 classes), batches of 8."""
    args = {"resolution": 16, "channels": 1, "batch_size": 8, "max_images": 16}
    return DigitsDataModule(**{**args, **overrides})


def metrics(extractor: nn.Module) -> GenerativeMetrics:
    return GenerativeMetrics(metrics=("kid",), num_gen=16, feature_extractor=extractor, progress_bar=False)


def trainer(tmp_path: Path, callbacks: list[pl.Callback] | None = None) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_steps=4,  # one batch: G and D take two steps each at the first batch
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks or [],
        default_root_dir=tmp_path,
    )


def fails_before_the_first_step(run: pl.Trainer, model: pl.LightningModule, *args, **kwargs) -> str:
    """The one-line message of the MismatchError that ``fit`` raises before any training step."""
    with pytest.raises(MismatchError) as raised:
        run.fit(model, *args, **kwargs)
    assert run.global_step == 0
    assert int(model.num_batches) == 0
    message = str(raised.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------ data vs model


@pytest.mark.parametrize(
    ("model_args", "data_args", "expected"),
    [
        (
            {"channels": 3},
            {},
            "Image channels differ: StyleGAN2ADA (`model.channels`) has 3, DigitsDataModule's images has 1; "
            "set `model.channels: 1` (or null: the data's), or the data's `channels: 3`.",
        ),
        (
            {"resolution": 8},
            {},
            "Image sizes differ: StyleGAN2ADA (`model.resolution`) has 8x8, DigitsDataModule's images has "
            "16x16; set `model.resolution: 16` (or null: the data's), or the data's `resolution: 8`.",
        ),
        (
            {"num_classes": 3},
            {},
            "Classes differ: StyleGAN2ADA (`model.num_classes`) has 3, DigitsDataModule's labels has 10; set "
            "`model.num_classes: 10` (or null: the data's; 0: unconditional), or give the data that many "
            "classes (class sub-folders, `use_labels: true`).",
        ),
        (
            {"num_classes": 10},
            {"use_labels": False},
            "Classes differ: StyleGAN2ADA (`model.num_classes`) has 10, DigitsDataModule's labels has 0; set "
            "`model.num_classes: 0`",
        ),
    ],
    ids=["channels", "resolution", "classes", "labels-off"],
)
def test_a_model_value_the_data_does_not_have_stops_in_setup_in_one_line(
    tmp_path, model_args, data_args, expected
):
    model = StyleGAN2ADA("tiny", **model_args)
    message = fails_before_the_first_step(trainer(tmp_path), model, datamodule=digits(**data_args))
    assert message.startswith(expected)


def test_an_unconditional_model_on_labelled_data_is_a_choice_not_a_mismatch(tmp_path):
    model = StyleGAN2ADA("tiny", num_classes=0)
    run = trainer(tmp_path)
    run.fit(model, datamodule=digits())
    assert int(model.num_batches) == 1
    assert model.hparams.num_classes == 0


def test_a_model_left_unset_takes_the_datas_values_and_agrees(tmp_path):
    model = StyleGAN2ADA("tiny")
    trainer(tmp_path).fit(model, datamodule=digits(channels=3))
    assert (model.hparams.channels, model.hparams.resolution, model.hparams.num_classes) == (3, 16, 10)


# ------------------------------------------------------------------- the metrics' extractor


def test_an_extractor_for_other_channels_stops_in_setup_not_after_training(tmp_path):
    """The issue's crash: a grey ClassifierFeatures (in_channels 1) met 3-channel images at fit end."""
    extractor = ClassifierFeatures(in_channels=1, num_classes=10, width=4, feature_dim=8)
    run = trainer(tmp_path, [metrics(extractor)])
    message = fails_before_the_first_step(run, StyleGAN2ADA("tiny"), datamodule=digits(channels=3))
    assert message == (
        "Image channels differ: GenerativeMetrics' `feature_extractor` (ClassifierFeatures) `in_channels` "
        "has 1, DigitsDataModule's images has 3; set the feature_extractor's `in_channels: 3` "
        "(`init_args.in_channels` in a config)."
    )


def test_the_extractor_is_checked_against_the_models_images_without_a_datamodule(tmp_path):
    extractor = ClassifierFeatures(in_channels=1, num_classes=10, width=4, feature_dim=8)
    model = StyleGAN2ADA("tiny", resolution=8, channels=3, num_classes=0)
    loader = DataLoader(TensorDataset(torch.zeros(8, 3, 8, 8)), batch_size=8)
    message = fails_before_the_first_step(trainer(tmp_path, [metrics(extractor)]), model, loader)
    assert message.startswith("Image channels differ: GenerativeMetrics' `feature_extractor`")
    assert message.endswith(
        "StyleGAN2ADA's images has 3; set the feature_extractor's `in_channels: 3` "
        "(`init_args.in_channels` in a config)."
    )


def test_an_extractor_that_cannot_take_the_resolution_stops_in_setup(tmp_path):
    fixed_size = nn.Sequential(nn.Flatten(), nn.Linear(1 * 8 * 8, 4))  # made for 8x8 grey images
    run = trainer(tmp_path, [metrics(fixed_size)])
    message = fails_before_the_first_step(run, StyleGAN2ADA("tiny"), datamodule=digits())
    assert message.startswith(
        "GenerativeMetrics' `feature_extractor` (Sequential) cannot take DigitsDataModule's images "
        "(1x16x16): "
    )
    assert message.endswith("; give it an extractor for 1-channel 16x16 images.")


def test_an_extractor_for_other_classes_than_the_labelled_data_stops_in_setup(tmp_path):
    extractor = ClassifierFeatures(in_channels=1, num_classes=3, width=4, feature_dim=8)
    run = trainer(tmp_path, [metrics(extractor)])
    message = fails_before_the_first_step(run, StyleGAN2ADA("tiny"), datamodule=digits())
    assert message == (
        "Classes differ: GenerativeMetrics' `feature_extractor` (ClassifierFeatures) `num_classes` has 3, "
        "DigitsDataModule's labels has 10; set the feature_extractor's `num_classes: 10` "
        "(`init_args.num_classes` in a config)."
    )


def test_unlabelled_data_leaves_the_extractors_classes_unchecked(tmp_path):
    """The metrics read the extractor's features, never its class head: without labels, nothing to compare."""
    extractor = ClassifierFeatures(in_channels=1, num_classes=3, width=4, feature_dim=8)
    callback = GenerativeMetrics(
        metrics=KID(subset_size=8), num_gen=16, feature_extractor=extractor, progress_bar=False
    )
    model = StyleGAN2ADA("tiny")
    trainer(tmp_path, [callback]).fit(model, datamodule=digits(use_labels=False))
    assert int(model.num_batches) == 1
    assert "metrics/kid" in callback.last_values


# --------------------------------------------------------------------- what the data converts


def photos(folder: Path, colour: bool) -> Path:
    """Four 8x8 RGB PNGs: colour noise, or grey levels stored as RGB (R = G = B)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(4):
        pixels = rng.integers(0, 256, (8, 8, 3 if colour else 1), dtype=np.uint8)
        Image.fromarray(pixels if colour else pixels.repeat(3, axis=2)).save(folder / f"{index}.png")
    return folder


def test_colour_images_read_with_channels_1_say_they_turn_grey(tmp_path, caplog):
    """The issue's silent case: the digits config's `channels: 1` kept while `--data.path` swapped."""
    folder = photos(tmp_path / "photos", colour=True)
    with caplog.at_level(logging.INFO, logger="lightning_genaug.data.images"):
        assert ImageDataModule(folder, channels=1).image_shape == (1, 8, 8)  # converted, as configured
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        f"{str(folder)!r} holds colour images (e.g. '0.png') and `channels: 1` converts them to grey; set "
        "`channels: 3` (--data.channels 3) to train in colour, or store the images in grey to train in grey."
    ]
    assert "colour images converted to grey (ITU-R 601 luma)" in caplog.text  # the rule, logged at INFO


def test_channels_3_says_only_what_it_does_to_the_images(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lightning_genaug.data.images"):
        ImageDataModule(photos(tmp_path / "photos", colour=False), channels=3).image_shape
    assert "(`channels: 3`): grey images replicated to RGB, alpha dropped." in caplog.text
    assert "converted to grey" not in caplog.text  # was said of every 3-channel read


@pytest.mark.parametrize(("colour", "channels"), [(False, 1), (True, 3), (True, None)])
def test_no_colour_is_lost_no_warning(tmp_path, caplog, colour, channels):
    folder = photos(tmp_path / "photos", colour=colour)
    with caplog.at_level(logging.WARNING, logger="lightning_genaug.data.images"):
        ImageDataModule(folder, channels=channels).image_shape
    assert caplog.records == []


def test_a_colour_array_read_with_channels_1_says_it_turns_grey(tmp_path, caplog):
    path = tmp_path / "photos.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8))
    with caplog.at_level(logging.WARNING, logger="lightning_genaug.data.images"):
        assert ImageDataModule(path, channels=1).image_shape == (1, 8, 8)
    assert "holds colour images (e.g. 'the first images') and `channels: 1` converts them" in caplog.text
