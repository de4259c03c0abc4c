"""Runs that never mix under DDP (2 CPU processes, gloo): the run folder is rank 0's on every rank.

Rank 1 of a W&B run knows no run id (its logger's experiment is rank 0's alone), so every rank must
take rank 0's folder (``runs.run_dir`` broadcasts it) for ``config.yaml``, the grids, the checkpoints
and a resume. ``lightning-genaug fit`` runs in subprocesses (Lightning's DDP launcher re-runs the
command line for rank 1): the first half of a run, then its resume from the run folder's ``last.ckpt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from ddp_processes import Script, run_scripts
from test_runs import write_config
from wandb_env import offline_wandb_env

from lightning_genaug.imports import WANDB_AVAILABLE

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not WANDB_AVAILABLE, reason="wandb is not installed")]

COMMAND = Path(sys.executable).with_name("lightning-genaug")


def test_a_wandb_run_and_its_resume_keep_one_folder_on_both_ranks(tmp_path: Path):
    config = write_config(tmp_path)
    env = {"LIGHTNING_GENAUG_CACHE": str(tmp_path / "cache"), **offline_wandb_env(tmp_path)}
    args = ["fit", "--config", str(config), "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    args += ["--trainer.logger", "WandbLogger", "--trainer.logger.project", "p"]
    run_scripts(Script(COMMAND, [*args, "--trainer.max_steps", "6"], tmp_path, env=env), timeout=240)
    project = tmp_path / "runs" / "r" / "p"
    (folder,) = project.iterdir()  # one folder: rank 1 wrote none of its own
    run_scripts(
        Script(COMMAND, [*args, "--ckpt_path", str(folder / "checkpoints" / "last.ckpt")], tmp_path, env=env),
        timeout=240,
    )

    assert [path.name for path in project.iterdir()] == [folder.name]  # the resume continued it
    assert sorted(path.name for path in (folder / "samples").iterdir()) == [
        "batch_0000002.png",
        "batch_0000004.png",
    ]
    assert (folder / "config.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    links = sorted((folder / "wandb").iterdir())
    assert len(links) == 2 and all(link.name.endswith(folder.name) for link in links)  # both parts' files
    assert not (tmp_path / "runs" / "r" / "config.yaml").exists()
    assert not (tmp_path / "runs" / "r" / "samples").exists()
