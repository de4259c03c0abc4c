"""``AdaptiveAugmentation``: the ADA strength controller, for our modules and for any Lightning GAN.

Adaptive discriminator augmentation (Karras et al. 2020, Sec. 3) augments everything the
discriminator D sees with probability ``p`` per transform and adapts ``p`` so that the overfitting
heuristic ``r_t = E[sign(D(real))]`` stays at a target. This callback is the controller:

* **Native path**: the module owns ``augment_pipe`` (a pipe implementing the ADA protocol of
  :mod:`lightning_genaug.augment.protocol`) and calls ``augment_pipe.observe(real_logits)`` on D's
  logits for augmented reals. The callback only reads the statistics and writes ``p``.
* **Foreign path** (zero code change): the module has no ``augment_pipe``. The callback finds the
  discriminator, creates a pipe (or takes ``pipe=``), augments D's image input with a forward
  pre-hook while the module is training (reals and fakes, in D and G steps), and every
  ``every_n_batches`` batches measures ``r_t`` by running D once more, under ``no_grad``, on augmented
  reals of the current batch.

``p`` has one home: the pipe's ``p`` buffer. The callback reads it, writes the new value there, and
checkpoints only its own counters (plus, on the foreign path, the state of the pipe it owns). Every
``every_n_batches`` batches the statistics are summed over ranks through the strategy, so every rank
computes the same ``p`` (:func:`next_p`).
"""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lightning_genaug._checks import check_choice, check_images, check_positive_int, check_range
from lightning_genaug.augment.ada_pipe import AUGMENT_PRESETS, AugmentPipe
from lightning_genaug.augment.protocol import AugmentationStrength
from lightning_genaug.callbacks.foreign_discriminator import ForeignDiscriminator, find_discriminator
from lightning_genaug.data.batch import split_batch


def next_p(
    p: float,
    sign_sum: float,
    count: float,
    images_seen: float,
    *,
    target: float,
    speed_kimg: float,
    max_p: float,
) -> tuple[float, float]:
    """One ADA controller step: the new strength and the measured heuristic.

    Formula::

        r_t = sum(sign(D(x_real))) / count
        p'  = clamp(p + sign(r_t - target) * images_seen / (1000 * speed_kimg), 0, max_p)

    ``images_seen`` is the number of training images since the previous step, summed over ranks
    (``batch_size * every_n_batches * world_size`` for full batches), so ``p`` can travel from 0 to 1 in
    ``speed_kimg`` thousand images whatever the batch size, interval or number of devices.
    With no observation (``count == 0``) ``r_t`` is NaN and ``p`` does not move.

    Args:
        p: current strength.
        sign_sum: sum of ``sign(D(real))`` over the interval (all ranks).
        count: number of logits behind ``sign_sum`` (all ranks).
        images_seen: training images since the previous step (all ranks).
        target: the value of ``r_t`` the controller aims at.
        speed_kimg: thousands of images for ``p`` to move by 1.
        max_p: upper clamp of ``p``.

    Returns:
        ``(p', r_t)``.

    Example:
        >>> next_p(0.0, sign_sum=10.0, count=16.0, images_seen=256, target=0.6, speed_kimg=500, max_p=1.0)
        (0.000512, 0.625)
        >>> next_p(0.0, sign_sum=-4.0, count=16.0, images_seen=256, target=0.6, speed_kimg=500, max_p=1.0)
        (0.0, -0.25)
    """
    rt = measured_rt(sign_sum, count)
    if math.isnan(rt):
        return p, rt
    direction = (rt > target) - (rt < target)
    step = images_seen / (speed_kimg * 1000.0)
    stepped = p + direction * step
    # p lives in a float32 buffer: snap the rounding residue of "up then down" back to exactly 0, so
    # pipes keep their p == 0 fast path.
    if stepped < 1e-4 * step:
        stepped = 0.0
    return min(max(stepped, 0.0), max_p), rt


