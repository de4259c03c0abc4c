"""W&B for real, offline: a short fit writes a run whose history has a loss, a metric, kimg and a grid."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from wandb_env import end_wandb, offline_wandb_env

from lightning_genaug.callbacks import GenerativeMetrics
from lightning_genaug.callbacks.samples import SampleGrid
from lightning_genaug.imports import WANDB_AVAILABLE
from lightning_genaug.metrics import RealData

pytestmark = pytest.mark.skipif(not WANDB_AVAILABLE, reason="wandb is not installed")

SIZE = 8
_LOG_BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log: 32 KiB blocks of checksummed chunks
_FILE_HEADER = 7  # ":W&B", a 2-byte magic and a version byte
_CHUNK_HEADER = 7  # crc32 (4), little-endian length (2), chunk type (1)
_FULL, _LAST = 1, 4


def read_run_records(path: Path) -> list:
    """Every protobuf record of an offline run file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, offset = [], b"", _FILE_HEADER
    while offset + _CHUNK_HEADER <= len(data):
        left_in_block = _LOG_BLOCK - offset % _LOG_BLOCK
        if left_in_block < _CHUNK_HEADER:  # block trailer padding
            offset += left_in_block
            continue
        length = int.from_bytes(data[offset + 4 : offset + 6], "little")
        chunk_type = data[offset + 6]
        if offset + _CHUNK_HEADER + length > len(data):  # the service is still writing this chunk
            break
        pending += data[offset + _CHUNK_HEADER : offset + _CHUNK_HEADER + length]
        offset += _CHUNK_HEADER + length
        if chunk_type in (_FULL, _LAST):
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def read_finished_run(path: Path, timeout: float = 30.0) -> list:
    """The records of a run file once its ``exit`` record is on disk (the W&B service writes it after
    ``wandb.finish()`` returns)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_run_records(path)
        finished = any(record.WhichOneof("record_type") == "exit" for record in records)
        if finished or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def history_rows(records: list) -> list[dict]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            # nested values (an image's metadata) come flattened as "samples/_type", "samples/filenames"
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


class ToyGenerator(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Linear(4, SIZE * SIZE)

    def sample(self, n, labels=None, generator=None):
        z = torch.randn(n, 4, generator=generator, device=self.device)
        return torch.tanh(self.net(z)).view(n, 1, SIZE, SIZE)

    def training_step(self, batch, batch_idx):
        loss = (torch.tanh(self.net(torch.randn(batch[0].shape[0], 4))) - batch[0].flatten(1)).square().mean()
        self.log("loss/G", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch):
    for name, value in offline_wandb_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    yield tmp_path
    end_wandb()


def test_offline_run_has_loss_metric_kimg_and_sample_grid(offline_wandb):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    tmp_path = offline_wandb
    logger = WandbLogger(offline=True, save_dir=str(tmp_path), project="lightning-genaug-test")
    images = torch.rand(64, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    extractor = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 5))
    callbacks = [
        SampleGrid(num_samples=4, nrow=2, every_n_batches=2),
        GenerativeMetrics(
            num_gen=32,
            feature_extractor=extractor,
            real=RealData(cache_dir=tmp_path / "stats"),
            progress_bar=False,
        ),
    ]
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        logger=logger,
        callbacks=callbacks,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(ToyGenerator(), DataLoader(TensorDataset(images), batch_size=16))
    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()

    rows = history_rows(read_finished_run(next(run_dir.glob("run-*.wandb"))))
    assert any("loss/G" in row for row in rows)
    metric_rows = [row for row in rows if "metrics/fid" in row]
    assert len(metric_rows) == 1 and metric_rows[0]["kimg"] == pytest.approx(0.064)
    grid_rows = [row for row in rows if row.get("samples/_type") == "images/separated"]
    # one step axis, training batches: the grids after batches 2 and 4 share the steps of those batches'
    # losses (1 and 3; Lightning logs the k-th batch at step k - 1); the fit-end metric comes after batch 4
    assert [(row["trainer/global_step"], row["kimg"]) for row in grid_rows] == [(1, 0.032), (3, 0.064)]
    assert sorted(row["trainer/global_step"] for row in rows if "loss/G" in row) == [0, 1, 2, 3]
    assert metric_rows[0]["trainer/global_step"] == 4
    for row in grid_rows:
        assert (run_dir / "files" / row["samples/filenames"][0]).is_file()
    run_folder = tmp_path / "lightning-genaug-test" / logger.version  # the run's own, not the shared save_dir
    assert (run_folder / "samples" / "batch_0000004.png").is_file()
    assert not (tmp_path / "samples").exists()
