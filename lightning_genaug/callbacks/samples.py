"""SampleGrid: fixed-seed image grids and one of the training images, as PNG files and to every logger."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import nn

from lightning_genaug._checks import check_images, check_positive_int, check_range
from lightning_genaug.callbacks._progress import TrainingProgress, training_progress
from lightning_genaug.callbacks.generative_metrics import generator_num_classes, generator_sample
from lightning_genaug.data.batch import split_batch
from lightning_genaug.images import grid_to_uint8, picture_grid, save_png
from lightning_genaug.runs import log_step, run_dir

__all__ = ["SampleGrid"]


class SampleGrid(Callback):
    """Logs grids of samples drawn from fixed latents, to W&B, TensorBoard and a PNG file.

    The module is used only through ``pl_module.sample(n, labels=None, generator=None)`` (float
    ``(n, C, H, W)`` in [-1, 1], EMA weights where they exist). Each grid reseeds a generator on the
    module's device with ``seed``, so the latents (and labels) are the same every time and the grids
    show training progress. A conditional module (``num_classes`` or ``c_dim`` > 0) gets one row per
    class with ``nrow`` samples each. A likelihood model whose ``sample`` accepts ``temperature``
    gets one grid per entry of ``temperatures``.

    Every grid is a :func:`~lightning_genaug.images.picture_grid`: small images are upscaled
    (nearest neighbour, at least 64 px per cell) with a thin gap between cells, in the PNG file, W&B
    and TensorBoard alike.

    To watch a run from its first minute (the reference's ``reals.png`` and ``fakes_init.png``):
    ``reals=True`` writes a grid of the first ``num_samples`` training images the module is given (after
    the datamodule's mirroring, before any augmentation of D's inputs), collected from the first
    batches; ``at_fit_start=True`` logs the samples before the first batch trains (``batch_0000000.png``
    for a fresh run). Neither draws from the global random generators, so a run trains the same with
    them or without.

    Outputs, on rank 0: ``<run folder>/samples/batch_0001000.png`` (``..._t0.94.png`` per
    temperature) and ``samples/reals.png`` always, the run folder being
    :func:`~lightning_genaug.runs.run_dir` (the run's own, whatever the logger); ``WandbLogger``: a
    ``wandb.Image`` list under ``key`` (the reals under ``key/reals``) with ``kimg`` in the same row;
    ``TensorBoardLogger``: ``add_image(key, ...)`` (``key/t0.94`` per temperature, ``key/reals``). Rows
    are logged at the run's one step axis, :func:`~lightning_genaug.runs.log_step` (training batches, as
    Lightning's own rows). ``kimg`` is the module's own image counter (``cur_nimg``) when it has one, else
    the Trainer's count of images.

    Args:
        num_samples: images in an unconditional grid (and in the grid of training images).
        nrow: images per row.
        every_n_batches: log after every this many training batches (``None``: only at fit end).
        at_fit_end: also log when fitting ends.
        at_fit_start: also log before the first training batch of a fit.
        reals: write ``reals.png``, a grid of the first ``num_samples`` training images.
        seed: seed of the fixed latents.
        temperatures: sampling temperatures for modules whose ``sample`` accepts ``temperature``.
        key: the logged image's name.
        image_key: the image entry of dict batches (used to count kimg).
    """

    def __init__(
        self,
        num_samples: int = 64,
        nrow: int = 8,
        every_n_batches: int | None = 500,
        at_fit_end: bool = True,
        at_fit_start: bool = False,
        reals: bool = False,
        seed: int = 0,
        temperatures: Sequence[float] | None = None,
        key: str = "samples",
        image_key: str | None = None,
    ) -> None:
        super().__init__()
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.nrow = check_positive_int("nrow", nrow)
        if every_n_batches is not None:
            check_positive_int("every_n_batches", every_n_batches)
        self.every_n_batches = every_n_batches
        self.at_fit_end = at_fit_end
        self.at_fit_start = at_fit_start
        self.reals = reals
        self.seed = seed
        if temperatures is not None:
            temperatures = [
                check_range("temperatures", float(t), 0.0, None, low_inclusive=False) for t in temperatures
            ]
            if not temperatures:
                raise ValueError("`temperatures` must be None or a non-empty list of positive floats, got []")
        self.temperatures = temperatures
        self.key = key
        self.image_key = image_key
        self.last_logged_batch: int | None = None  # the run's batches at the last grid
        self._progress: TrainingProgress | None = None  # the Trainer's count (``setup``)
        self._reals: list[torch.Tensor] | None = None  # training images collected for reals.png (rank 0)
        self._run_dir: Path | None = None  # the run's folder (``on_train_start``, read on every rank)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(key=self.key)

    def state_dict(self) -> dict[str, Any]:
        return {"last_logged_batch": self.last_logged_batch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_logged_batch = state_dict.get("last_logged_batch")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        sample = generator_sample(self, pl_module)
        if self.temperatures is not None and "temperature" not in inspect.signature(sample).parameters:
            raise ValueError(
                f"`temperatures` {self.temperatures} was given but {type(pl_module).__name__}.sample() has "
                "no `temperature` argument; remove `temperatures` or add the argument."
            )
        if stage == "fit":
            self._progress = training_progress(trainer, self.image_key)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._run_dir = Path(run_dir(trainer))  # a collective: every rank reads it
        self._reals = [] if self.reals and trainer.is_global_zero else None
        if self.at_fit_start:
            self.log_grids(trainer, pl_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._reals is None:
            return
        images, _ = split_batch(batch, self.image_key)
        collected = sum(len(chunk) for chunk in self._reals)
        self._reals.append(images[: self.num_samples - collected].detach().cpu())
        if collected + len(self._reals[-1]) >= self.num_samples:
            self._write_reals(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._reals:  # a training set smaller than ``num_samples``: all of it
            self._write_reals(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.every_n_batches is not None and self._require_progress().batches % self.every_n_batches == 0:
            self.log_grids(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._reals:
            self._write_reals(trainer, pl_module)
        if self.at_fit_end and self.last_logged_batch != self._require_progress().batches:
            self.log_grids(trainer, pl_module)

    def _write_reals(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save ``reals.png`` from the collected training images and send it to the loggers (rank 0)."""
        images, self._reals = torch.cat(self._reals or []), None
        grid = picture_grid(check_images(images, "training images"), self.nrow)
        save_png(grid, Path(self._run_dir or trainer.default_root_dir) / "samples" / "reals.png")
        self._send(trainer, pl_module, {None: grid}, f"{self.key}/reals", "training images")

    def _require_progress(self) -> TrainingProgress:
        if self._progress is None:
            raise RuntimeError("SampleGrid has no progress: `setup(stage='fit')` has not run.")
        return self._progress

    def _labels(self, pl_module: nn.Module) -> torch.Tensor | None:
        """``(num_classes * nrow,)``: one grid row per class, or ``None`` for an unconditional module."""
        num_classes = generator_num_classes(pl_module)
        if num_classes == 0:
            return None
        return torch.arange(num_classes, device=pl_module.device).repeat_interleave(self.nrow)

    @torch.no_grad()
    def make_grids(self, pl_module: pl.LightningModule) -> dict[float | None, torch.Tensor]:
        """One grid per temperature (key ``None`` without temperatures), each ``(C, H', W')`` in [0, 1]."""
        labels = self._labels(pl_module)
        count = self.num_samples if labels is None else labels.shape[0]
        was_training = pl_module.training
        pl_module.eval()
        grids = {}
        try:
            for temperature in self.temperatures or [None]:
                generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
                kwargs = {} if temperature is None else {"temperature": temperature}
                images = pl_module.sample(count, labels=labels, generator=generator, **kwargs)
                grids[temperature] = picture_grid(check_images(images, "sample()"), self.nrow)
        finally:
            pl_module.train(was_training)
        return grids

    def log_grids(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sample, save the PNG(s) and send the grid(s) to the loggers (rank 0 does the work)."""
        batches = self._require_progress().batches
        self.last_logged_batch = batches
        run_dir = self._run_dir  # read once, on every rank, in `on_train_start` (a collective under DDP)
        if not trainer.is_global_zero:
            return
        grids = self.make_grids(pl_module)
        for temperature, grid in grids.items():
            suffix = "" if temperature is None else f"_t{temperature:g}"
            save_png(grid, run_dir / "samples" / f"batch_{batches:07d}{suffix}.png")
        self._send(trainer, pl_module, grids, self.key, f"batch {batches}")

    def _send(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        grids: dict[float | None, torch.Tensor],
        key: str,
        caption: str,
    ) -> None:
        """Log ``grids`` (one per temperature) under ``key`` to every W&B and TensorBoard logger."""
        step = log_step(trainer)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                self._log_wandb(logger, pl_module, grids, key, caption, step)
            elif isinstance(logger, TensorBoardLogger):
                for temperature, grid in grids.items():
                    tag = key if temperature is None else f"{key}/t{temperature:g}"
                    logger.experiment.add_image(tag, grid, global_step=step)

    def _log_wandb(
        self,
        logger: WandbLogger,
        pl_module: pl.LightningModule,
        grids: dict[float | None, torch.Tensor],
        key: str,
        caption: str,
        step: int,
    ) -> None:
        import wandb

        captions = [caption + ("" if t is None else f", temperature {t:g}") for t in grids]
        images = [
            wandb.Image(grid_to_uint8(grid), caption=text)
            for grid, text in zip(grids.values(), captions, strict=True)
        ]
        logger.log_metrics({key: images, "kimg": self._require_progress().kimg(pl_module)}, step=step)
