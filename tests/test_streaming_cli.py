"""The streaming path from the command line: ``prepare``, then ``fit`` with the example config;
the multi-node example config parses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from streaming_data import write_indexed_images

from lightning_genaug.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"


def test_prepare_then_fit_with_the_streaming_config(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lightning-genaug"])
    write_indexed_images(tmp_path / "images", 16, size=10)
    main(["prepare", "images", "chunks", "--resolution", "8", "--center-crop", "--workers", "1"])
    assert "Wrote 16 images (8x8, 2 classes)" in capsys.readouterr().out
    main(
        ["fit", "--config", str(CONFIGS / "ada-streaming.yaml"), "--data.input_dir", "chunks",
         "--data.batch_size", "4", "--data.num_workers", "0", "--model.config", "tiny",
         "--trainer.max_steps", "4", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    )  # fmt: skip
    run = tmp_path / "runs" / "streaming" / "lightning_logs" / "version_0"
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_multinode_config_parses(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["lightning-genaug"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS / "ada-multinode.yaml"), "--print_config"])
    assert (exit_info.value.code or 0) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["num_nodes"] == 2 and config["trainer"]["devices"] == 8
    assert config["data"]["class_path"].endswith("StreamingImageDataModule")
