"""A run's folder and its step axis, decided once for every file and every logged row of a run.

**The folder.** :func:`run_dir` is where ``config.yaml``, ``samples/``, ``checkpoints/`` and
``predictions/`` of a run go, and where a file logger (CSV, TensorBoard) writes its metrics: the first
logger's ``<save_dir>/<name>/<version>``, the folder Lightning's ``ModelCheckpoint`` writes its
``checkpoints/`` in (``<default_root_dir>/lightning_logs/version_N`` for a ``CSVLogger``,
``<save_dir>/<project>/<run id>`` for a ``WandbLogger``); ``default_root_dir`` without a logger.
Lightning's own ``trainer.log_dir`` is a logger's ``save_dir`` for a ``WandbLogger``, a folder every run
of a project shares: nothing of ours uses it.

**The step axis.** Every row the package logs is logged at :func:`log_step`, Lightning's count of
training batches, the step of Lightning's own training rows: the loss of the k-th batch, a grid and a
metric computed right after it share step ``k - 1``; a row written after the last of N batches (at the
end of fit) has step N. ``trainer.global_step`` is not used: with manual optimisation (the GAN modules)
it counts optimiser steps, several a batch.

**A resumed run.** :func:`version_of_run_folder` finds the logger version a checkpoint belongs to, so that
``fit --ckpt_path <run folder>/checkpoints/last.ckpt`` continues that run's folder and logs
(:class:`ContinuingCSVLogger` appends to its ``metrics.csv`` where Lightning's ``CSVLogger`` deletes it).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_info

__all__ = [
    "ContinuingCSVLogger",
    "link_wandb_files",
    "local_run_dir",
    "log_step",
    "logger_run_dir",
    "logger_save_dir",
    "run_dir",
    "version_of_run_folder",
    "wandb_config",
]

CHECKPOINTS = "checkpoints"
"""The folder of a run's checkpoints, inside :func:`run_dir` (Lightning's ``ModelCheckpoint`` name)."""


def logger_save_dir(logger: Logger, default_root_dir: str | os.PathLike) -> str:
    """``logger.save_dir``, or ``default_root_dir`` for a logger that leaves it to the Trainer."""
    return os.fspath(logger.save_dir if logger.save_dir is not None else default_root_dir)


def logger_run_dir(logger: Logger, default_root_dir: str) -> str:
    """``<save_dir>/<name>/<version>`` of ``logger`` (its ``save_dir`` defaulting to ``default_root_dir``).

    The rule of Lightning's ``ModelCheckpoint``: an integer version is written ``version_<n>``. Joined as
    text, so a URL (``s3://bucket/runs``) stays one.

    >>> from lightning.pytorch.loggers import CSVLogger
    >>> logger_run_dir(CSVLogger("runs/ada", version=3), "unused")
    'runs/ada/lightning_logs/version_3'
    """
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return os.path.join(logger_save_dir(logger, default_root_dir), str(logger.name or ""), version)


def local_run_dir(trainer: pl.Trainer) -> str:
    """The run's folder as this rank sees it: the first logger's, else ``default_root_dir``."""
    if trainer.loggers:
        return logger_run_dir(trainer.loggers[0], trainer.default_root_dir)
    return os.fspath(trainer.default_root_dir)


def run_dir(trainer: pl.Trainer) -> str:
    """The run's folder (see the module docstring), rank 0's answer on every rank.

    A collective under DDP (rank 0's :func:`local_run_dir` is broadcast, as ``trainer.log_dir`` does):
    call it on every rank, from a hook every rank runs (``setup``, ``on_train_start``), never inside
    ``if is_global_zero``.
    """
    return trainer.strategy.broadcast(local_run_dir(trainer))


def log_step(trainer: pl.Trainer) -> int:
    """The step every row of the run is logged at: Lightning's count of training batches.

    The value Lightning gives its own training and validation rows (``trainer/global_step`` on W&B, the
    ``step`` column of ``metrics.csv``), so a row logged from a callback's ``on_train_batch_end`` lands on
    the batch's own step. Checkpointed by Lightning, so a resumed run continues the axis.
    """
    return int(trainer.fit_loop.epoch_loop._batches_that_stepped)


def version_of_run_folder(ckpt_path: str | os.PathLike | None, save_dir: str, name: str) -> str | None:
    """The version folder of ``ckpt_path`` when it is ``<save_dir>/<name>/<version>/checkpoints/<file>``.

    ``None`` for any other place (a copied checkpoint, a ``dirpath`` of one's own, ``"last"``).

    >>> version_of_run_folder("runs/ada/lightning_logs/version_0/checkpoints/last.ckpt", "runs/ada",
    ...                       "lightning_logs")
    'version_0'
    >>> version_of_run_folder("elsewhere/last.ckpt", "runs/ada", "lightning_logs") is None
    True
    """
    if ckpt_path is None or "://" in os.fspath(ckpt_path) or "://" in os.fspath(save_dir):
        return None
    path = Path(ckpt_path).absolute()
    if path.parent.name != CHECKPOINTS or len(path.parents) < 3:
        return None
    version_dir = path.parents[1]
    if version_dir.parent != (Path(save_dir) / name).absolute():
        return None
    return version_dir.name


def wandb_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's parsed config as W&B's config panel shows it: every list of classes keyed by class name.

    ``trainer.callbacks`` (and a list of loggers) become ``{"AdaptiveAugmentation": {...}, ...}``, so a
    callback's argument has a name W&B can filter, group and plot by
    (``trainer.callbacks.AdaptiveAugmentation.init_args.target``); a second instance of a class gets
    ``#2``. Everything else is kept as it is.

    >>> wandb_config({"data": {"init_args": {"batch_size": 32}}, "trainer": {"callbacks": [
    ...     {"class_path": "lightning_genaug.callbacks.AdaptiveAugmentation", "init_args": {"target": 0.6}},
    ...     {"class_path": "lightning_genaug.callbacks.SampleGrid"},
    ...     {"class_path": "lightning_genaug.callbacks.SampleGrid"}]}})["trainer"]["callbacks"].keys()
    dict_keys(['AdaptiveAugmentation', 'SampleGrid', 'SampleGrid#2'])
    """
    converted: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            converted[key] = wandb_config(value)
        elif isinstance(value, list) and value and all(_is_class_entry(item) for item in value):
            by_name: dict[str, Any] = {}
            for item in value:
                name = str(item["class_path"]).rsplit(".", 1)[-1]
                count = sum(1 for key_ in by_name if key_ == name or key_.startswith(f"{name}#"))
                by_name[name if count == 0 else f"{name}#{count + 1}"] = wandb_config(item)
            converted[key] = by_name
        else:
            converted[key] = value
    return converted


def _is_class_entry(value: Any) -> bool:
    return isinstance(value, Mapping) and "class_path" in value


def link_wandb_files(logger: Logger, folder: str | os.PathLike) -> Path | None:
    """Link W&B's own files of this run (history, media, config) into ``<folder>/wandb/`` (rank 0).

    W&B keeps a run's files in ``<save_dir>/wandb/<run-timestamp-id>/``, beside the run folder; a link per
    W&B run (a resumed run gets a second one) makes the run folder hold every file of the run. Returns
    the link, or ``None`` where W&B has no files (``WANDB_MODE=disabled``) or the file system has no links.
    """
    files = getattr(logger.experiment, "dir", None)
    if not files or not Path(files).parent.is_dir():
        return None
    target = Path(files).parent.absolute()
    link = Path(folder) / "wandb" / target.name
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)
    except OSError as error:
        rank_zero_info(f"W&B's files of this run are in {target} (no link in the run folder: {error}).")
        return None
    return link


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, appending to a ``metrics.csv`` already there instead of deleting it.

    With ``replace_resumed_steps``, the first row it logs at step ``k`` drops the file's rows from step
    ``k`` on: the rows a crashed run wrote after its last checkpoint, which the resumed run logs again.
    """

    def __init__(self, log_dir: str, replace_resumed_steps: bool = False) -> None:
        self._replace_resumed_steps = replace_resumed_steps
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        exists = self._fs.isfile(self.metrics_file_path)
        self._continuing = self._replace_resumed_steps and exists
        if not exists:
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        # Rows are appended in the file's column order; a new key makes the writer rewrite the header.
        self.metrics_keys = list(header)

    def log_metrics(self, metrics_dict: dict[str, float], step: int | None = None) -> None:
        if self._continuing and step is not None:
            self._continuing = False
            self._drop_rows_from(step)
        super().log_metrics(metrics_dict, step)

    def _drop_rows_from(self, step: int) -> None:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            rows = list(csv.DictReader(file))
        kept = [row for row in rows if not row.get("step") or float(row["step"]) < step]
        if len(kept) == len(rows):
            return
        partial = self.metrics_file_path + ".partial"
        with self._fs.open(partial, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)
        self._fs.mv(partial, self.metrics_file_path)
        rank_zero_info(
            f"{self.metrics_file_path}: dropped {len(rows) - len(kept)} rows that the interrupted run logged "
            f"from step {step} on, after its last checkpoint; this run logs those steps again."
        )


class ContinuingCSVLogger(CSVLogger):
    """Lightning's ``CSVLogger`` that continues the ``metrics.csv`` of its version folder.

    Lightning's deletes the file of a version folder it is given again (with a warning), so a resumed run
    that keeps its version would lose the rows of its first part; this one appends to them. For a new
    version folder it is Lightning's logger; ``lightning-genaug fit`` uses it for every CSV log.

    ``replace_resumed_steps`` (set by ``fit`` when it continues a run from one of its checkpoints): the
    rows a crashed run logged after its last checkpoint are dropped when the resumed run logs its first
    row (every step from that row's on), so no step appears twice. Off, rows are only appended (a
    ``test`` or ``validate`` of an earlier checkpoint logs at steps the file already has).

    Example:
        >>> logger = ContinuingCSVLogger("runs/ada", version="version_0")
        >>> logger.log_dir
        'runs/ada/lightning_logs/version_0'
    """

    replace_resumed_steps: bool = False

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _ContinuingWriter(self.log_dir, self.replace_resumed_steps)
        return self._experiment
