"""Runs that never mix (issue 34, item 3): one folder per run whatever the logger, W&B's config holding
the whole parsed config, one step axis for every logged row, and a resumed run continuing its own logs.

The fits are ``lightning-genaug fit`` in-process: StyleGAN2ADA ``tiny`` on 8x8 digits, 4 batches of 8.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import yaml
from wandb_env import end_wandb, offline_wandb_env

from lightning_genaug.fit_cli import GenAugCLI, _continue_run_folder
from lightning_genaug.imports import WANDB_AVAILABLE
from lightning_genaug.runs import ContinuingCSVLogger, run_dir, version_of_run_folder, wandb_config

needs_wandb = pytest.mark.skipif(not WANDB_AVAILABLE, reason="wandb is not installed")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder, a private real-statistics cache, and W&B offline with its files in it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    for name, value in {
        "LIGHTNING_GENAUG_CACHE": str(tmp_path / "cache"),
        **offline_wandb_env(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    yield tmp_path
    if WANDB_AVAILABLE:
        end_wandb()


def write_config(folder: Path, metrics: bool = False) -> Path:
    """A config with a grid every 2 batches, checkpoints, and (``metrics``) FID every 2 batches."""
    callbacks: list[dict] = [
        {"class_path": "SampleGrid", "init_args": {"num_samples": 4, "nrow": 2, "every_n_batches": 2}},
        {"class_path": "KimgCheckpoint"},
    ]
    if metrics:
        extractor = {"class_path": "ClassifierFeatures", "init_args": {"in_channels": 1, "num_classes": 10}}
        extractor["init_args"]["feature_dim"] = 8
        callbacks.append(
            {
                "class_path": "GenerativeMetrics",
                "init_args": {
                    "metrics": ["fid"],
                    "num_gen": 32,
                    "every_n_batches": 2,
                    "feature_extractor": extractor,
                    "progress_bar": False,
                },
            }
        )
    config = {
        "seed_everything": 0,
        "model": {"class_path": "StyleGAN2ADA", "init_args": {"config": "tiny"}},
        "data": {"class_path": "DigitsDataModule", "init_args": {"resolution": 8, "batch_size": 8}},
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 1,
            "limit_train_batches": 4,
            "log_every_n_steps": 1,
            "default_root_dir": "runs/r",
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "callbacks": callbacks,
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(config: Path, *args: str) -> GenAugCLI:
    return GenAugCLI(args=["fit", "--config", str(config), *args])


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


# ------------------------------------------------------------------------------------------- folders
def test_the_run_folder_follows_the_first_logger(tmp_path: Path):
    from lightning.pytorch.loggers import TensorBoardLogger

    def trainer(logger) -> pl.Trainer:
        return pl.Trainer(
            default_root_dir=tmp_path, logger=logger, accelerator="cpu", enable_progress_bar=False
        )

    assert run_dir(trainer(False)) == str(tmp_path)
    assert run_dir(trainer(ContinuingCSVLogger(tmp_path / "csv"))) == str(
        tmp_path / "csv/lightning_logs/version_0"
    )
    tensorboard = TensorBoardLogger(tmp_path / "tb", name="exp", version="v7")
    assert run_dir(trainer(tensorboard)) == str(tmp_path / "tb/exp/v7")


@needs_wandb
def test_two_wandb_runs_never_share_a_config_samples_or_checkpoints(workdir: Path):
    """The issue's runs: config.yaml and samples/ went to the save_dir both runs share."""
    import wandb

    config = write_config(workdir)
    args = ["--trainer.logger", "WandbLogger", "--trainer.logger.project", "p"]
    first = fit(config, *args).trainer.logger.version
    wandb.finish()
    second = fit(config, *args, "--data.xflip", "true").trainer.logger.version
    wandb.finish()

    assert first != second
    root = workdir / "runs" / "r"
    assert not (root / "config.yaml").exists() and not (root / "samples").exists()
    assert sorted(path.name for path in (root / "p").iterdir()) == sorted([first, second])
    for run_id, xflip in ((first, False), (second, True)):
        folder = root / "p" / run_id
        saved = yaml.safe_load((folder / "config.yaml").read_text())
        assert saved["data"]["init_args"]["xflip"] is xflip  # its own config, not the other's
        assert sorted(path.name for path in (folder / "samples").iterdir()) == [
            "batch_0000002.png",
            "batch_0000004.png",
        ]
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        # W&B's own files of the run (history, media), linked into the run folder
        (wandb_files,) = (folder / "wandb").iterdir()
        assert wandb_files.name.endswith(run_id)
        assert (wandb_files / f"run-{run_id}.wandb").is_file()


