"""``AdaptiveAugmentation``: the ADA strength controller, for our modules and for any Lightning GAN.

Adaptive discriminator augmentation (Karras et al. 2020, Sec. 3) augments everything the
discriminator D sees with probability ``p`` per transform and adapts ``p`` so that an over-fitting
heuristic, ``r_t = E[sign(D(real))]``, stays at a target. This file holds the decision: the pure
:func:`next_p` and the callback that applies it to one of the readings of :data:`HEURISTICS`. Finding
the pipe (native or foreign path), reading D, the rank reduction, logging and checkpointing belong to
:class:`~lightning_genaug.callbacks.augmentation_strength.BaseAugmentationStrength`, shared with the
scheduled and fixed siblings.
"""

from __future__ import annotations

import math

from torch import nn

from lightning_genaug._checks import check_choice, check_range
from lightning_genaug.callbacks.augmentation_strength import BaseAugmentationStrength, StrengthReading


def next_p(
    p: float,
    reading: float,
    images_seen: float,
    *,
    target: float,
    speed_kimg: float,
    max_p: float,
) -> float:
    """One ADA controller step: the strength after an interval whose over-fitting reading was ``reading``.

    Formula::

        p' = clamp(p + sign(reading - target) * images_seen / (1000 * speed_kimg), 0, max_p)

    ``reading`` is the interval's ``E[sign(D(x_real))]`` (the paper's ``r_t``, or another heuristic of
    :data:`HEURISTICS`). ``images_seen`` is the number of training images since the previous step,
    summed over ranks (``batch_size * every_n_batches * world_size`` for full batches), so ``p`` can
    travel from 0 to 1 in ``speed_kimg`` thousand images whatever the batch size, interval or number of
    devices. With no reading (NaN) ``p`` does not move.

    Args:
        p: current strength.
        reading: the heuristic's value over the interval (all ranks), NaN without observations.
        images_seen: training images since the previous step (all ranks).
        target: the value of the reading the controller aims at.
        speed_kimg: thousands of images for ``p`` to move by 1.
        max_p: upper clamp of ``p``.

    Returns:
        ``p'``.

    Example:
        >>> next_p(0.0, 0.625, images_seen=256, target=0.6, speed_kimg=500, max_p=1.0)
        0.000512
        >>> next_p(0.0, -0.25, images_seen=256, target=0.6, speed_kimg=500, max_p=1.0)
        0.0
    """
    if math.isnan(reading):
        return p
    direction = (reading > target) - (reading < target)
    step = images_seen / (speed_kimg * 1000.0)
    stepped = p + direction * step
    # p lives in a float32 buffer: snap the rounding residue of "up then down" back to exactly 0, so
    # pipes keep their p == 0 fast path.
    if stepped < 1e-4 * step:
        stepped = 0.0
    return min(max(stepped, 0.0), max_p)


HEURISTICS = ("rt", "rt_clean", "rv", "gap")
"""The readings of :class:`~lightning_genaug.callbacks.augmentation_strength.StrengthReading` by the
names of its fields; what the controller holds at ``target``: ``E[sign(D(x))]`` on augmented reals (the
paper's ``r_t``), on the clean reals of every ``every_n_batches``-th batch (``rt_clean``), the
validation heuristic ``r_v`` on held-out reals
(:func:`~lightning_genaug.callbacks.augmentation_strength.measured_rv`), or D's held-out gap itself
(:func:`~lightning_genaug.callbacks.augmentation_strength.measured_gap`)."""

HELDOUT_HEURISTICS = ("rv", "gap")
"""The heuristics read on held-out reals (the datamodule's validation data)."""


