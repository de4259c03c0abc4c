"""Train our GAN modules on 2 CPU processes (gloo); each rank writes what it ended with.

Usage: ``python gan_ddp.py OUT_DIR RUN [RUN ...]`` with ``RUN`` = ``MODEL:STRATEGY``, ``MODEL`` one of
``stylegan2``, ``scalegan`` and ``STRATEGY`` a Lightning strategy name (``ddp``,
``ddp_find_unused_parameters_true``). The runs share the two processes (Lightning launches rank 1
once). Every run trains 4 batches of 8 random 8x8 images per rank with every phase scheduled
(``r1_interval = pl_interval = 2``) and ``AdaptiveAugmentation`` adapting ``p``, then rank ``r``
writes ``OUT_DIR/MODEL-STRATEGY-rank{r}.json``: a digest of every parameter of G, D and G_ema, whether
they moved, the final ``p``, the batches seen and a digest of the first latents G drew. Finally each
rank averages toy gradients with ``average_gradients`` and writes ``OUT_DIR/average-rank{r}.json``.

Run by ``tests/test_ddp.py`` in a subprocess, because Lightning's DDP launcher re-runs the command line
for rank 1.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import AugmentPipe, DataScaling
from lightning_genaug.callbacks import AdaptiveAugmentation
from lightning_genaug.distributed import average_gradients
from lightning_genaug.models.scalegan import ScaleGAN
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.regularizers import R1, VarianceRegularizer

BATCH, BATCHES_PER_RANK, RANKS = 8, 4, 2
INITIAL_P = {"stylegan2": 0.2, "scalegan": 0.5}
COMMON = dict(config="tiny", resolution=8, channels=1, num_classes=0, config_overrides={"pl_interval": 2})


def build(model: str) -> StyleGAN2ADA:
    p = INITIAL_P[model]
    if model == "stylegan2":
        return StyleGAN2ADA(augment=AugmentPipe("bgc", p=p), regularizer=R1(every_n_batches=2), **COMMON)
    if model == "scalegan":
        scaling, variance = DataScaling("uniform", p=p), VarianceRegularizer(every_n_batches=2)
        return ScaleGAN(augment=scaling, regularizer=variance, **COMMON)
    raise ValueError(f"Unknown model {model!r}; use stylegan2 or scalegan.")


def digest(module: torch.nn.Module) -> str:
    """SHA-1 of every parameter's bytes, in order: equal on two ranks iff the weights are identical."""
    sha = hashlib.sha1()
    for name, param in module.named_parameters():
        sha.update(name.encode())
        sha.update(param.detach().cpu().numpy().tobytes())
    return sha.hexdigest()


def fit(model_name: str, strategy: str, out_dir: Path) -> None:
    pl.seed_everything(0)
    model = build(model_name)
    initial = {name: digest(getattr(model, name)) for name in ("G", "D")}
    images = torch.rand(RANKS * BATCHES_PER_RANK * BATCH, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    first_latents: list[str] = []  # digest of the first z batch G's mapping sees in training

    def record_latents(mapping: torch.nn.Module, inputs: tuple) -> None:
        if mapping.training and not first_latents:
            first_latents.append(hashlib.sha1(inputs[0].detach().cpu().numpy().tobytes()).hexdigest())

    model.G.mapping.register_forward_pre_hook(record_latents)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=RANKS,
        strategy=strategy,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[AdaptiveAugmentation(every_n_batches=2, speed_kimg=0.05)],
    )
    trainer.fit(model, DataLoader(TensorDataset(images * 2 - 1), batch_size=BATCH))
    result = {
        "digests": {name: digest(getattr(model, name)) for name in ("G", "D", "G_ema")},
        "moved": {name: digest(getattr(model, name)) != initial[name] for name in initial},
        "p": float(model.augment_pipe.p),
        "initial_p": INITIAL_P[model_name],
        "num_batches": int(model.num_batches),
        "kimg": float(model.cur_nimg) / 1000,
        "first_latents": first_latents[0],
    }
    (out_dir / f"{model_name}-{strategy}-rank{trainer.global_rank}.json").write_text(json.dumps(result))


def average_toy_gradients(out_dir: Path) -> None:
    """``average_gradients`` on three parameters: grads on both ranks, on rank 1 only, on none."""
    rank = torch.distributed.get_rank()
    both, rank1_only, unused = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    both.grad = torch.tensor([1.0, 2.0]) * (rank + 1)  # rank 0: [1, 2], rank 1: [2, 4]
    if rank == 1:
        rank1_only.grad = torch.tensor([4.0, 6.0])
    loss = average_gradients([both, rank1_only, unused], extra=torch.tensor(float(rank)))
    result = {
        "both": both.grad.tolist(),
        "rank1_only": rank1_only.grad.tolist(),
        "unused": unused.grad,
        "loss": float(loss),
    }
    (out_dir / f"average-rank{rank}.json").write_text(json.dumps(result))


def main(out_dir: str, runs: list[str]) -> None:
    torch.set_num_threads(1)
    for run in runs:
        model_name, strategy = run.split(":")
        fit(model_name, strategy, Path(out_dir))
    average_toy_gradients(Path(out_dir))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
    if torch.distributed.is_initialized():  # gloo's threads otherwise may abort the interpreter at exit
        torch.distributed.destroy_process_group()
