"""Train a native GAN whose D scores are known with ``AdaptiveAugmentation(heuristic=H)`` reading held-out
reals on 2 CPU processes (gloo); each rank writes its final p, gap, r_v and the reading it held.

:func:`main` runs one heuristic, each rank writing ``rank<r>-<heuristic>.json``; ``ada_ddp.py`` calls it
for every heuristic of its command line, after its own runs, in the same two processes. ``auto`` runs
with DiffAugment chained after the pipe and its default target, so that it picks the held-out gap.

D's raw output on an image is its first pixel. Rank ``r``'s training reals are the constant ``1 + 2r``
(1 and 3: 2 on average), its held-out reals ``r`` (0 and 1: 0.5 on average) and D scores generated
images -2 on every rank: over both ranks the gap is 1.5 and ``r_v`` 1.5 / 4, but alone rank 0 reads a
gap of 1 and rank 1 a gap of 2; only the reduction makes them agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch
from ada_ddp import IdentityPipe, two_rank_trainer  # this folder is the script's first import path
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import Chain, DiffAugment
from lightning_genaug.callbacks.ada import AdaptiveAugmentation
from lightning_genaug.distributed import backward_and_sync

BATCH, BATCHES, INTERVAL, SPEED_KIMG = 4, 8, 2, 0.2
TARGETS = {"gap": 1.2, "rv": 0.36, "auto": None}  # between rank 0's reading alone and both ranks' (p rises)


class ScoredGAN(pl.LightningModule):
    """Owns ``augment_pipe`` (the native path) and answers ``score_reals`` / ``score_fakes`` from pixels."""

    def __init__(self, chain_diffaugment: bool = False) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.augment_pipe = IdentityPipe(p=0.5)
        if chain_diffaugment:  # D's scores come from `score_reals` on clean reals: DiffAugment changes none
            self.augment_pipe = Chain([self.augment_pipe, DiffAugment("translation")])
        self.discriminator = nn.Linear(1, 1)

    def score_reals(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return images[:, :1, 0, 0]

    def score_fakes(self, n: int, real_labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.full((n, 1), -2.0)

    def training_step(self, batch, batch_idx):
        images, _ = batch
        real_logits = self.score_reals(self.augment_pipe(images)) + 0.0 * self.discriminator.weight.sum()
        self.augment_pipe.observe(real_logits.detach())
        opt_d = self.optimizers()
        opt_d.zero_grad()
        backward_and_sync(self, real_logits.mean(), self.discriminator)
        opt_d.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.discriminator.parameters(), lr=0.0)


class RankData(pl.LightningDataModule):
    """Rank ``r``: training reals ``1 + 2r``, held-out reals ``r`` (each rank its own loaders)."""

    def _constant(self, value: float, count: int) -> DataLoader:
        images = torch.full((count, 1, 4, 4), value)
        return DataLoader(TensorDataset(images, torch.zeros(count, dtype=torch.long)), batch_size=BATCH)

    def train_dataloader(self) -> DataLoader:
        return self._constant(1.0 + 2 * self.trainer.global_rank, BATCH * BATCHES)

    def val_dataloader(self) -> DataLoader:
        return self._constant(float(self.trainer.global_rank), 32)


def main(heuristic: str, out_dir: str) -> None:
    callback = AdaptiveAugmentation(
        heuristic=heuristic, target=TARGETS[heuristic], every_n_batches=INTERVAL, speed_kimg=SPEED_KIMG
    )
    trainer = two_rank_trainer("ddp", callback, limit_val_batches=0)
    trainer.fit(ScoredGAN(chain_diffaugment=heuristic == "auto"), datamodule=RankData())
    result = {"p": callback.p, "gap": callback.gap, "rv": callback.rv, "reading": callback.reading}
    (Path(out_dir) / f"rank{trainer.global_rank}-{heuristic}.json").write_text(json.dumps(result))
