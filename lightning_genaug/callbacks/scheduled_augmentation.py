"""``ScheduledAugmentation``: the augmentation strength ``p`` on a fixed ramp instead of the ADA controller.

Some recipes (R3GAN among them) drive the ADA pipe with a *scheduled* ``p``: it rises linearly from 0
to a maximum over a number of training images and stays there, whatever the discriminator does. This
callback is a sibling of :class:`~lightning_genaug.callbacks.ada.AdaptiveAugmentation` over the same
base (:class:`~lightning_genaug.callbacks.augmentation_strength.BaseAugmentationStrength`): the pipe it
drives (the module's ``augment_pipe``, or a pipe installed on a foreign GAN's discriminator), the
``ada/p`` and ``ada/rt`` logs (``r_t`` is still measured, to watch over-fitting) and the checkpointed
state, whose count of the run's images is its position on the ramp, so a resumed run continues the
schedule where it stopped.
"""

from __future__ import annotations

import lightning.pytorch as pl
from torch import nn

from lightning_genaug._checks import check_range
from lightning_genaug.callbacks.augmentation_strength import BaseAugmentationStrength, StrengthReading


def scheduled_p(images_seen: float, *, ramp_kimg: float, max_p: float) -> float:
    """The strength after ``images_seen`` training images on a linear ramp.

    Formula::

        p = max_p * min(1, images_seen / (1000 * ramp_kimg))

    Args:
        images_seen: training images since the start of the run, all ranks together.
        ramp_kimg: thousands of images over which ``p`` rises from 0 to ``max_p``.
        max_p: the strength at the end of the ramp and after it.

    Returns:
        ``p`` in ``[0, max_p]``.

    Example:
        >>> scheduled_p(0, ramp_kimg=10, max_p=0.5), scheduled_p(4000, ramp_kimg=10, max_p=0.5)
        (0.0, 0.2)
        >>> scheduled_p(25_000, ramp_kimg=10, max_p=0.5)
        0.5
    """
    return max_p * min(1.0, images_seen / (1000.0 * ramp_kimg))


class ScheduledAugmentation(BaseAugmentationStrength):
    """Ramp the augmentation strength ``p`` of a GAN linearly from 0 to ``max_p`` over ``ramp_kimg``.

    Use it in place of :class:`~lightning_genaug.callbacks.ada.AdaptiveAugmentation` (never both):
    every ``every_n_batches`` training batches ``p`` is set to :func:`scheduled_p` of the training
    images seen so far (all ranks together). The ramp starts at ``p = 0`` whatever ``p`` the pipe was
    built with (the schedule is ``p``'s source); a resumed run continues from its checkpointed position
    on the ramp. The native and foreign paths, the logged ``ada/p`` and ``ada/rt`` (``r_t`` is read but
    does not steer ``p``; on the foreign path this costs one extra no-grad D forward every
    ``every_n_batches`` batches) and the checkpointing are the base's.

    Args:
        ramp_kimg: thousands of training images over which ``p`` rises from 0 to ``max_p``, > 0.
        max_p: the strength at the end of the ramp, in (0, 1].
        every_n_batches, preset, pipe, discriminator_attr, image_key: as for
            :class:`~lightning_genaug.callbacks.augmentation_strength.BaseAugmentationStrength`.

    Example:
        >>> callback = ScheduledAugmentation(ramp_kimg=500, max_p=0.6)
        >>> callback.ramp_kimg, callback.max_p, callback.images_total
        (500, 0.6, 0)
    """

    def __init__(
        self,
        ramp_kimg: float,
        max_p: float,
        every_n_batches: int = 4,
        preset: str = "bgc",
        pipe: nn.Module | None = None,
        discriminator_attr: str | None = None,
        image_key: str | None = None,
    ) -> None:
        super().__init__(
            every_n_batches=every_n_batches,
            preset=preset,
            pipe=pipe,
            discriminator_attr=discriminator_attr,
            image_key=image_key,
        )
        self.ramp_kimg = check_range("ramp_kimg", ramp_kimg, 0.0, None, low_inclusive=False)
        self.max_p = check_range("max_p", max_p, 0.0, 1.0, low_inclusive=False)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put ``p`` on the ramp at the run's position (0 images on a fresh run)."""
        super().on_train_start(trainer, pl_module)
        self._write_p(scheduled_p(self.images_total, ramp_kimg=self.ramp_kimg, max_p=self.max_p))

    def next_strength(self, p: float, reading: StrengthReading) -> float:
        """The ramp at the images seen so far; the reading is only logged."""
        return scheduled_p(reading.images_total, ramp_kimg=self.ramp_kimg, max_p=self.max_p)
