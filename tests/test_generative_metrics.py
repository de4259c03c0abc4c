"""GenerativeMetrics on a toy generator with a tiny randomly initialised extractor."""

from __future__ import annotations

import csv
import json
import runpy
import sys
import textwrap
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from ddp_processes import Script, run_scripts
from lightning.pytorch.callbacks import Checkpoint, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.callbacks import BestMetricCheckpoint, GenerativeMetrics, training_progress
from lightning_genaug.data.batch import split_batch
from lightning_genaug.metrics import (
    INCEPTION_WEIGHTS_ENV,
    IS,
    KID,
    InceptionV3Compat,
    InceptionWeightsNotFoundError,
    RealData,
)
from lightning_genaug.metrics.extractors import INCEPTION_URL_ENV

SIZE = 8


class ToyGenerator(pl.LightningModule):
    """A linear generator with the generator protocol; training moves its output towards the data."""

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Linear(4 + num_classes, SIZE * SIZE)
        self.labels_seen: list[torch.Tensor] = []

    def sample(self, n, labels=None, generator=None):
        z = torch.randn(n, 4, generator=generator, device=self.device)
        if self.num_classes:
            self.labels_seen.append(labels)
            z = torch.cat([z, nn.functional.one_hot(labels, self.num_classes).float()], dim=1)
        return torch.tanh(self.net(z)).view(n, 1, SIZE, SIZE)

    def training_step(self, batch, batch_idx):
        images, _ = split_batch(batch)
        fake = torch.tanh(self.net(torch.randn(images.shape[0], self.net.in_features)))
        loss = (fake.mean(0) - images.flatten(1).mean(0)).square().mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        return None

    def test_step(self, batch, batch_idx):
        return None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


class CountingExtractor(nn.Module):
    """A tiny fixed random feature map that counts the images it sees."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(SIZE * SIZE, 6, generator=generator), requires_grad=False)
        self.images_seen = 0

    def forward(self, images):
        self.images_seen += images.shape[0]
        return torch.tanh(images.flatten(1) @ self.weight)


def real_loader(count: int = 64) -> DataLoader:
    images = torch.rand(count, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    labels = torch.arange(count) % 3
    return DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)


def make_trainer(tmp_path, callbacks, max_epochs=1, logger=False, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        **kwargs,
    )


def cached_real(tmp_path, **kwargs) -> RealData:
    """The real data (``RealData`` options ``kwargs``) with its statistics cached under ``tmp_path``."""
    return RealData(cache_dir=tmp_path / "cache", **kwargs)


def metrics_callback(tmp_path, extractor=None, **kwargs) -> GenerativeMetrics:
    defaults = dict(num_gen=32, batch_size=16, real=cached_real(tmp_path), progress_bar=False)
    return GenerativeMetrics(feature_extractor=extractor or CountingExtractor(), **{**defaults, **kwargs})


def test_logs_every_metric_to_callback_metrics_and_logger(tmp_path):
    callback = metrics_callback(tmp_path, metrics=("fid", KID(subsets=5, subset_size=16), IS(splits=2), "pr"))
    trainer = make_trainer(tmp_path, [callback], logger=CSVLogger(tmp_path, name="csv"))
    trainer.fit(ToyGenerator(), train_dataloaders=real_loader())

    for name in ("fid", "kid", "kid_std", "is", "is_std", "precision", "recall"):
        assert torch.isfinite(trainer.callback_metrics[f"metrics/{name}"])
    assert float(trainer.callback_metrics["metrics/fid"]) > 0
    assert 0 <= float(trainer.callback_metrics["metrics/precision"]) <= 1
    assert 1 <= float(trainer.callback_metrics["metrics/is"]) <= 6  # at most the number of "classes" (D=6)
    with open(trainer.logger.log_dir + "/metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("metrics/fid")]
    assert len(rows) == 1 and float(rows[0]["kimg"]) == pytest.approx(0.064)


class CountingGenerator(ToyGenerator):
    """A ToyGenerator with the image counter of our modules (``cur_nimg``), here twice the real count."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("cur_nimg", torch.zeros((), dtype=torch.long))

    def training_step(self, batch, batch_idx):
        self.cur_nimg += 2 * split_batch(batch)[0].shape[0]
        return super().training_step(batch, batch_idx)


