"""The run's progress as every callback of the package reads it: one count of batches and images per Trainer.

Callbacks that act "every N batches", log ``kimg`` or step ``p`` by the images seen do not count for
themselves: :func:`training_progress` gives them the Trainer's one :class:`TrainingProgress` (added to
the Trainer's callbacks the first time a callback asks, in ``setup``), and each keeps only when it last
acted. Images come from the module's own counter (``cur_nimg``: ``StyleGAN2ADA`` and ``ScaleGAN`` count
every image they train on, checkpointed with the weights) where it has one.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from lightning_genaug.data.batch import split_batch


def images_shown(pl_module: pl.LightningModule, own_count: int) -> int:
    """Real images shown so far, all ranks together.

    The module's ``cur_nimg`` buffer when it has one, else ``own_count`` (a module without that counter,
    e.g. a foreign Lightning GAN).

    >>> images_shown(pl.LightningModule(), own_count=320)
    320
    """
    counter = getattr(pl_module, "cur_nimg", None)
    return own_count if counter is None else int(counter)


class TrainingProgress(Callback):
    """Training batches and real images of a fit, all ranks together; checkpointed, so a resume continues.

    Counts at the start of each training batch, so every callback's ``on_train_batch_end`` reads a count
    that includes the batch just trained. Get the Trainer's instance with :func:`training_progress`.

    Args:
        image_key: the image entry of dict batches (to count the images of a module without ``cur_nimg``).

    Example:
        >>> progress = TrainingProgress()
        >>> progress.batches, progress.images(pl.LightningModule())
        (0, 0)
    """

    def __init__(self, image_key: str | None = None) -> None:
        self.image_key = image_key
        self.batches = 0
        self._images = 0  # used only for a module without its own counter

    def images(self, pl_module: pl.LightningModule) -> int:
        """Real images trained on so far, all ranks: the module's ``cur_nimg`` where it has one."""
        return images_shown(pl_module, self._images)

    def kimg(self, pl_module: pl.LightningModule) -> float:
        """:meth:`images` in thousands: the unit every ``kimg`` the package logs is in."""
        return self.images(pl_module) / 1000

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        images, _ = split_batch(batch, self.image_key)
        self.batches += 1
        self._images += images.shape[0] * trainer.world_size

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "images": self._images}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches = int(state_dict.get("batches", 0))
        self._images = int(state_dict.get("images", 0))


def training_progress(trainer: pl.Trainer, image_key: str | None = None) -> TrainingProgress:
    """The Trainer's one :class:`TrainingProgress`, appended to its callbacks on first use.

    Call it from a callback's ``setup``: a callback added there is checkpointed and restored with the
    others (Lightning restores callback states after ``setup``).
    """
    for callback in trainer.callbacks:
        if isinstance(callback, TrainingProgress):
            return callback
    progress = TrainingProgress(image_key)
    trainer.callbacks.append(progress)
    return progress
