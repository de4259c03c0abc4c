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
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_genaug._checks import check_choice, check_range
from lightning_genaug.augment.chain import Chain
from lightning_genaug.augment.diffaug import DiffAugment
from lightning_genaug.callbacks.augmentation_strength import (
    HELDOUT_MIN_IMAGES,
    BaseAugmentationStrength,
    StrengthReading,
    heldout_reals,
)


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

AUTO = "auto"
"""The default ``heuristic``: :func:`auto_heuristic` picks one of :data:`HEURISTICS` at ``setup``."""

DEFAULT_TARGETS = {"rt": 0.6, "rt_clean": 0.6, "rv": 0.5, "gap": 0.5}
"""The ``target`` of each heuristic when none is given: the paper's 0.6 for ``r_t``, the TensorFlow code's
0.5 for ``r_v``, and the measured 0.5 (in D's output units) for the held-out gap."""


def chains_diffaugment(pipe: nn.Module | None) -> bool:
    """Whether ``pipe`` is a :class:`~lightning_genaug.augment.chain.Chain` with a ``DiffAugment`` after
    the augmentation whose ``p`` it exposes, the combination the held-out gap was measured with.

    Example:
        >>> from lightning_genaug.augment import AugmentPipe, Chain, DiffAugment
        >>> chains_diffaugment(Chain([AugmentPipe(), DiffAugment()])), chains_diffaugment(AugmentPipe())
        (True, False)
    """
    return isinstance(pipe, Chain) and any(isinstance(step, DiffAugment) for step in pipe.augmentations[1:])


def auto_heuristic(pipe: nn.Module | None, scores_reals: bool, heldout_images: int) -> tuple[str, str]:
    """The reading ``heuristic="auto"`` holds at its target, and why, from what the run offers.

    D's held-out gap (``"gap"``) where it can be read and was measured to win: the module's own pipe
    (``pipe`` not None: the native path) chains DiffAugment after ADA's pipe (:func:`chains_diffaugment`),
    the module scores clean reals (``score_reals``) and the datamodule holds out at least
    :data:`~lightning_genaug.callbacks.augmentation_strength.HELDOUT_MIN_IMAGES` images. The paper's
    ``r_t`` otherwise: a foreign GAN (``pipe`` None), ADA's pipe alone (the held-out gap alone lost to
    ``r_t`` on the digits setting, ``docs/results.md``), or no held-out reals.

    Args:
        pipe: the module's ``augment_pipe``, ``None`` on the foreign path.
        scores_reals: whether the module has ``score_reals(images, labels)``.
        heldout_images: how many images the datamodule's validation data holds.

    Returns:
        ``(heuristic, reason)``: a name of :data:`HEURISTICS` and the clause saying why.

    Example:
        >>> from lightning_genaug.augment import AugmentPipe, Chain, DiffAugment
        >>> auto_heuristic(Chain([AugmentPipe(), DiffAugment()]), scores_reals=True, heldout_images=64)[0]
        'gap'
        >>> auto_heuristic(None, scores_reals=False, heldout_images=0)[0]
        'rt'
    """
    if pipe is None:
        return "rt", "a GAN without `augment_pipe`, whose D the callback reads by its signs only"
    if not chains_diffaugment(pipe):
        return "rt", (
            f"the module's pipe ({type(pipe).__name__}) chains no DiffAugment after it; on a small dataset "
            "`Chain([AugmentPipe, DiffAugment])` with held-out reals reads D's held-out gap instead"
        )
    if not scores_reals:
        return "rt", "the module has no `score_reals(images, labels)` for D's held-out gap"
    if heldout_images < HELDOUT_MIN_IMAGES:
        return "rt", (
            f"the datamodule holds out {heldout_images} images and D's held-out gap needs at least "
            f"{HELDOUT_MIN_IMAGES}: hold some out (e.g. `val_fraction: 0.1`) to read it"
        )
    return "gap", (
        f"the module's pipe chains DiffAugment and the datamodule holds out {heldout_images} images"
    )


