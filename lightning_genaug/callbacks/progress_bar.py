"""``KimgProgressBar``: Lightning's progress bar with the run's pace in ``s/kimg`` and the time left.

Lightning's bar counts batches of one epoch, and its estimate of the time left covers that epoch. A GAN
run is measured in thousands of real images (the reference's ``--kimg``) and usually ends on
``max_kimg`` or ``max_epochs``; this bar adds, beside the logged metrics:

* ``s/kimg``: wall seconds per thousand training images over the last ``window`` batches;
* ``left``: the time to the end of the run at that pace, when the run's length is known: the module's
  ``max_kimg`` (``StyleGAN2ADA``, ``ScaleGAN``), else ``max_epochs`` times the batches of an epoch.

``lightning-genaug fit`` uses it unless the config names another progress bar or turns the bar off.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar

from lightning_genaug._checks import check_positive_int
from lightning_genaug.callbacks._progress import TrainingProgress, training_progress


def format_duration(seconds: float) -> str:
    """``seconds`` as ``H:MM:SS`` (hours unbounded).

    >>> format_duration(3725.4), format_duration(59.6)
    ('1:02:05', '0:01:00')
    """
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class KimgProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar plus ``s/kimg`` and ``left`` (the whole run's remaining time, when known).

    Args:
        refresh_rate: update the bar every this many batches (Lightning's argument).
        leave: keep each epoch's bar on screen (Lightning's argument).
        window: batches over which the pace is measured.

    Example:
        >>> bar = KimgProgressBar(window=20)
        >>> bar.seconds_per_kimg is None  # nothing measured yet
        True
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False, window: int = 50) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.window = check_positive_int("window", window)
        self._marks: deque[tuple[float, int, int]] = deque(maxlen=self.window + 1)  # (time, images, batches)
        self._progress: TrainingProgress | None = None  # the Trainer's count (``setup``)

    @property
    def seconds_per_kimg(self) -> float | None:
        """Wall seconds per 1,000 training images over the last ``window`` batches (``None`` before two)."""
        if len(self._marks) < 2:
            return None
        (start, start_images, _), (end, end_images, _) = self._marks[0], self._marks[-1]
        return (end - start) / (end_images - start_images) * 1000 if end_images > start_images else None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._progress = training_progress(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._marks.clear()
        self._mark(pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._mark(pl_module)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _mark(self, pl_module: pl.LightningModule) -> None:
        progress = self._progress
        if progress is not None:
            self._marks.append((time.perf_counter(), progress.images(pl_module), progress.batches))

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, int | str | float]:
        items = super().get_metrics(trainer, pl_module)
        pace = self.seconds_per_kimg
        if pace is not None:
            items["s/kimg"] = f"{pace:.1f}"
            left = self._seconds_left(trainer, pl_module, pace)
            if left is not None:
                items["left"] = format_duration(left)
        return items

    def _seconds_left(self, trainer: pl.Trainer, pl_module: pl.LightningModule, pace: float) -> float | None:
        """Time to the end of the run at ``pace``: to ``max_kimg``, else to the end of ``max_epochs``."""
        max_kimg = getattr(pl_module, "hparams", {}).get("max_kimg")
        if max_kimg is not None:
            images_left = max_kimg * 1000 - self._marks[-1][1]
            return max(images_left, 0) / 1000 * pace
        per_epoch = trainer.num_training_batches
        if trainer.max_epochs is None or trainer.max_epochs < 0 or not math.isfinite(per_epoch):
            return None
        (start, _, start_batches), (end, _, end_batches) = self._marks[0], self._marks[-1]
        if end_batches <= start_batches:
            return None
        done = trainer.current_epoch * per_epoch + trainer.fit_loop.epoch_loop.batch_idx + 1
        batches_left = max(trainer.max_epochs * per_epoch - done, 0)
        return batches_left * (end - start) / (end_batches - start_batches)
