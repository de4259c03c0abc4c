"""``KimgCheckpoint``: checkpoints every N kimg (or N batches), and ``last.ckpt`` holding the end of the run;
``BestMetricCheckpoint``: the best value so far of a metric computed during training (FID), at the batch
it was computed.

Lightning's ``ModelCheckpoint`` counts optimizer steps (two or three per batch in a GAN module, so
``every_n_train_steps=5`` fires at irregular batches) or epochs, and its ``last.ckpt`` is only the latest
checkpoint it happened to write: a run stopped by ``max_steps`` between two of them loses its end, and
an epoch-end checkpoint of an epoch that ``max_steps`` cut short does not resume exactly. This callback
counts what a GAN user thinks in, the real images trained on (the reference's ``--snap`` in kimg) or the
training batches, read from the Trainer's one :class:`~lightning_genaug.callbacks.TrainingProgress`, and
writes the final state of every ``fit`` at its last training batch, where a resume continues exactly.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.loops.utilities import _is_max_limit_reached
from lightning.pytorch.utilities import rank_zero_warn

from lightning_genaug._checks import check_choice, check_positive_int, check_range
from lightning_genaug.callbacks._progress import TrainingProgress, training_progress
from lightning_genaug.runs import CHECKPOINTS, local_run_dir

__all__ = [
    "BestMetricCheckpoint",
    "KimgCheckpoint",
    "checkpoint_name",
    "crossed",
    "run_ends_after_this_batch",
    "write_checkpoint",
]

log = logging.getLogger(__name__)

LAST = "last.ckpt"


def crossed(now: int, before: int, every: int) -> bool:
    """Whether counting from ``before`` to ``now`` passed a multiple of ``every``.

    A batch adds several images, so a cadence in images fires on the batch that reaches or passes each
    multiple, whatever the batch size.

    >>> crossed(now=1024, before=992, every=1000), crossed(now=1056, before=1024, every=1000)
    (True, False)
    """
    return now // every > before // every


def write_checkpoint(trainer: pl.Trainer, path: str) -> None:
    """``trainer.save_checkpoint(path)`` under a temporary name, renamed on rank 0: never half a file there.

    Every rank takes part (the strategy gathers what it must); the full state (optimisers, callbacks,
    loops) is asked for explicitly, so Lightning does not log its "weights_only was not set" at every save.
    """
    trainer.save_checkpoint(path + ".partial", weights_only=False)
    if trainer.is_global_zero:
        get_filesystem(path).mv(path + ".partial", path)


def checkpoint_name(images: int) -> str:
    """The file name of a periodic checkpoint: the kimg trained, to the image, sortable by name.

    >>> checkpoint_name(25_088)
    'kimg000025.088.ckpt'
    """
    return f"kimg{images // 1000:06d}.{images % 1000:03d}.ckpt"


def run_ends_after_this_batch(trainer: pl.Trainer) -> bool:
    """Whether ``fit`` ends after the training batch whose ``on_train_batch_end`` is running.

    True when the batch reached ``max_steps``, ended the last epoch of ``max_epochs`` (or of
    ``limit_train_batches``), or when something set ``trainer.should_stop`` during the batch (the
    module's ``max_kimg``) and ``min_epochs`` / ``min_steps`` allow stopping. A stop decided later (an
    ``EarlyStopping`` in validation) is not known yet.
    """
    loop = trainer.fit_loop
    if _is_max_limit_reached(trainer.global_step, trainer.max_steps):
        return True
    last_epoch = loop.max_epochs is not None and _is_max_limit_reached(
        loop.epoch_progress.current.processed + 1, loop.max_epochs
    )
    if last_epoch and loop.epoch_loop._num_ready_batches_reached():
        return True
    return bool(trainer.should_stop and loop._can_stop_early)


class KimgCheckpoint(Checkpoint):
    """Checkpoints every ``every_n_kimg`` thousand images (or ``every_n_batches`` batches) and at fit's end.

    A periodic checkpoint is named by the images trained so far, ``kimg000025.088.ckpt`` (25,088 images),
    and copied to ``last.ckpt``; the last training batch of every ``fit`` writes ``last.ckpt`` (whatever
    the cadence, and whether ``max_steps``, ``max_epochs`` or the module's ``max_kimg`` ended it), so the
    end of a run is always on disk and ``fit --ckpt_path .../last.ckpt`` with a larger budget continues
    exactly as one longer run would have. Each file is written under a temporary name and renamed, so a
    crash never leaves a half-written checkpoint under a checkpoint's name.

    Checkpoints are written after the batch's other callbacks have acted (Lightning runs checkpoint
    callbacks last), so they hold the batch's ``p`` and counters. A stop decided after the last batch
    (an ``EarlyStopping`` in validation) is written at ``on_train_end``; Lightning then resumes at the
    next epoch.

    Outputs, on rank 0: ``<dirpath>/kimg*.ckpt`` and ``<dirpath>/last.ckpt``. ``dirpath`` defaults to
    ``checkpoints/`` in the run's folder (:func:`~lightning_genaug.runs.run_dir`), where ``ModelCheckpoint``
    writes: ``<save_dir>/<name>/<version>/checkpoints`` of the first logger
    (``runs/ada/lightning_logs/version_0/checkpoints`` for ``lightning-genaug fit``), else
    ``<default_root_dir>/checkpoints``.

    Args:
        every_n_kimg: write a checkpoint each time the run passes a multiple of this many thousand real
            images (all ranks together; the module's ``cur_nimg`` where it has one).
        every_n_batches: write one every this many training batches instead.
        dirpath: the checkpoint folder (see above for the default).

    Give at most one of ``every_n_kimg`` and ``every_n_batches``; with neither, only ``last.ckpt`` is
    written, at the end of the run.

    Example:
        >>> checkpoints = KimgCheckpoint(every_n_kimg=5)
        >>> checkpoints.state_key
        "KimgCheckpoint{'every_n_kimg': 5, 'every_n_batches': None}"
    """

    def __init__(
        self,
        every_n_kimg: float | None = None,
        every_n_batches: int | None = None,
        dirpath: str | Path | None = None,
    ) -> None:
        super().__init__()
        if every_n_kimg is not None and every_n_batches is not None:
            raise ValueError(
                f"Give `every_n_kimg` or `every_n_batches`, not both (got {every_n_kimg!r} and "
                f"{every_n_batches!r}); remove one."
            )
        if every_n_kimg is not None:
            check_range("every_n_kimg", every_n_kimg, 0.0, low_inclusive=False)
            if round(every_n_kimg * 1000) < 1:
                raise ValueError(f"`every_n_kimg` must be at least 0.001 (one image), got {every_n_kimg!r}.")
        if every_n_batches is not None:
            check_positive_int("every_n_batches", every_n_batches)
        self.every_n_kimg = every_n_kimg
        self.every_n_batches = every_n_batches
        self.dirpath = None if dirpath is None else str(dirpath)
        self.last_saved_batch: int | None = None  # the run's batches and images at the last checkpoint
        self.last_saved_images: int | None = None
        self._progress: TrainingProgress | None = None  # the Trainer's count (``setup``)
        self._dir: str | None = None  # the resolved folder (``setup``)

    @property
    def state_key(self) -> str:
        return self._generate_state_key(every_n_kimg=self.every_n_kimg, every_n_batches=self.every_n_batches)

    def state_dict(self) -> dict[str, Any]:
        return {"last_saved_batch": self.last_saved_batch, "last_saved_images": self.last_saved_images}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_saved_batch = state_dict.get("last_saved_batch")
        self.last_saved_images = state_dict.get("last_saved_images")

    @property
    def checkpoint_dir(self) -> Path:
        """The folder the checkpoints go to (resolved in ``setup``)."""
        return Path(self._require_dir())

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._progress = training_progress(trainer)
        self._dir = _checkpoint_dir(trainer, self.dirpath)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """A fresh run (or this callback added on resume) counts its cadence from where the run stands."""
        if self.last_saved_batch is None or self.last_saved_images is None:
            progress = self._require_progress()
            self.last_saved_batch, self.last_saved_images = progress.batches, progress.images(pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.fast_dev_run:
            return
        progress = self._require_progress()
        batches, images = progress.batches, progress.images(pl_module)
        if self.every_n_kimg is not None:
            due = crossed(images, self.last_saved_images or 0, round(self.every_n_kimg * 1000))
        elif self.every_n_batches is not None:
            due = crossed(batches, self.last_saved_batch or 0, self.every_n_batches)
        else:
            due = False
        if due:
            self._save(trainer, checkpoint_name(images), batches, images)
        elif run_ends_after_this_batch(trainer):
            self._save(trainer, None, batches, images)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The end of a run stopped after its last batch (e.g. by validation) still goes to ``last.ckpt``."""
        progress = self._require_progress()
        if trainer.fast_dev_run or self.last_saved_batch == progress.batches:
            return
        log.info(
            "Training stopped after batch %d, outside a training batch (e.g. by validation): last.ckpt "
            "holds it; Lightning resumes from such a checkpoint at the next epoch.",
            progress.batches,
        )
        self._save(trainer, None, progress.batches, progress.images(pl_module))

    def _save(self, trainer: pl.Trainer, name: str | None, batches: int, images: int) -> None:
        """Write ``name`` (if any) and ``last.ckpt``, each under a temporary name first, then renamed."""
        self.last_saved_batch, self.last_saved_images = batches, images  # saved in the checkpoint itself
        folder = self._require_dir().rstrip("/")
        fs = get_filesystem(folder)  # a local folder or a URL (s3://...): joined as text, not as a Path
        first, last = f"{folder}/{name or LAST}", f"{folder}/{LAST}"
        write_checkpoint(trainer, first)
        if trainer.is_global_zero and name is not None:
            fs.copy(first, last + ".partial")
            fs.mv(last + ".partial", last)
        trainer.strategy.barrier("KimgCheckpoint")

    def _require_dir(self) -> str:
        if self._dir is None:
            raise RuntimeError("KimgCheckpoint has no folder yet: `setup(stage='fit')` has not run.")
        return self._dir

    def _require_progress(self) -> TrainingProgress:
        if self._progress is None:
            raise RuntimeError("KimgCheckpoint has no progress: `setup(stage='fit')` has not run.")
        return self._progress


def _checkpoint_dir(trainer: pl.Trainer, dirpath: str | None) -> str:
    """``dirpath``, or ``checkpoints/`` in the run's folder (where ``ModelCheckpoint`` writes without one).

    Rank 0's answer on every rank: :func:`~lightning_genaug.runs.local_run_dir` is each rank's own.
    """
    return trainer.strategy.broadcast(dirpath or os.path.join(local_run_dir(trainer), CHECKPOINTS))


class BestMetricCheckpoint(Checkpoint):
    """The training state at the best value so far of a metric that a callback computes every N batches.

    ``GenerativeMetrics`` puts FID (KID, ...) in ``trainer.callback_metrics`` at the batch it computes
    it. Lightning's ``ModelCheckpoint(monitor="metrics/fid")`` saves at epoch ends (or every N optimizer
    steps), so its best checkpoint holds weights trained for up to an epoch past the measured ones, and
    every save point before the first value warns that the key is missing, which a user cannot act on.
    This callback saves at the batch a new value appears (checkpoint callbacks run after the others, so
    after the metric's computation, and at ``on_train_end`` after a fit-end evaluation), when it is
    better than every earlier one, to one file written under a temporary name and renamed. A key that
    never got a value in a whole ``fit`` is said once at its end, with the keys that did.

    Output, on rank 0: ``<dirpath>/<filename>``; ``dirpath`` defaults to ``checkpoints/`` in the run's
    folder, as for :class:`KimgCheckpoint`.

    Args:
        monitor: key in ``trainer.callback_metrics`` (``metrics/fid``, ``metrics/kid``, ...).
        mode: ``"min"`` (FID, KID) or ``"max"`` (IS, precision, recall).
        filename: the file's name; default ``best-<monitor with / as ->.ckpt``.
        dirpath: the folder (see above).

    Example:
        >>> BestMetricCheckpoint("metrics/fid").filename
        'best-metrics-fid.ckpt'
    """

    def __init__(
        self, monitor: str, mode: str = "min", filename: str | None = None, dirpath: str | Path | None = None
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"`monitor` must name a metric (e.g. 'metrics/fid'), got {monitor!r}.")
        self.monitor = monitor
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.filename = filename or f"best-{monitor.replace('/', '-')}.ckpt"
        self.dirpath = None if dirpath is None else str(dirpath)
        self.best_score: float | None = None  # the value of the saved checkpoint
        self.best_model_path: str | None = None
        self._last_value: float | None = None  # the latest value considered (a value stays in the dict)
        self._dir: str | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_model_path": self.best_model_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_model_path = state_dict.get("best_model_path")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._dir = _checkpoint_dir(trainer, self.dirpath)
            self._last_value = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not trainer.fast_dev_run:
            self._save_if_better(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        self._save_if_better(trainer)
        if self._last_value is None:
            rank_zero_warn(
                f"BestMetricCheckpoint wrote nothing: `{self.monitor}` got no value in this fit (keys that "
                f"did: {sorted(trainer.callback_metrics)}). Check the name, and that the callback computing "
                "it runs within the run (`GenerativeMetrics(every_n_batches=...)` below the run's length)."
            )

    def _save_if_better(self, trainer: pl.Trainer) -> None:
        logged = trainer.callback_metrics.get(self.monitor)
        if logged is None or float(logged) == self._last_value:
            return  # no value yet, or the one already considered
        value = self._last_value = float(logged)
        best = self.best_score
        not_better = best is not None and (value >= best if self.mode == "min" else value <= best)
        if math.isnan(value) or not_better:
            return
        if self._dir is None:
            raise RuntimeError("BestMetricCheckpoint has no folder yet: `setup(stage='fit')` has not run.")
        self.best_score = value
        self.best_model_path = f"{self._dir.rstrip('/')}/{self.filename}"
        write_checkpoint(trainer, self.best_model_path)
        trainer.strategy.barrier("BestMetricCheckpoint")