@needs_wandb
def test_wandb_config_holds_the_data_and_callback_arguments(workdir: Path):
    config = write_config(workdir)
    cli = fit(config, "--trainer.logger", "WandbLogger", "--data.xflip", "true")
    logged = cli.trainer.logger.experiment.config.as_dict()

    data = logged["data"]["init_args"]
    assert logged["data"]["class_path"].endswith("DigitsDataModule")
    assert (data["resolution"], data["batch_size"], data["xflip"]) == (8, 8, True)
    callbacks = logged["trainer"]["callbacks"]
    assert callbacks["SampleGrid"]["init_args"]["every_n_batches"] == 2
    assert callbacks["KimgCheckpoint"]["class_path"].endswith("KimgCheckpoint")
    assert logged["model"]["init_args"]["config"] == "tiny"
    assert logged["trainer"]["max_epochs"] == 1


def test_wandb_config_names_each_callback_and_keeps_everything_else():
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 4,
            "callbacks": [
                {"class_path": "a.Grid", "init_args": {"n": 1}},
                {"class_path": "b.Grid", "init_args": {"n": 2}},
                {"class_path": "Ada", "init_args": {"target": 0.6}},
            ],
            "plugins": ["x", "y"],
        },
    }
    assert wandb_config(config) == {
        "seed_everything": 0,
        "trainer": {
            "max_steps": 4,
            "callbacks": {
                "Grid": {"class_path": "a.Grid", "init_args": {"n": 1}},
                "Grid#2": {"class_path": "b.Grid", "init_args": {"n": 2}},
                "Ada": {"class_path": "Ada", "init_args": {"target": 0.6}},
            },
            "plugins": ["x", "y"],
        },
    }


# -------------------------------------------------------------------------------------------- steps
def test_training_and_metric_rows_of_metrics_csv_share_one_step_axis(workdir: Path):
    """The issue's split: KID rows at optimizer steps (2-3 a batch), training rows at batches."""
    cli = fit(write_config(workdir, metrics=True))
    assert cli.trainer.global_step > 4  # G, D and the lazy regularisation steps: optimizer steps != batches
    rows = csv_rows(workdir / "runs/r/lightning_logs/version_0/metrics.csv")
    training = {row["step"]: row["kimg"] for row in rows if row.get("loss/G")}
    assert sorted(training, key=int) == ["0", "1", "2", "3"]  # one row a batch
    metric_rows = [row for row in rows if row.get("metrics/fid")]
    # after batches 2 and 4 (no extra row at fit end: the last batch was evaluated)
    assert [row["step"] for row in metric_rows] == ["1", "3"]
    for row in metric_rows:
        assert float(row["kimg"]) == pytest.approx(float(training[row["step"]]))  # the batch's own step


# ------------------------------------------------------------------------------------------- resume
# The first 2 of the config's 4 batches (4 optimizer steps in the first, with the lazy regularisation, 2 in
# the second). Not `--model.max_kimg`: LightningCLI replaces the model's arguments with the checkpoint's.
HALF_RUN = ("--trainer.max_steps", "6")


def test_a_resumed_run_continues_its_version_and_its_metrics_csv(workdir: Path, caplog):
    config = write_config(workdir)
    fit(config, *HALF_RUN)
    version_0 = workdir / "runs/r/lightning_logs/version_0"
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        cli = fit(config, "--ckpt_path", str(version_0 / "checkpoints" / "last.ckpt"))
    assert int(cli.model.cur_nimg) == 32  # it did train the second part
    assert sorted(path.name for path in (workdir / "runs/r/lightning_logs").iterdir()) == ["version_0"]
    steps = [int(row["step"]) for row in csv_rows(version_0 / "metrics.csv") if row.get("loss/G")]
    assert steps == [0, 1, 2, 3]  # both parts, in one file, on one axis
    assert sorted(path.name for path in (version_0 / "samples").iterdir()) == [
        "batch_0000002.png",
        "batch_0000004.png",
    ]
    assert f"this run continues its logs in {version_0.relative_to(workdir)}." in caplog.text


def test_a_checkpoint_from_elsewhere_starts_a_new_version_and_says_where_it_logs(workdir: Path, caplog):
    config = write_config(workdir)
    fit(config, *HALF_RUN)
    copied = workdir / "kept" / "last.ckpt"
    copied.parent.mkdir()
    copied.write_bytes((workdir / "runs/r/lightning_logs/version_0/checkpoints/last.ckpt").read_bytes())
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        fit(config, "--ckpt_path", str(copied))
    version_1 = Path("runs/r/lightning_logs/version_1")
    assert (workdir / version_1 / "checkpoints" / "last.ckpt").is_file()
    steps = [int(row["step"]) for row in csv_rows(workdir / version_1 / "metrics.csv") if row.get("loss/G")]
    assert steps == [2, 3]  # the run's axis goes on in the new folder
    line = (
        "which is not in a run folder of this logger: this run's logs, config, samples and checkpoints go to"
    )
    assert f"{line} {version_1}." in caplog.text