def test_logged_kimg_is_the_modules_image_counter_when_it_has_one(tmp_path):
    trainer = make_trainer(tmp_path, [metrics_callback(tmp_path)], logger=CSVLogger(tmp_path, name="csv"))
    trainer.fit(CountingGenerator(), train_dataloaders=real_loader())
    with open(trainer.logger.log_dir + "/metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("metrics/fid")]
    assert len(rows) == 1 and float(rows[0]["kimg"]) == pytest.approx(0.128)  # cur_nimg, not the 64 seen


def test_real_statistics_are_cached_and_not_recomputed(tmp_path):
    first = CountingExtractor()
    make_trainer(
        tmp_path, [metrics_callback(tmp_path, first, real=cached_real(tmp_path, num_images=48))]
    ).fit(ToyGenerator(), train_dataloaders=real_loader())
    assert first.images_seen == 48 + 32  # real statistics + one evaluation at fit end
    assert len(list((tmp_path / "cache").glob("real-*.pt"))) == 1

    second = CountingExtractor()  # same weights: same cache entry
    make_trainer(
        tmp_path, [metrics_callback(tmp_path, second, real=cached_real(tmp_path, num_images=48))]
    ).fit(ToyGenerator(), train_dataloaders=real_loader())
    assert second.images_seen == 32  # generated images only

    third = CountingExtractor()  # another resolution of the same key: a new entry
    make_trainer(
        tmp_path, [metrics_callback(tmp_path, third, real=cached_real(tmp_path, num_images=40))]
    ).fit(ToyGenerator(), train_dataloaders=real_loader())
    assert third.images_seen == 40 + 32


def test_fid_of_the_real_data_against_itself_is_near_zero(tmp_path):
    loader = real_loader(64)
    real_images = loader.dataset.tensors[0]

    class Replay(ToyGenerator):
        """Returns the real images in order, batch after batch."""

        served = 0

        def sample(self, n, labels=None, generator=None):
            images = real_images[self.served : self.served + n]
            self.served += n
            return images

    callback = metrics_callback(tmp_path, num_gen=64, real=RealData(real_images, use_cache=False))
    make_trainer(tmp_path, [callback]).fit(Replay(), train_dataloaders=loader)
    assert abs(callback.last_values["metrics/fid"]) < 1e-5


def test_dict_batches_with_an_image_key(tmp_path):
    images = torch.rand(32, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2)) * 2 - 1

    class DictDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, index):
            return {"img": images[index], "label": torch.tensor(0)}

    class DictGenerator(ToyGenerator):
        def training_step(self, batch, batch_idx):
            return super().training_step(batch["img"], batch_idx)

    callback = metrics_callback(tmp_path, image_key="img", real=cached_real(tmp_path, num_images=20))
    trainer = make_trainer(tmp_path, [callback])
    model = DictGenerator()
    trainer.fit(model, DataLoader(DictDataset(), batch_size=8))
    assert training_progress(trainer).images(model) == 32 and callback._real_stats.num_images == 20
    assert callback.feature_extractor.images_seen == 20 + 32


def test_honours_the_batch_interval(tmp_path):
    callback = metrics_callback(tmp_path, every_n_batches=2, at_fit_end=False)
    extractor = callback.feature_extractor
    trainer = make_trainer(tmp_path, [callback], max_epochs=2)
    trainer.fit(ToyGenerator(), train_dataloaders=real_loader())
    # 8 batches of 16: evaluations after batches 2, 4, 6 and 8
    assert extractor.images_seen == 64 + 4 * 32
    assert callback.state_dict() == {"last_eval_batches": 8}  # the run's count is the Trainer's one
    assert training_progress(trainer).batches == 8


