"""Step time of StyleGAN2ADA on 2 processes: plain ``ddp`` vs ``ddp_find_unused_parameters_true``.

One launch of 2 processes (gloo on CPU, NCCL on GPUs) trains the same model under three set-ups,
taking turns for ``--rounds`` rounds so that they share the background load:

- ``ddp``: Lightning's default strategy; the module averages only the stepped network's gradients
  (``lightning_genaug.distributed.backward_and_sync``);
- ``ddp_find_unused_parameters_true``: the same module code (the whole-module reducer, and with it
  the unused-parameter search, is switched off around each backward), to show the flag costs nothing;
- ``find_unused, 0.1 path``: what 0.1 ran, the module's backward through Lightning's whole-module
  reducer, which walks the autograd graph for unused parameters after every forward and all-reduces
  the gradients of G *and* D in every phase (plain ``manual_backward`` patched in for this row).

Seconds per batch (all four phases amortised: R1 every ``r1_interval``, path length every
``pl_interval``) are the median over the timed batches of rank 0, wall clock and process CPU time.

Usage::

    python benchmarks/ddp_step_time.py                      # the main job's shape: tiny, 16x16x1, batch 32
    # wider networks: cifar at channel_max 128
    python benchmarks/ddp_step_time.py --config cifar --channel-max 128 --resolution 32 --channels 3 \\
        --batch 32
    python benchmarks/ddp_step_time.py --accelerator gpu    # 2 GPUs

Writes a markdown table to stdout and, with ``--json PATH``, the numbers as JSON (rank 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import AugmentPipe
from lightning_genaug.callbacks import AdaptiveAugmentation
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.models.stylegan2 import module as stylegan2_module

SETUPS = ("ddp", "ddp_find_unused_parameters_true", "find_unused, 0.1 path")


class BatchTimer(pl.Callback):
    """Wall and process-CPU seconds of every training batch after ``warmup`` batches."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start = (0.0, 0.0)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if int(pl_module.num_batches) > self.warmup:
            self.wall.append(time.perf_counter() - self._start[0])
            self.cpu.append(time.process_time() - self._start[1])


def _backward_through_the_whole_module_reducer(
    module: pl.LightningModule, loss: torch.Tensor, network: torch.nn.Module
) -> torch.Tensor:
    """0.1's backward: ``manual_backward`` only, so Lightning's DDP reducer syncs the whole module."""
    module.manual_backward(loss)
    return loss.detach().float()


@contextmanager
def backward_of(setup: str) -> Iterator[None]:
    """Patch 0.1's backward into the module for the ``0.1 path`` set-up; nothing for the others."""
    original: Callable = stylegan2_module.backward_and_sync
    if setup.endswith("0.1 path"):
        stylegan2_module.backward_and_sync = _backward_through_the_whole_module_reducer
    try:
        yield
    finally:
        stylegan2_module.backward_and_sync = original


def time_setup(setup: str, args: argparse.Namespace) -> BatchTimer:
    pl.seed_everything(0)
    model = StyleGAN2ADA(
        config=args.config,
        resolution=args.resolution,
        channels=args.channels,
        num_classes=0,
        augment=AugmentPipe("bgc"),
        config_overrides={"channel_max": args.channel_max} if args.channel_max else None,
    )
    count = args.batch * (args.warmup + args.batches) * 2
    images = torch.rand(count, args.channels, args.resolution, args.resolution) * 2 - 1
    timer = BatchTimer(args.warmup)
    strategy = "ddp_find_unused_parameters_true" if setup.startswith("find_unused") else setup
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=2,
        strategy=strategy,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer, AdaptiveAugmentation()],
    )
    with backward_of(setup):
        trainer.fit(model, DataLoader(TensorDataset(images), batch_size=args.batch, drop_last=True))
    return timer


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--channel-max", type=int, default=None, help="override the config's channel_max")
    parser.add_argument("--batch", type=int, default=32, help="batch per process")
    parser.add_argument("--batches", type=int, default=16, help="timed batches per set-up and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads per process")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    timers: dict[str, list[BatchTimer]] = {setup: [] for setup in SETUPS}
    for _ in range(args.rounds):
        for setup in SETUPS:
            timers[setup].append(time_setup(setup, args))
    results = {
        setup: {
            "wall_s_per_batch": statistics.median(t for timer in runs for t in timer.wall),
            "cpu_s_per_batch": statistics.median(t for timer in runs for t in timer.cpu),
            "batches": sum(len(timer.wall) for timer in runs),
        }
        for setup, runs in timers.items()
    }
    if torch.distributed.get_rank() == 0:
        base = results["ddp"]["wall_s_per_batch"]
        print(
            f"\n{args.config}, {args.resolution}x{args.resolution}x{args.channels}, batch {args.batch} per "
            f"process, 2 processes ({args.accelerator}), channel_max {args.channel_max or 'config'}\n"
        )
        print("| set-up | wall ms / batch | CPU ms / batch (rank 0) | wall vs `ddp` |")
        print("| --- | --- | --- | --- |")
        for setup, row in results.items():
            print(
                f"| {setup} | {row['wall_s_per_batch'] * 1000:.1f} | {row['cpu_s_per_batch'] * 1000:.1f} | "
                f"{row['wall_s_per_batch'] / base:.2f}x |"
            )
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **results}))
    return results


if __name__ == "__main__":
    main()