@needs_wandb
def test_a_wandb_run_resumed_from_its_folder_keeps_its_id_and_folder(workdir: Path):
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(offline=True, save_dir=str(workdir / "runs"), project="p")
    trainer = pl.Trainer(logger=logger, accelerator="cpu", enable_progress_bar=False)
    ckpt = workdir / "runs" / "p" / "abc123" / "checkpoints" / "last.ckpt"
    assert _continue_run_folder(trainer, str(ckpt)) == "abc123"
    assert logger.experiment.id == "abc123"
    assert run_dir(trainer) == str(workdir / "runs" / "p" / "abc123")


def test_only_a_checkpoint_inside_a_version_folder_names_the_version(tmp_path: Path):
    save_dir = str(tmp_path / "runs")
    inside = tmp_path / "runs/lightning_logs/version_3/checkpoints/kimg000001.000.ckpt"
    assert version_of_run_folder(inside, save_dir, "lightning_logs") == "version_3"
    assert version_of_run_folder(inside, save_dir, "other") is None
    assert (
        version_of_run_folder(
            tmp_path / "runs/lightning_logs/version_3/last.ckpt", save_dir, "lightning_logs"
        )
        is None
    )
    assert version_of_run_folder("last", save_dir, "lightning_logs") is None
    assert version_of_run_folder(None, save_dir, "lightning_logs") is None


def test_the_continuing_csv_logger_appends_where_lightnings_deletes(tmp_path: Path):
    first = ContinuingCSVLogger(tmp_path, version="version_0")
    first.log_metrics({"loss": 1.0}, step=0)
    first.save()
    second = ContinuingCSVLogger(tmp_path, version="version_0")
    second.log_metrics({"loss": 0.5, "kimg": 0.1}, step=1)  # a new key rewrites the header, keeps the rows
    second.save()
    rows = csv_rows(tmp_path / "lightning_logs/version_0/metrics.csv")
    assert [(row["step"], row["loss"], row["kimg"]) for row in rows] == [
        ("0", "1.0", ""),
        ("1", "0.5", "0.1"),
    ]


def test_a_resumed_run_drops_the_rows_a_crashed_run_logged_after_its_checkpoint(tmp_path: Path):
    """The crashed run logged steps 0-4 and was checkpointed at step 2; the resumed run logs step 3 again."""
    crashed = ContinuingCSVLogger(tmp_path, version="version_0")
    for step in range(5):
        crashed.log_metrics({"loss": float(step)}, step=step)
    crashed.save()
    resumed = ContinuingCSVLogger(tmp_path, version="version_0")
    resumed.replace_resumed_steps = True  # what `fit --ckpt_path <run folder>/checkpoints/...` sets
    resumed.log_metrics({"loss": 30.0}, step=3)
    resumed.log_metrics({"loss": 40.0}, step=4)
    resumed.save()
    rows = csv_rows(tmp_path / "lightning_logs/version_0/metrics.csv")
    assert [(row["step"], row["loss"]) for row in rows] == [
        ("0", "0.0"),
        ("1", "1.0"),
        ("2", "2.0"),
        ("3", "30.0"),
        ("4", "40.0"),
    ]
    evaluation = ContinuingCSVLogger(tmp_path, version="version_0")  # e.g. `test` of an earlier checkpoint
    evaluation.log_metrics({"test/loss": 5.0}, step=0)
    evaluation.save()
    rows = csv_rows(tmp_path / "lightning_logs/version_0/metrics.csv")
    assert [row["step"] for row in rows] == ["0", "1", "2", "3", "4", "0"]


def test_only_a_logger_without_a_version_of_its_own_continues_the_checkpoints_folder(tmp_path: Path):
    from lightning.pytorch.loggers import TensorBoardLogger

    ckpt = str(tmp_path / "runs/lightning_logs/version_3/checkpoints/last.ckpt")

    def continued(logger) -> tuple[str | None, str]:
        trainer = pl.Trainer(logger=logger, accelerator="cpu", enable_progress_bar=False)
        return _continue_run_folder(trainer, ckpt), run_dir(trainer)

    folder = str(tmp_path / "runs/lightning_logs/version_3")
    assert continued(TensorBoardLogger(tmp_path / "runs")) == ("version_3", folder)
    assert continued(resumed := ContinuingCSVLogger(tmp_path / "runs")) == ("version_3", folder)
    assert resumed.replace_resumed_steps  # the crashed run's rows after the checkpoint will be replaced
    own = str(tmp_path / "runs/lightning_logs/mine")
    assert continued(mine := ContinuingCSVLogger(tmp_path / "runs", version="mine")) == (None, own)
    assert not mine.replace_resumed_steps
    assert continued(ContinuingCSVLogger(tmp_path / "elsewhere"))[0] is None