@pytest.mark.parametrize("with_validation", [False, True])
def test_model_checkpoint_and_early_stopping_monitor_fid(tmp_path, with_validation):
    history = []

    class Recorder(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            history.append(float(trainer.callback_metrics["metrics/fid"]))

    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="metrics/fid", mode="min", save_top_k=1)
    stopping = EarlyStopping(monitor="metrics/fid", mode="min", patience=100, check_on_train_epoch_end=True)
    callbacks = [metrics_callback(tmp_path, every_n_batches=4), Recorder(), checkpoint, stopping]
    trainer = make_trainer(tmp_path, callbacks, max_epochs=3)
    loaders = {"val_dataloaders": real_loader(16)} if with_validation else {}
    trainer.fit(ToyGenerator(), train_dataloaders=real_loader(), **loaders)

    assert len(history) == 3
    assert float(checkpoint.best_model_score) == pytest.approx(min(history), rel=1e-6)
    assert checkpoint.best_model_path.endswith(".ckpt")


class MetricHistory(pl.Callback):
    """Each new ``metrics/fid`` with the optimizer step it was computed at (listed after the metric)."""

    def __init__(self) -> None:
        self.values: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._record(trainer)

    def on_train_end(self, trainer, pl_module):
        self._record(trainer)

    def _record(self, trainer) -> None:
        value = trainer.callback_metrics.get("metrics/fid")
        if value is not None and (not self.values or float(value) != self.values[-1][1]):
            self.values.append((trainer.global_step, float(value)))


def test_best_metric_checkpoint_saves_the_best_value_at_the_batch_it_was_measured(tmp_path):
    history, best = MetricHistory(), BestMetricCheckpoint("metrics/fid", dirpath=tmp_path / "ckpt")
    callbacks = [metrics_callback(tmp_path, every_n_batches=3, at_fit_end=True), history, best]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(tmp_path, callbacks, max_epochs=2).fit(ToyGenerator(), real_loader())
    assert [step for step, _ in history.values] == [3, 6, 8]  # 8 batches: every 3, and at fit end
    best_step, best_value = min(history.values, key=lambda row: row[1])
    assert best.best_score == pytest.approx(best_value)
    saved = torch.load(best.best_model_path, weights_only=False)
    assert saved["global_step"] == best_step  # the measured weights, not those of the next epoch end
    assert sorted(path.name for path in (tmp_path / "ckpt").iterdir()) == ["best-metrics-fid.ckpt"]
    assert not [w for w in caught if "monitored key" in str(w.message) or "got no value" in str(w.message)]


def test_best_metric_checkpoint_keeps_a_restored_best_and_names_a_key_that_never_came(tmp_path):
    restored = BestMetricCheckpoint("metrics/fid", dirpath=tmp_path / "ckpt")
    restored.load_state_dict({"best_score": -1.0, "best_model_path": "earlier/best-metrics-fid.ckpt"})
    misnamed = BestMetricCheckpoint("metrics/fdi", dirpath=tmp_path / "ckpt")
    callbacks = [metrics_callback(tmp_path, every_n_batches=2), restored, misnamed]
    never_came = r"`metrics/fdi` got no value in this fit \(keys that did: \[.*'metrics/fid'"
    with pytest.warns(UserWarning, match=never_came):
        make_trainer(tmp_path, callbacks).fit(ToyGenerator(), real_loader())
    assert restored.state_dict() == {"best_score": -1.0, "best_model_path": "earlier/best-metrics-fid.ckpt"}
    assert not (tmp_path / "ckpt").exists()  # no FID beat the restored best; the misnamed key wrote nothing


def test_validate_and_test_evaluate_a_trained_model(tmp_path):
    callback = metrics_callback(
        tmp_path, at_fit_end=False, real=RealData(real_loader())
    )  # no datamodule here
    trainer = make_trainer(tmp_path, [callback])
    model = ToyGenerator()
    results = trainer.validate(model, dataloaders=real_loader(16), verbose=False)
    assert results[0]["metrics/fid"] > 0
    results = trainer.test(model, dataloaders=real_loader(16), verbose=False)
    assert results[0]["metrics/fid"] == pytest.approx(callback.last_values["metrics/fid"])


