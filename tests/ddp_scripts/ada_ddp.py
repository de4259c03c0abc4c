"""Train a foreign GAN with AdaptiveAugmentation on 2 CPU processes (gloo); each rank writes its final p.

Usage: ``python ada_ddp.py SIGNS_JSON OUT_DIR STRATEGY[,STRATEGY...] [HEURISTIC[,HEURISTIC...]]``: one
run per strategy, one after the other in the same two processes (one interpreter start for all of them),
each rank writing ``rank<r>-<strategy>.json``; then one run per held-out heuristic (``heldout_ddp.py``),
each rank writing ``rank<r>-<heuristic>.json``. ``SIGNS_JSON`` holds one sign (+1/-1) per training
image; image ``i`` is the constant ``0.5 * sign[i]`` and the discriminator's logit is its first pixel,
so the signs D reports are known in advance. Rank ``r`` trains on images ``r, r + 2, r + 4, ...`` in
order (its own loader: Lightning's distributed sampler always shuffles training data).

``STRATEGY`` ``ddp_find_unused_parameters_true``: the GAN calls ``manual_backward`` as Lightning's GAN
example does. ``ddp``: it calls ``lightning_genaug.distributed.backward_and_sync`` instead (plain
``ddp`` needs it: each backward reaches one network).

Run by ``tests/test_callback_ada_ddp.py`` in a subprocess, because Lightning's DDP launcher re-runs
the command line for rank 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment.protocol import SignAccumulator
from lightning_genaug.callbacks.ada import AdaptiveAugmentation
from lightning_genaug.distributed import backward_and_sync

BATCH = 4


class IdentityPipe(SignAccumulator):
    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return images


class PixelDiscriminator(nn.Module):
    """Logit = the image's first pixel (a trainable gain multiplies 0 so D has parameters to sync)."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images[:, 0, 0, 0] + 0.0 * self.gain


class TinyGAN(pl.LightningModule):
    def __init__(self, signs: torch.Tensor, sync_per_network: bool) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.signs = signs
        self.sync_per_network = sync_per_network
        self.generator = nn.Linear(4, 16)
        self.discriminator = PixelDiscriminator()

    def training_step(self, batch, batch_idx):
        images, _ = batch
        opt_g, opt_d = self.optimizers()
        fakes = self.generator(torch.randn(images.shape[0], 4)).view(-1, 1, 4, 4)
        real_loss = F.softplus(-self.discriminator(images)).mean()
        d_loss = real_loss + F.softplus(self.discriminator(fakes.detach())).mean()
        opt_d.zero_grad()
        self.backward_for(d_loss, self.discriminator)
        opt_d.step()
        g_loss = F.softplus(-self.discriminator(fakes)).mean()
        opt_g.zero_grad()
        self.backward_for(g_loss, self.generator)
        opt_g.step()

    def backward_for(self, loss: torch.Tensor, network: nn.Module) -> None:
        if self.sync_per_network:
            backward_and_sync(self, loss, network)
        else:
            self.manual_backward(loss)

    def configure_optimizers(self):
        return [
            torch.optim.SGD(self.generator.parameters(), lr=0.0),
            torch.optim.SGD(self.discriminator.parameters(), lr=0.0),
        ]

    def train_dataloader(self) -> DataLoader:
        signs = self.signs[self.global_rank :: self.trainer.world_size]
        images = (0.5 * signs).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
        return DataLoader(TensorDataset(images, torch.zeros(len(signs), dtype=torch.long)), batch_size=BATCH)


def two_rank_trainer(strategy: str, callback: pl.Callback, **options) -> pl.Trainer:
    """One epoch on 2 CPU ranks, each on its own loader (no distributed sampler), nothing written."""
    return pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_epochs=1,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        **options,
    )


def main(signs_path: str, out_dir: str, strategy: str) -> None:
    signs = torch.tensor(json.loads(Path(signs_path).read_text()), dtype=torch.float32)
    callback = AdaptiveAugmentation(pipe=IdentityPipe(), every_n_batches=2, speed_kimg=0.05)
    trainer = two_rank_trainer(strategy, callback)
    trainer.fit(TinyGAN(signs, sync_per_network=strategy == "ddp"))
    result = {"p": callback.p, "pipe_p": float(callback.pipe.p), "rt": callback.rt}
    (Path(out_dir) / f"rank{trainer.global_rank}-{strategy}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    torch.set_num_threads(1)
    for strategy in sys.argv[3].split(","):
        main(sys.argv[1], sys.argv[2], strategy)
    if len(sys.argv) > 4:
        from heldout_ddp import main as heldout_main  # it imports this module's GAN parts

        for heuristic in sys.argv[4].split(","):
            heldout_main(heuristic, sys.argv[2])
    if torch.distributed.is_initialized():  # gloo's threads otherwise may abort the interpreter at exit
        torch.distributed.destroy_process_group()
