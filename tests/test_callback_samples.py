"""SampleGrid: fixed-seed grids saved as PNG and logged to TensorBoard / CSV runs."""

from __future__ import annotations

import copy
import csv

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.callbacks import GenerativeMetrics
from lightning_genaug.callbacks.samples import SampleGrid
from lightning_genaug.images import grid_to_uint8, make_grid, picture_grid
from lightning_genaug.metrics import RealData

SIZE = 8
CELL = 64 + 2  # 8 px images upscaled x8 (nearest) to 64 px cells, plus a 2 px gap


class ToyGenerator(pl.LightningModule):
    """A linear generator with the generator protocol that records its calls."""

    def __init__(self, num_classes: int = 0, lr: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters()  # num_classes is read from hparams, as for StyleGAN2ADA
        self.net = nn.Linear(4 + num_classes, SIZE * SIZE)
        self.calls: list[dict] = []

    def sample(self, n, labels=None, generator=None):
        self.calls.append({"n": n, "labels": labels, "training": self.training})
        z = torch.randn(n, 4, generator=generator, device=self.device)
        if self.hparams.num_classes:
            z = torch.cat([z, nn.functional.one_hot(labels, self.hparams.num_classes).float()], dim=1)
        return torch.tanh(self.net(z)).view(n, 1, SIZE, SIZE)

    def training_step(self, batch, batch_idx):
        fake = torch.tanh(self.net(torch.randn(batch[0].shape[0], self.net.in_features)))
        loss = (fake - batch[0].flatten(1)).square().mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


class TemperatureGenerator(ToyGenerator):
    def sample(self, n, labels=None, generator=None, temperature=1.0):
        self.calls.append({"temperature": temperature})
        return temperature * super().sample(n, labels, generator)


def loader() -> DataLoader:
    images = torch.rand(64, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(images, torch.zeros(64, dtype=torch.long)), batch_size=16)


def fit(tmp_path, model, callbacks, logger=False, max_epochs=1) -> pl.Trainer:
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=1,
    )
    trainer.fit(model, train_dataloaders=loader())
    return trainer