class AdaptiveAugmentation(BaseAugmentationStrength):
    """Adapt the augmentation strength ``p`` of a GAN so that D's over-fitting reading stays at ``target``.

    Add it to the ``Trainer`` of any Lightning GAN: finding the pipe (the module's ``augment_pipe``, or
    one installed on a foreign GAN's discriminator), reading D, logging and checkpointing are
    :class:`~lightning_genaug.callbacks.augmentation_strength.BaseAugmentationStrength`'s. Every
    ``every_n_batches`` batches ``p`` moves by :func:`next_p` from the reading ``heuristic`` names:

    * ``"rt"`` (the paper's): ``r_t = E[sign(D(A(x)))]`` over the interval's augmented reals, as D saw
      them in training (no extra cost on the native path).
    * ``"rt_clean"``: ``E[sign(D(x))]`` over the interval's last batch of reals, un-augmented: one extra
      no-grad D forward on one batch per interval (the module's ``score_reals`` on the native path).
      D's memory is of the exact training pixels; on augmented reals it is hidden by the transforms
      whenever most images are changed, which lets ``"rt"`` read "not over-fitting" while D memorises
      (``docs/results.md``). Measured: on a clean batch D also separates reals from a poor generator's
      fakes, so early in training this reading is high without any memorisation; on the digits setting
      at target 0.6 it drove p to 1 within 20 kimg and training collapsed. Not a default.
    * ``"rv"`` (the paper's TensorFlow code's ``adarv``): ``r_v = (E[D(train)] - E[D(held-out)]) /
      (E[D(train)] - E[D(fake)])`` of D's raw outputs on the interval's last batch of clean reals, one
      batch of held-out reals (the datamodule's validation data: hold some out, e.g. ``val_fraction:
      0.1``; at least 32 images) and one batch of the training generator's images. Native path only (the
      module's ``score_reals`` and ``score_fakes``); three extra no-grad D forwards and one G forward per
      interval; the three means are read over a window of about 512 held-out images (16 intervals at
      batch 32), since one batch's reading is too noisy for a sign controller. The TensorFlow code's
      target for it is 0.5. Measured: its denominator, D's real-fake spread, shrinks as ``p`` rises, so
      the reading feeds itself and ``p`` does not settle (``docs/results.md``). Not a default.
    * ``"gap"``: D's held-out gap ``E[D(train)] - E[D(held-out)]`` of its raw outputs (logits), over the
      same window as ``"rv"``, not divided by anything: how much higher D scores its training reals than
      unseen ones. Needs held-out reals as ``"rv"`` does, but not the generator: two extra no-grad D
      forwards per interval. The target is in D's output units (logits for the logistic loss), so it may
      exceed 1. Measured at 0.5 on 200 photographs (3 seeds, 100 kimg): D's gap 0.47 against fixed p =
      0.2's 1.31 at the same FID, p settling at 0.3-0.6; on 50 digits it ended behind ``"rt"`` (FID
      39.9 vs 32.1), so a target in logits suits one dataset, not every one. With DiffAugment always
      on after the pipe (a ``Chain``) it ended best of the adaptive arms on both (``docs/results.md``).
      Not the default.

    Args:
        target: the reading to hold, in [0, 1) (any positive value for ``"gap"``); 0.6 in the paper.
        every_n_batches: adjust ``p`` every this many training batches (4 in the paper).
        speed_kimg: thousands of real images over which ``p`` can move by 1 (500 in the paper; use a
            few kimg for short runs).
        max_p: upper clamp of ``p``, in (0, 1]; non-leaking needs ``p < 1`` for most transforms.
        heuristic: ``"rt"``, ``"rt_clean"``, ``"rv"`` or ``"gap"`` (above).
        preset, pipe, discriminator_attr, image_key: as for
            :class:`~lightning_genaug.callbacks.augmentation_strength.BaseAugmentationStrength`.

    Example:
        >>> callback = AdaptiveAugmentation(target=0.6, speed_kimg=100)
        >>> callback.every_n_batches, callback.p  # no pipe before `setup`
        (4, None)
    """

    def __init__(
        self,
        target: float = 0.6,
        every_n_batches: int = 4,
        speed_kimg: float = 500.0,
        max_p: float = 1.0,
        heuristic: str = "rt",
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
        self.heuristic = check_choice("heuristic", heuristic, HEURISTICS)
        if self.heuristic == "gap":
            self.target = check_range("target", target, 0.0, None, low_inclusive=False)
        else:
            self.target = check_range("target", target, 0.0, 1.0, high_inclusive=False)
        self.speed_kimg = check_range("speed_kimg", speed_kimg, 0.0, None, low_inclusive=False)
        self.max_p = check_range("max_p", max_p, 0.0, 1.0, low_inclusive=False)

    @property
    def reads_clean_reals(self) -> bool:  # type: ignore[override]
        return self.heuristic == "rt_clean"

    @property
    def reads_heldout_reals(self) -> bool:  # type: ignore[override]
        return self.heuristic in HELDOUT_HEURISTICS

    @property
    def reads_generated_images(self) -> bool:  # type: ignore[override]
        return self.heuristic == "rv"

    def next_strength(self, p: float, reading: StrengthReading) -> float:
        """:func:`next_p` from the reading ``heuristic`` names."""
        value = getattr(reading, self.heuristic)
        return next_p(
            p, value, reading.images_seen, target=self.target, speed_kimg=self.speed_kimg, max_p=self.max_p
        )
