"""``ScheduledAugmentation``: the augmentation strength ``p`` on a fixed ramp instead of the ADA controller.

Some recipes (R3GAN among them) drive the ADA pipe with a *scheduled* ``p``: it rises linearly from 0
to a maximum over a number of training images and stays there, whatever the discriminator does. This
callback is a sibling of :class:`~lightning_genaug.callbacks.ada.AdaptiveAugmentation` and shares all
of it but the rule that moves ``p``: the pipe it drives (the module's ``augment_pipe``, or a pipe
installed on a foreign GAN's discriminator), the ``ada/p`` and ``ada/rt`` logs (``r_t`` is still
measured, to watch over-fitting) and the checkpointed state, to which it adds its position on the
ramp, so a resumed run continues the schedule where it stopped.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from torch import nn

from lightning_genaug._checks import check_range
from lightning_genaug.callbacks.ada import AdaptiveAugmentation, measured_rt


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


class ScheduledAugmentation(AdaptiveAugmentation):
    """Ramp the augmentation strength ``p`` of a GAN linearly from 0 to ``max_p`` over ``ramp_kimg``.

    Use it in place of :class:`~lightning_genaug.callbacks.ada.AdaptiveAugmentation` (never both):
    every ``every_n_batches`` training batches ``p`` is set to :func:`scheduled_p` of the training
    images seen so far (all ranks together). A fresh run starts at ``p = 0`` (whatever ``p`` the pipe
    was built with); a resumed run continues from its checkpointed position on the ramp. Everything
    else is ``AdaptiveAugmentation``'s: the native path (the module's ``augment_pipe``) and the
    zero-code-change foreign path, the logged
    ``ada/p`` and ``ada/rt`` (``r_t`` is measured but does not steer ``p``; on the foreign path this
    costs the same extra no-grad D forward every ``every_n_batches`` batches) and the checkpointing.

    Args:
        ramp_kimg: thousands of training images over which ``p`` rises from 0 to ``max_p``, > 0.
        max_p: the strength at the end of the ramp, in (0, 1].
        every_n_batches: set ``p`` every this many training batches.
        preset: preset of the ``AugmentPipe`` created for a module without ``augment_pipe``.
        pipe: a ready pipe implementing the ADA protocol to install on a module without ``augment_pipe``.
        discriminator_attr: attribute of the module holding D (foreign path).
        image_key: key of the images in dict batches, and keyword of D's image argument when D is
            called with keywords only.

    Example:
        >>> callback = ScheduledAugmentation(ramp_kimg=500, max_p=0.6)
        >>> callback.ramp_kimg, callback.max_p, callback.images_seen
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
            max_p=max_p,
            preset=preset,
            pipe=pipe,
            discriminator_attr=discriminator_attr,
            image_key=image_key,
        )
        self.ramp_kimg = check_range("ramp_kimg", ramp_kimg, 0.0, None, low_inclusive=False)
        self.images_seen = 0

    def state_dict(self) -> dict[str, Any]:
        """``AdaptiveAugmentation``'s state plus the position on the ramp (``images_seen``)."""
        return {**super().state_dict(), "images_seen": self.images_seen}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.images_seen = int(state_dict.get("images_seen", 0))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put ``p`` on the ramp: 0 on a fresh run; a resumed run keeps the checkpoint's ``p``."""
        super().on_train_start(trainer, pl_module)
        if trainer.ckpt_path is None:
            self._write_p(scheduled_p(self.images_seen, ramp_kimg=self.ramp_kimg, max_p=self.max_p))

    def _next_p(self, p: float, sign_sum: float, count: float, images_seen: float) -> tuple[float, float]:
        """Advance the ramp by the interval's images; ``r_t`` is measured for the logs only."""
        self.images_seen += int(images_seen)
        new_p = scheduled_p(self.images_seen, ramp_kimg=self.ramp_kimg, max_p=self.max_p)
        return new_p, measured_rt(sign_sum, count)