class AdaptiveAugmentation(BaseAugmentationStrength):
    """Adapt the augmentation strength ``p`` of a GAN so that D's over-fitting reading stays at ``target``.

    Add it to the ``Trainer`` of any Lightning GAN: finding the pipe (the module's ``augment_pipe``, or
    one installed on a foreign GAN's discriminator), reading D, logging and checkpointing are
    :class:`~lightning_genaug.callbacks.augmentation_strength.BaseAugmentationStrength`'s. Every
    ``every_n_batches`` batches ``p`` moves by :func:`next_p` from the reading ``heuristic`` names:

    * ``"auto"`` (the default): ``"gap"`` at 0.5 where the run offers what it needs and was measured
      with (the module's pipe chains DiffAugment after ADA's pipe, and the datamodule holds out reals),
      else the paper's ``"rt"`` at 0.6 (any foreign GAN, ADA's pipe alone, no held-out reals); the
      choice and its reason are logged once at ``setup`` (:func:`auto_heuristic`). On the 200-photograph
      setting (3 seeds, 100 kimg) the ``"gap"`` recipe ended at FID 9.3 ± 1.3 against ``"rt"``'s
      15.5 ± 1.0, with D's held-out gap 0.45 against 2.92; on 50 digits at 29.3 against 32.1. That is
      mostly DiffAugment's: DiffAugment alone ended at 7.9 ± 1.0 on the photographs, its D gap at 0.89
      (``docs/results.md``).
    * ``"rt"`` (the paper's): ``r_t = E[sign(D(A(x)))]`` over the interval's augmented reals, as D saw
      them in training (no extra cost on the native path).
    * ``"rt_clean"``: ``E[sign(D(x))]`` over the interval's last batch of reals, un-augmented: one extra
      no-grad D forward on one batch per interval (the module's ``score_reals`` on the native path).
      D's memory is of the exact training pixels; on augmented reals it is hidden by the transforms
      whenever most images are changed, which lets ``"rt"`` read "not over-fitting" while D memorises
      (``docs/results.md``). Measured: on a clean batch D also separates reals from a poor generator's
      fakes, so early in training this reading is high without any memorisation; on the digits setting
      at target 0.6 it drove p to 1 within 20 kimg and training collapsed.
    * ``"rv"`` (the paper's TensorFlow code's ``adarv``): ``r_v = (E[D(train)] - E[D(held-out)]) /
      (E[D(train)] - E[D(fake)])`` of D's raw outputs on the interval's last batch of clean reals, one
      batch of held-out reals (the datamodule's validation data: hold some out, e.g. ``val_fraction:
      0.1``; at least 32 images) and one batch of the training generator's images. Native path only (the
      module's ``score_reals`` and ``score_fakes``); three extra no-grad D forwards and one G forward per
      interval; the three means are read over a window of about 512 held-out images (16 intervals at
      batch 32), since one batch's reading is too noisy for a sign controller. The TensorFlow code's
      target for it is 0.5. Measured: its denominator, D's real-fake spread, shrinks as ``p`` rises, so
      the reading feeds itself and ``p`` does not settle (``docs/results.md``).
    * ``"gap"``: D's held-out gap ``E[D(train)] - E[D(held-out)]`` of its raw outputs (logits), over the
      same window as ``"rv"``, not divided by anything: how much higher D scores its training reals than
      unseen ones. Needs held-out reals as ``"rv"`` does, but not the generator: two extra no-grad D
      forwards per interval. The target is in D's output units (logits for the logistic loss), so it may
      exceed 1. Measured at 0.5 with ADA's pipe alone: on 200 photographs D's gap 0.47 against fixed
      p = 0.2's 1.31 at the same FID; on 50 digits behind ``"rt"`` (FID 39.9 vs 32.1). With DiffAugment
      always on after the pipe it ended best of the adaptive arms on both: what ``"auto"`` picks.

    Args:
        target: the reading to hold: in [0, 1) for ``"rt"``, ``"rt_clean"`` and ``"rv"``, any positive
            value for ``"gap"``, in [0, 1) for ``"auto"`` (it may pick either). Default:
            :data:`DEFAULT_TARGETS` of the heuristic held (0.6 for ``"rt"``, as in the paper).
        every_n_batches: adjust ``p`` every this many training batches (4 in the paper).
        speed_kimg: thousands of real images over which ``p`` can move by 1 (500 in the paper; use a
            few kimg for short runs).
        max_p: upper clamp of ``p``, in (0, 1]; non-leaking needs ``p < 1`` for most transforms.
        heuristic: ``"auto"``, ``"rt"``, ``"rt_clean"``, ``"rv"`` or ``"gap"`` (above).
        preset, pipe, discriminator_attr, image_key: as for
            :class:`~lightning_genaug.callbacks.augmentation_strength.BaseAugmentationStrength`.

    Example:
        >>> callback = AdaptiveAugmentation(speed_kimg=100)
        >>> callback.every_n_batches, callback.p, callback.reading  # no pipe, no reading before `setup`
        (4, None, None)
        >>> paper = AdaptiveAugmentation(heuristic="rt")
        >>> paper.reading, paper.target
        ('rt', 0.6)
    """

    def __init__(
        self,
        target: float | None = None,
        every_n_batches: int = 4,
        speed_kimg: float = 500.0,
        max_p: float = 1.0,
        heuristic: str = AUTO,
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
        self.heuristic = check_choice("heuristic", heuristic, (AUTO, *HEURISTICS))
        self.requested_target = target
        if self.heuristic == AUTO:
            if target is not None and not 0.0 <= check_range("target", target) < 1.0:
                raise ValueError(
                    f"`target` must be in [0.0, 1.0) with heuristic='auto', which may hold r_t, got "
                    f"{target!r}; give heuristic='gap' to hold D's held-out gap at {target!r}."
                )
            self.reading: str | None = None
            self.target: float | None = target
        else:
            self._hold(self.heuristic)
        self.speed_kimg = check_range("speed_kimg", speed_kimg, 0.0, None, low_inclusive=False)
        self.max_p = check_range("max_p", max_p, 0.0, 1.0, low_inclusive=False)

    def _hold(self, reading: str) -> None:
        """Hold ``reading`` at the requested target, or at its default one."""
        target = DEFAULT_TARGETS[reading] if self.requested_target is None else self.requested_target
        if reading == "gap":
            self.target = check_range("target", target, 0.0, None, low_inclusive=False)
        else:
            self.target = check_range("target", target, 0.0, 1.0, high_inclusive=False)
        self.reading = reading

    @property
    def reads_clean_reals(self) -> bool:  # type: ignore[override]
        return self.reading == "rt_clean"

    @property
    def reads_heldout_reals(self) -> bool:  # type: ignore[override]
        return self.reading in HELDOUT_HEURISTICS

    @property
    def reads_generated_images(self) -> bool:  # type: ignore[override]
        return self.reading == "rv"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Pick the reading of ``heuristic="auto"`` (logged once); find the pipe and the readings' data."""
        if stage == "fit" and self.heuristic == AUTO:
            pipe = getattr(pl_module, "augment_pipe", None)
            reading, reason = auto_heuristic(
                pipe,
                callable(getattr(pl_module, "score_reals", None)),
                heldout_reals(trainer)[1] if chains_diffaugment(pipe) else 0,  # builds no loader otherwise
            )
            self._hold(reading)
            rank_zero_info(
                f"{type(self).__name__}: heuristic='auto' holds {reading!r} at {self.target}: {reason}."
            )
        super().setup(trainer, pl_module, stage)

    def state_dict(self) -> dict[str, Any]:
        """The base's state, and the reading held (what ``"auto"`` picked)."""
        return {**super().state_dict(), "reading": self.reading}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the state; a run that resumes must hold the reading the checkpoint's run held."""
        saved = state_dict.get("reading")
        if saved is not None and self.reading is not None and saved != self.reading:
            raise ValueError(
                f"The checkpoint's {type(self).__name__} held {saved!r}, and this run's holds "
                f"{self.reading!r} (heuristic={self.heuristic!r}); resume with `heuristic={saved!r}` "
                "and the data it read, or start a new run."
            )
        super().load_state_dict(state_dict)

    def next_strength(self, p: float, reading: StrengthReading) -> float:
        """:func:`next_p` from the reading held (``heuristic``, or what ``"auto"`` picked)."""
        if self.reading is None or self.target is None:
            raise RuntimeError(f"{type(self).__name__} has no reading: `setup(stage='fit')` has not run.")
        value = getattr(reading, self.reading)
        return next_p(
            p, value, reading.images_seen, target=self.target, speed_kimg=self.speed_kimg, max_p=self.max_p
        )