def tiny_metrics(tmp_path) -> GenerativeMetrics:
    extractor = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 5))
    return GenerativeMetrics(
        num_gen=32,
        feature_extractor=extractor,
        real=RealData(cache_dir=tmp_path / "cache"),
        progress_bar=False,
    )


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_make_grid_places_images_row_by_row():
    images = torch.stack([torch.full((1, 2, 2), value) for value in (-1.0, 0.0, 1.0)])
    grid = make_grid(images, nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (1, 7, 7)
    assert grid[0, 1, 1] == 0.0 and grid[0, 1, 4] == 0.5 and grid[0, 4, 1] == 1.0  # (-1, 0, 1) -> (0, .5, 1)
    assert grid[0, 0, 0] == 0.5 and grid[0, 4, 4] == 0.5  # padding and the empty fourth cell


def test_without_logger_pngs_are_saved_at_the_interval_and_at_fit_end(tmp_path):
    model = ToyGenerator()
    fit(tmp_path, model, [SampleGrid(num_samples=6, nrow=3, every_n_batches=3)], max_epochs=2)
    names = sorted(path.name for path in (tmp_path / "samples").glob("*.png"))
    assert names == ["batch_0000003.png", "batch_0000006.png", "batch_0000008.png"]
    picture = read_png(tmp_path / "samples" / "batch_0000008.png")
    assert picture.dtype == np.uint8 and picture.shape == (2 * CELL + 2, 3 * CELL + 2)
    assert all(call["n"] == 6 and not call["training"] for call in model.calls)
    assert model.training


def test_reals_png_is_a_grid_of_the_first_training_images(tmp_path):
    fit(
        tmp_path / "some",
        ToyGenerator(),
        [SampleGrid(num_samples=20, nrow=5, every_n_batches=None, reals=True)],
    )
    images = loader().dataset.tensors[0]  # not shuffled: the first two batches hold the first 20 images
    expected = grid_to_uint8(picture_grid(images[:20], 5))
    np.testing.assert_array_equal(read_png(tmp_path / "some" / "samples" / "reals.png"), expected)
    fit(
        tmp_path / "all",
        ToyGenerator(),
        [SampleGrid(num_samples=100, nrow=8, every_n_batches=None, reals=True)],
    )
    expected = grid_to_uint8(picture_grid(images, 8))  # a set smaller than num_samples: all of it
    np.testing.assert_array_equal(read_png(tmp_path / "all" / "samples" / "reals.png"), expected)


def test_at_fit_start_logs_the_untrained_samples_as_batch_0(tmp_path):
    untrained = ToyGenerator()
    expected = SampleGrid(num_samples=4).make_grids(copy.deepcopy(untrained))[None]
    fit(tmp_path, untrained, [SampleGrid(num_samples=4, every_n_batches=None, at_fit_start=True)])
    assert sorted(path.name for path in (tmp_path / "samples").glob("*.png")) == [
        "batch_0000000.png",
        "batch_0000004.png",
    ]
    np.testing.assert_array_equal(
        read_png(tmp_path / "samples" / "batch_0000000.png"), grid_to_uint8(expected)
    )


def test_the_start_grids_draw_nothing_from_the_global_generators(tmp_path):
    """A run trains the same with the reals and at-start grids as without them."""
    weights = []
    for name, grid in [
        ("plain", SampleGrid(every_n_batches=None)),
        ("start", SampleGrid(reals=True, at_fit_start=True)),
    ]:
        torch.manual_seed(0)
        model = ToyGenerator()
        fit(tmp_path / name, model, [grid])
        weights.append(model.net.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


def test_latents_are_fixed_across_grids(tmp_path):
    # lr 0: the weights never change
    fit(tmp_path, ToyGenerator(lr=0.0), [SampleGrid(num_samples=4, every_n_batches=2)])
    first, second = (read_png(tmp_path / "samples" / f"batch_{step:07d}.png") for step in (2, 4))
    np.testing.assert_array_equal(first, second)


def test_conditional_grid_has_one_row_per_class(tmp_path):
    model = ToyGenerator(num_classes=3)
    fit(tmp_path, model, [SampleGrid(nrow=4, every_n_batches=None)])
    assert model.calls[0]["labels"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    picture = read_png(tmp_path / "samples" / "batch_0000004.png")
    assert picture.shape == (3 * CELL + 2, 4 * CELL + 2)


def test_temperatures_give_one_grid_each(tmp_path):
    model = TemperatureGenerator()
    fit(tmp_path, model, [SampleGrid(num_samples=4, every_n_batches=None, temperatures=[1.0, 0.5])])
    assert [call["temperature"] for call in model.calls if "temperature" in call] == [1.0, 0.5]
    assert {path.name for path in (tmp_path / "samples").glob("*.png")} == {
        "batch_0000004_t1.png",
        "batch_0000004_t0.5.png",
    }


def test_temperatures_need_a_temperature_argument(tmp_path):
    with pytest.raises(ValueError, match="temperature"):
        fit(tmp_path, ToyGenerator(), [SampleGrid(temperatures=[0.9])])


def test_tensorboard_gets_the_image_and_the_metric(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    callbacks = [SampleGrid(num_samples=4, every_n_batches=2, reals=True), tiny_metrics(tmp_path)]
    fit(tmp_path, ToyGenerator(), callbacks, logger=logger)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert {"samples", "samples/reals"} <= set(events.Tags()["images"])
    # the grids after batches 2 and 4 are at those batches' own steps (Lightning's batch count: 1 and 3)
    assert [event.step for event in events.Images("samples")] == [1, 3]
    assert {1, 3} <= {event.step for event in events.Scalars("train/loss")}
    assert {"metrics/fid", "kimg", "train/loss"} <= set(events.Tags()["scalars"])
    assert (tmp_path / "tb" / "version_0" / "samples" / "batch_0000004.png").is_file()


def test_csv_logger_run_gets_metrics_and_pngs(tmp_path):
    logger = CSVLogger(tmp_path, name="csv")
    callbacks = [SampleGrid(num_samples=4, every_n_batches=2), tiny_metrics(tmp_path)]
    fit(tmp_path, ToyGenerator(), callbacks, logger=logger)
    with open(f"{logger.log_dir}/metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert any(row.get("metrics/fid") for row in rows) and any(row.get("train/loss") for row in rows)
    assert sorted(path.name for path in (tmp_path / "csv" / "version_0" / "samples").glob("*.png")) == [
        "batch_0000002.png",
        "batch_0000004.png",
    ]


def test_grid_cells_are_upscaled_pixel_squares_with_gaps(tmp_path):
    model = ToyGenerator()
    fit(tmp_path, model, [SampleGrid(num_samples=2, nrow=2, every_n_batches=None)])
    picture = read_png(tmp_path / "samples" / "batch_0000004.png")
    first_cell = picture[2 : 2 + 64, 2 : 2 + 64]
    expected = model.sample(1, generator=torch.Generator().manual_seed(0))[0, 0].detach()
    pixels = np.asarray(((expected + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    np.testing.assert_array_equal(first_cell, np.kron(pixels, np.ones((8, 8), dtype=np.uint8)))
    assert (picture[:2] == 255).all() and (picture[:, 2 + 64 : 2 + 64 + 2] == 255).all()  # white gaps


def test_state_dict_round_trip():
    grid = SampleGrid()
    state = {"last_logged_batch": 10}  # the run's batches and images are the Trainer's TrainingProgress
    grid.load_state_dict(state)
    assert grid.state_dict() == state
    assert SampleGrid(key="a").state_key != SampleGrid(key="b").state_key