def test_conditional_generators_get_uniform_labels(tmp_path):
    model = ToyGenerator(num_classes=3)
    make_trainer(tmp_path, [metrics_callback(tmp_path)]).fit(model, train_dataloaders=real_loader())
    labels = torch.cat(model.labels_seen)
    assert labels.shape == (32,) and set(labels.tolist()) == {0, 1, 2}


def test_generated_images_are_reproducible_for_a_seed(tmp_path):
    values = []
    for _ in range(2):
        callback = metrics_callback(tmp_path, seed=3)
        torch.manual_seed(0)
        make_trainer(tmp_path, [callback]).fit(ToyGenerator(), train_dataloaders=real_loader())
        values.append(callback.last_values["metrics/fid"])
    assert values[0] == values[1]


def test_state_survives_a_checkpoint(tmp_path):
    callback = metrics_callback(tmp_path, every_n_batches=100)
    trainer = make_trainer(tmp_path, [callback, ModelCheckpoint(dirpath=tmp_path / "ckpt")])
    trainer.fit(ToyGenerator(), train_dataloaders=real_loader())
    resumed = metrics_callback(tmp_path, every_n_batches=100)
    trainer = make_trainer(tmp_path, [resumed, ModelCheckpoint(dirpath=tmp_path / "ckpt2")], max_epochs=2)
    checkpoint = next((tmp_path / "ckpt").glob("*.ckpt"))
    model = ToyGenerator()
    trainer.fit(model, train_dataloaders=real_loader(), ckpt_path=checkpoint)
    progress = training_progress(trainer)
    assert (progress.images(model), progress.batches) == (128, 8)
    assert resumed.last_eval_batches == 8  # at the end of each fit


def test_a_weights_path_that_names_no_file_fails_at_construction(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    with pytest.raises(InceptionWeightsNotFoundError, match="missing.pth"):
        GenerativeMetrics(
            metrics="fid", feature_extractor=InceptionV3Compat(weights_path=tmp_path / "missing.pth")
        )
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(tmp_path / "also-missing.pth"))
    with pytest.raises(InceptionWeightsNotFoundError, match="also-missing.pth"):
        GenerativeMetrics(metrics="fid")