def measured_rt(sign_sum: float, count: float) -> float:
    """The overfitting heuristic ``r_t = sum(sign(D(x_real))) / count``; NaN with no observation.

    >>> measured_rt(10.0, 16.0), measured_rt(0.0, 0.0)
    (0.625, nan)
    """
    return sign_sum / count if count > 0 else math.nan


class AdaptiveAugmentation(Callback):
    """Adapt the augmentation strength ``p`` of a GAN so that ``r_t = E[sign(D(real))]`` stays at ``target``.

    Add it to the ``Trainer`` of any Lightning GAN. A module that owns ``augment_pipe`` (e.g.
    ``StyleGAN2ADA``) gets its pipe's ``p`` adapted. A module without one gets augmentation added to
    its discriminator (found by ``discriminator_attr`` or as the first of ``discriminator``, ``netD``,
    ``D``, ``disc``, ``critic``) with no code change: D's first positional argument (or the keyword
    argument named ``image_key``, default ``"image"``) is augmented while the module is training; its
    other arguments (labels) pass through untouched. D must then be callable as ``D(images)`` or
    ``D(images, labels)`` for the ``r_t`` measurement, which costs one extra no-grad D forward on the
    current batch's reals every ``every_n_batches`` batches.

    Logs ``ada/p`` (progress bar) and ``ada/rt`` (the latest measurement) every training batch.
    ``p`` lives in the pipe's ``p`` buffer only, and starts from the value the pipe was built with
    (``AugmentPipe(p=...)``, ``DataScaling(p=...)``): the module's checkpoint holds it on the native path,
    the callback's state holds the pipe it owns on the foreign path, so a resumed run continues ``p``
    exactly.

    Args:
        target: the ``r_t`` to hold, in [0, 1); 0.6 in the paper.
        every_n_batches: adjust ``p`` every this many training batches (4 in the paper).
        speed_kimg: thousands of real images over which ``p`` can move by 1 (500 in the paper; use a
            few kimg for short runs).
        max_p: upper clamp of ``p``, in (0, 1]; non-leaking needs ``p < 1`` for most transforms.
        heuristic: ``"rt"`` (the paper's default). ``"rv"`` is not implemented: it needs D run on a
            held-out validation set and on generated images, which the native path does not expose.
        preset: preset of the ``AugmentPipe`` created for a module without ``augment_pipe`` (ignored
            when ``pipe`` is given or the module owns a pipe).
        pipe: a ready pipe implementing the ADA protocol (``AugmentPipe``, ``DiffAugment``,
            ``DataScaling``, ...) to install on a module without ``augment_pipe``.
        adapt: ``False`` holds ``p`` at the pipe's own value and never adapts it (ablations, the
            paper's fixed-p baselines); ``r_t`` is still measured and logged.
        discriminator_attr: attribute of the module holding D (foreign path), or a dotted path to a nested
            one (``"loss.discriminator"``). Default: the first of the names above on the module, else the
            one submodule at any depth with such a name.
        image_key: key of the images in dict batches, and keyword of D's image argument when D is
            called with keywords only.

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
        adapt: bool = True,
        discriminator_attr: str | None = None,
        image_key: str | None = None,
    ) -> None:
        self.target = check_range("target", target, 0.0, 1.0, high_inclusive=False)
        self.every_n_batches = check_positive_int("every_n_batches", every_n_batches)
        self.speed_kimg = check_range("speed_kimg", speed_kimg, 0.0, None, low_inclusive=False)
        self.max_p = check_range("max_p", max_p, 0.0, 1.0, low_inclusive=False)
        self.heuristic = check_choice("heuristic", heuristic, ["rt"])
        if not isinstance(adapt, bool):
            raise TypeError(f"`adapt` must be True or False, got {type(adapt).__name__} {adapt!r}.")
        self.adapt = adapt
        self.preset = check_choice("preset", preset, AUGMENT_PRESETS)
        self.discriminator_attr = None if discriminator_attr is None else _check_name(
            "discriminator_attr", discriminator_attr
        )
        self.image_key = None if image_key is None else _check_name("image_key", image_key)
        if pipe is not None:
            _check_pipe(pipe, "pipe")
        self._pipe_given = pipe is not None
        self._foreign_pipe: nn.Module | None = pipe  # built in `setup` when the foreign path needs one

        self._rt: float | None = None
        self._batches_seen = 0
        self._images_since_update = 0
        self._warned_no_signs = False

        self._pipe: nn.Module | None = None
        self._foreign: ForeignDiscriminator | None = None  # the hook on D, on the foreign path

    # ------------------------------------------------------------------ public state

    @property
    def p(self) -> float | None:
        """The current strength, read from the pipe's ``p`` buffer (``None`` before ``setup``)."""
        return None if self._pipe is None else float(self._pipe.p)

    @property
    def rt(self) -> float | None:
        """The latest measured ``r_t`` (``None`` before the first measurement)."""
        return self._rt

    @property
    def pipe(self) -> nn.Module | None:
        """The pipe whose ``p`` is driven (known after ``setup``)."""
        return self._pipe

    @property
    def is_foreign(self) -> bool:
        """Whether the callback augments the discriminator itself (module without ``augment_pipe``)."""
        return self._foreign is not None

    @property
    def state_key(self) -> str:
        pipe_name = type(self._foreign_pipe).__name__ if self._pipe_given else self.preset
        return self._generate_state_key(
            discriminator_attr=self.discriminator_attr, image_key=self.image_key, pipe=pipe_name
        )

    def state_dict(self) -> dict[str, Any]:
        """The callback's counters, plus the state of the pipe it owns on the foreign path (its ``p``)."""
        state: dict[str, Any] = {
            "rt": self._rt,
            "batches_seen": self._batches_seen,
            "images_since_update": self._images_since_update,
        }
        if self.is_foreign:
            state["pipe"] = self._foreign_pipe.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rt = state_dict.get("rt")
        self._batches_seen = int(state_dict.get("batches_seen", 0))
        self._images_since_update = int(state_dict.get("images_since_update", 0))
        if "pipe" in state_dict:
            self._require_foreign_pipe().load_state_dict(state_dict["pipe"])

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._remove_hook()
        self._foreign = None
        if hasattr(pl_module, "augment_pipe"):
            self._pipe = self._module_pipe(pl_module)
            return
        discriminator = find_discriminator(pl_module, self.discriminator_attr)
        self._pipe = self._require_foreign_pipe()
        self._foreign = ForeignDiscriminator(pl_module, discriminator, self._pipe, self.image_key)

    def _module_pipe(self, pl_module: pl.LightningModule) -> nn.Module:
        """The native path's pipe, ``pl_module.augment_pipe``, checked."""
        module_name, own_pipe = type(pl_module).__name__, pl_module.augment_pipe
        if own_pipe is None:
            raise ValueError(
                f"`{module_name}.augment_pipe` is None: the module has its augmentation switched off, so "
                "there is no strength to adapt. Give the module an augmentation (e.g. `augment: "
                "{class_path: AugmentPipe}`) or remove AdaptiveAugmentation."
            )
        _check_pipe(own_pipe, f"{module_name}.augment_pipe")
        if self._pipe_given and self._foreign_pipe is not own_pipe:
            raise ValueError(
                f"{module_name} already owns `augment_pipe`, and `pipe` was given too; drop `pipe=` (the "
                "callback adapts the module's own pipe)."
            )
        return own_pipe

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start augmenting from the pipe's own ``p``.

        The pipe is ``p``'s one home: a fresh run starts from the ``p`` it was built with, a resumed
        run from the one its checkpoint restored.
        """
        pipe = self._require_pipe()
        if self.is_foreign:
            pipe.to(pl_module.device)
        if self._foreign is not None:
            self._foreign.augmenting = True

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        images, _ = self._split(batch)
        self._images_since_update += images.shape[0]
        if self._foreign is not None:
            self._foreign.start_batch(batch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches_seen += 1
        if self._batches_seen % self.every_n_batches == 0:
            if self._foreign is not None:
                self._foreign.observe_augmented_reals(*self._split(batch))
            self._update(trainer)
        p = self._require_pipe().p.detach().float()
        pl_module.log("ada/p", p, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        if self._rt is not None and not math.isnan(self._rt):
            pl_module.log("ada/rt", self._rt, on_step=True, on_epoch=False, batch_size=1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._foreign is not None:
            self._foreign.augmenting = False

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._remove_hook()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._remove_hook()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._remove_hook()

    # ------------------------------------------------------------------ helpers

    def _require_pipe(self) -> nn.Module:
        if self._pipe is None:
            raise RuntimeError("AdaptiveAugmentation has no pipe: `setup(stage='fit')` has not run.")
        return self._pipe

    def _split(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        try:
            images, labels = split_batch(batch, self.image_key)
        except ValueError as error:
            raise ValueError(f"AdaptiveAugmentation cannot find the batch's images: {error}") from None
        return check_images(images, "batch images"), labels

    def _require_foreign_pipe(self) -> nn.Module:
        """The pipe of the foreign path: ``pipe=`` or an ``AugmentPipe(preset)``, built on first use."""
        if self._foreign_pipe is None:
            self._foreign_pipe = AugmentPipe(preset=self.preset)
        return self._foreign_pipe

    def _write_p(self, p: float) -> None:
        with torch.no_grad():
            self._require_pipe().p.fill_(p)

    def _update(self, trainer: pl.Trainer) -> None:
        """Sum the interval's statistics over ranks, step ``p`` and hand it to the pipe."""
        sign_sum, count = self._require_pipe().pop_stats()
        local = torch.stack(
            [
                sign_sum.to(torch.float64),
                count.to(torch.float64),
                torch.tensor(float(self._images_since_update), dtype=torch.float64, device=sign_sum.device),
            ]
        )
        total_signs, total_count, total_images = trainer.strategy.reduce(local, reduce_op="sum").tolist()
        self._images_since_update = 0
        new_p, self._rt = self._next_p(float(self._require_pipe().p), total_signs, total_count, total_images)
        if total_count <= 0 and not self._warned_no_signs:
            self._warned_no_signs = True
            rank_zero_warn(
                f"{type(self).__name__}: the pipe observed no discriminator logits during the last "
                f"{self.every_n_batches} batches, so r_t cannot be measured (nor p adapt). The module must "
                "call `self.augment_pipe.observe(real_logits)` on D's logits for augmented reals."
            )
        self._write_p(new_p)

    def _next_p(self, p: float, sign_sum: float, count: float, images_seen: float) -> tuple[float, float]:
        """The strength after an interval and the measured ``r_t``: :func:`next_p`, or ``p`` unless ``adapt``.

        Args are the interval's totals over ranks, as for :func:`next_p`.
        """
        new_p, rt = next_p(
            p, sign_sum, count, images_seen, target=self.target, speed_kimg=self.speed_kimg, max_p=self.max_p
        )
        return (new_p if self.adapt else p), rt

    def _remove_hook(self) -> None:
        if self._foreign is not None:
            self._foreign.remove()


def _check_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"`{name}` must be a non-empty string, got {type(value).__name__} {value!r}.")
    return value


def _check_pipe(pipe: Any, name: str) -> None:
    if not isinstance(pipe, nn.Module) or not isinstance(pipe, AugmentationStrength):
        raise TypeError(
            f"`{name}` must be an nn.Module implementing the ADA protocol (a `p` buffer, `observe()`, "
            f"`pop_stats()`; see lightning_genaug.augment.protocol), got {type(pipe).__name__}."
        )
    if not isinstance(pipe.p, torch.Tensor) or pipe.p.ndim != 0:
        raise TypeError(f"`{name}.p` must be a 0-d tensor buffer, got {pipe.p!r}.")