def test_the_constructor_never_downloads_setup_does_and_fails_clearly_offline(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv(INCEPTION_URL_ENV, "https://example.invalid/inception.pth")
    downloads = []

    def offline(destination, url):
        downloads.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr("lightning_genaug.metrics.extractors.download_inception_weights", offline)
    callback = GenerativeMetrics(metrics="fid")
    assert downloads == []
    start = time.perf_counter()
    with pytest.raises(InceptionWeightsNotFoundError, match="feature_extractor_weights_path"):
        make_trainer(tmp_path, [callback]).fit(ToyGenerator(), train_dataloaders=real_loader())
    assert len(downloads) == 1 and time.perf_counter() - start < 5.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ("fid", "lpips")}, "metrics"),
        ({"num_gen": 0}, "num_gen"),
        ({"every_n_batches": 0}, "every_n_batches"),
        ({"metrics": IS(splits=10), "num_gen": 4}, r"IS\(splits=4\)"),
        ({"metrics": ("kid", KID(subsets=5))}, "'kid' twice"),
        ({"metrics": [3]}, "metric objects"),
        ({"metrics": ()}, "at least one"),
        ({"real": torch.zeros(2, 1, 8, 8)}, r"RealData\(source=images\)"),
        ({"feature_extractor": "vgg16"}, "feature_extractor"),
    ],
)
def test_arguments_are_checked(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        GenerativeMetrics(**{"feature_extractor": CountingExtractor(), **kwargs})


def test_a_module_without_sample_is_a_clear_error(tmp_path):
    class NoSample(ToyGenerator):
        sample = None

    with pytest.raises(TypeError, match="generator protocol"):
        make_trainer(tmp_path, [metrics_callback(tmp_path)]).fit(NoSample(), train_dataloaders=real_loader())


DDP_SCRIPT = """
import json, sys
import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset
sys.path.insert(0, {tests_dir!r})
from test_generative_metrics import CountingExtractor, ToyGenerator
from lightning_genaug.callbacks import GenerativeMetrics, training_progress
from lightning_genaug.metrics import IS, KID, RealData


class Frozen(ToyGenerator):
    \"\"\"Trains with lr 0, so one and two processes evaluate the same generator.\"\"\"

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


devices, root = int(sys.argv[1]), sys.argv[2]
torch.manual_seed(0)
images = torch.rand(50, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
callback = GenerativeMetrics(
    metrics=("fid", KID(subsets=3, subset_size=20), IS(splits=3), "pr"), num_gen=30, batch_size=8,
    feature_extractor=CountingExtractor(), real=RealData(cache_dir=root + "/cache"), progress_bar=False,
)
trainer = pl.Trainer(
    default_root_dir=root, max_epochs=1, accelerator="cpu", devices=devices,
    strategy="ddp" if devices > 1 else "auto", callbacks=[callback], logger=False, enable_checkpointing=False,
    enable_progress_bar=False, enable_model_summary=False,
)
trainer.fit(Frozen(), DataLoader(TensorDataset(images), batch_size=10))
result = dict(
    values=callback.last_values, mu=callback._real_stats.mu.tolist(),
    images_seen=training_progress(trainer).images(trainer.lightning_module),
    extracted=callback.feature_extractor.images_seen,
)
with open(root + f"/rank{{trainer.global_rank}}.json", "w") as handle:
    json.dump(result, handle)
if torch.distributed.is_initialized():  # gloo's threads otherwise may abort the interpreter at exit
    torch.distributed.destroy_process_group()
"""


def run_metrics_script(tmp_path: Path, devices: int) -> list[dict]:
    """Run DDP_SCRIPT with ``devices`` CPU processes; one result dict per rank.

    Two processes run in a subprocess (Lightning's DDP launcher re-runs the command line for rank 1);
    one runs in this process, saving an interpreter start.
    """
    root = tmp_path / f"devices{devices}"
    root.mkdir()
    script = root / "metrics_script.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests_dir=str(Path(__file__).parent))))
    if devices > 1:
        run_scripts(Script(script, [str(devices), str(root)], root))
    else:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", [str(script), str(devices), str(root)])
            patch.setattr(sys, "path", list(sys.path))  # the script prepends the tests' folder
            runpy.run_path(str(script), run_name="__main__")
    return [json.loads((root / f"rank{rank}.json").read_text()) for rank in range(devices)]


@pytest.mark.slow
def test_two_processes_give_the_single_process_figures(tmp_path):
    (single,) = run_metrics_script(tmp_path, devices=1)
    ranks = run_metrics_script(tmp_path, devices=2)

    assert ranks[0]["values"] == ranks[1]["values"]
    assert ranks[0]["images_seen"] == 50  # counted over both ranks
    # each rank extracts its half of the real images and its generated chunks (8 + 8 and 8 + 6)
    assert [rank["extracted"] for rank in ranks] == [25 + 16, 25 + 14]
    values, expected = ranks[0]["values"], single["values"]
    assert values.keys() == expected.keys() and values["metrics/fid"] > 0
    for name in expected:  # same images, same order, same subsets; float32 features of real batches
        # that start at other rows, and sums over ranks, round differently: 1e-6
        assert values[name] == pytest.approx(expected[name], rel=1e-6, abs=1e-12), name
    images = torch.rand(50, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 2 - 1
    expected_mu = CountingExtractor()(images).double().mean(0)
    gathered_mu = torch.tensor(ranks[0]["mu"], dtype=torch.float64)
    torch.testing.assert_close(gathered_mu, expected_mu, rtol=1e-5, atol=1e-6)  # every real image once
