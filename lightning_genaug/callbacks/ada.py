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

import inspect
import math
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_deprecation, rank_zero_warn
from torch import nn
from torch.utils.hooks import RemovableHandle

from lightning_genaug._checks import check_choice, check_images, check_positive_int, check_range
from lightning_genaug.augment.ada_pipe import PRESETS as AUGMENT_PRESETS
from lightning_genaug.augment.ada_pipe import AugmentPipe
from lightning_genaug.augment.protocol import AugmentationStrength
from lightning_genaug.data.batch import split_batch

DISCRIMINATOR_ATTRS: tuple[str, ...] = ("discriminator", "netD", "D", "disc", "critic")
"""Attribute names searched, in this order, for the discriminator of a module without ``augment_pipe``."""


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
    if count <= 0:
        return p, math.nan
    rt = sign_sum / count
    direction = (rt > target) - (rt < target)
    step = images_seen / (speed_kimg * 1000.0)
    stepped = p + direction * step
    # p lives in a float32 buffer: snap the rounding residue of "up then down" back to exactly 0, so
    # pipes keep their p == 0 fast path.
    if stepped < 1e-4 * step:
        stepped = 0.0
    return min(max(stepped, 0.0), max_p), rt


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
    ``p`` lives in the pipe's ``p`` buffer only: the module's checkpoint holds it on the native path,
    the callback's state holds the pipe it owns on the foreign path, so a resumed run continues ``p``
    exactly. Checkpoints written by 0.1 (which stored the callback's own copy of ``p``) resume too.

    Args:
        target: the ``r_t`` to hold, in [0, 1); 0.6 in the paper.
        every_n_batches: adjust ``p`` every this many training batches (4 in the paper).
        speed_kimg: thousands of real images over which ``p`` can move by 1 (500 in the paper; use a
            few kimg for short runs).
        initial_p: ``p`` written to the pipe at the start of a fresh run, in [0, max_p]; ``None``
            keeps the pipe's own value (the ``p`` it was built with; 0 for the default pipe).
        max_p: upper clamp of ``p``, in (0, 1]; non-leaking needs ``p < 1`` for most transforms.
        heuristic: ``"rt"`` (the paper's default). ``"rv"`` is not implemented: it needs D run on a
            held-out validation set and on generated images, which the native path does not expose.
        preset: preset of the ``AugmentPipe`` created for a module without ``augment_pipe`` (ignored
            when ``pipe`` is given or the module owns a pipe).
        pipe: a ready pipe implementing the ADA protocol (``AugmentPipe``, ``DiffAugment``,
            ``DataScaling``, ...) to install on a module without ``augment_pipe``.
        fixed_p: hold ``p`` at this value and never adapt it (ablations); ``r_t`` is still measured
            and logged. Overrides ``initial_p``.
        discriminator_attr: attribute of the module holding D (foreign path).
        image_key: key of the images in dict batches, and keyword of D's image argument when D is
            called with keywords only.
        interval: deprecated alias of ``every_n_batches`` (removed in 0.3).

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
        initial_p: float | None = None,
        max_p: float = 1.0,
        heuristic: str = "rt",
        preset: str = "bgc",
        pipe: nn.Module | None = None,
        fixed_p: float | None = None,
        discriminator_attr: str | None = None,
        image_key: str | None = None,
        interval: int | None = None,
    ) -> None:
        if interval is not None:
            rank_zero_deprecation(
                "AdaptiveAugmentation(interval=...) is deprecated since 0.2 and will be removed in 0.3; "
                "use `every_n_batches` (the same number: training batches)."
            )
            every_n_batches = interval
        self.target = check_range("target", target, 0.0, 1.0, high_inclusive=False)
        self.every_n_batches = check_positive_int("every_n_batches", every_n_batches)
        self.speed_kimg = check_range("speed_kimg", speed_kimg, 0.0, None, low_inclusive=False)
        self.max_p = check_range("max_p", max_p, 0.0, 1.0, low_inclusive=False)
        self.initial_p = None if initial_p is None else check_range("initial_p", initial_p, 0.0, self.max_p)
        self.heuristic = check_choice("heuristic", heuristic, ["rt"])
        self.fixed_p = None if fixed_p is None else check_range("fixed_p", fixed_p, 0.0, 1.0)
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
        self._legacy_p: float | None = None  # `p` of a 0.1 checkpoint, written to the pipe at train start
        self._warned_no_signs = False

        self._pipe: nn.Module | None = None
        self._module: pl.LightningModule | None = None
        self._discriminator: nn.Module | None = None
        self._discriminator_takes_labels = False
        self._hook: RemovableHandle | None = None
        self._augmenting = False

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
        return self._discriminator is not None

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
        elif "p" in state_dict:  # written by 0.1, which kept its own copy of p
            self._legacy_p = float(state_dict["p"])

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._remove_hook()
        self._discriminator = None
        if hasattr(pl_module, "augment_pipe"):
            self._pipe = self._module_pipe(pl_module)
            return
        self._discriminator = _find_discriminator(pl_module, self.discriminator_attr)
        self._discriminator_takes_labels = _takes_labels(self._discriminator)
        self._pipe = self._require_foreign_pipe()
        self._module = pl_module
        self._hook = self._discriminator.register_forward_pre_hook(self._augment_input, with_kwargs=True)

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
        """Write the starting ``p`` to the pipe: ``fixed_p``, a 0.1 checkpoint's ``p``, or ``initial_p``.

        A resumed run keeps the ``p`` its checkpoint restored into the pipe (``initial_p`` only starts
        fresh runs).
        """
        pipe = self._require_pipe()
        if self.is_foreign:
            pipe.to(pl_module.device)
        if self.fixed_p is not None:
            self._write_p(self.fixed_p)
        elif self._legacy_p is not None:
            self._write_p(self._legacy_p)
        elif trainer.ckpt_path is None and self.initial_p is not None:
            self._write_p(self.initial_p)
        self._legacy_p = None
        self._augmenting = True

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        images, _ = self._split(batch)
        self._images_since_update += images.shape[0]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._batches_seen += 1
        if self._batches_seen % self.every_n_batches == 0:
            if self.is_foreign:
                self._observe_augmented_reals(batch)
            self._update(trainer)
        p = self._require_pipe().p.detach().float()
        pl_module.log("ada/p", p, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        if self._rt is not None and not math.isnan(self._rt):
            pl_module.log("ada/rt", self._rt, on_step=True, on_epoch=False, batch_size=1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._augmenting = False

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
        new_p, self._rt = next_p(
            float(self._require_pipe().p),
            total_signs,
            total_count,
            total_images,
            target=self.target,
            speed_kimg=self.speed_kimg,
            max_p=self.max_p,
        )
        if total_count <= 0 and not self._warned_no_signs:
            self._warned_no_signs = True
            rank_zero_warn(
                "AdaptiveAugmentation: the pipe observed no discriminator logits during the last "
                f"{self.every_n_batches} batches, so p cannot adapt. The module must call "
                "`self.augment_pipe.observe(real_logits)` on D's logits for augmented reals."
            )
        if self.fixed_p is None:
            self._write_p(new_p)

    @torch.no_grad()
    def _observe_augmented_reals(self, batch: Any) -> None:
        """Run D (in its current mode) on augmented reals of ``batch`` and feed its logits to the pipe.

        D's buffers (e.g. BatchNorm running statistics) are restored afterwards, so the measurement
        leaves no trace on training.
        """
        discriminator, pipe = self._discriminator, self._require_pipe()
        images, labels = self._split(batch)
        args: tuple[torch.Tensor, ...] = (pipe(images),)
        if self._discriminator_takes_labels:
            if labels is None:
                raise ValueError(
                    f"`{type(discriminator).__name__}.forward` requires a second argument (labels) but the "
                    "training batch has none; give the batch as (images, labels) or a dict with 'label'."
                )
            args = (*args, labels)
        saved_buffers = [buffer.clone() for buffer in discriminator.buffers()]
        self._augmenting = False
        try:
            logits = _signed_scores(discriminator, args)
        finally:
            self._augmenting = True
            for buffer, saved in zip(discriminator.buffers(), saved_buffers, strict=True):
                buffer.copy_(saved)
        pipe.observe(logits)

    def _augment_input(
        self, discriminator: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Forward pre-hook: augment D's image argument while the module trains; pass the rest through."""
        if not (self._augmenting and self._module is not None and self._module.training):
            return None
        pipe = self._require_pipe()
        if args:
            if not isinstance(args[0], torch.Tensor):
                raise TypeError(
                    f"AdaptiveAugmentation augments the first positional argument of "
                    f"`{type(discriminator).__name__}`, which is a {type(args[0]).__name__}, not an image "
                    "tensor; call D with the images first, or by keyword and set `image_key`."
                )
            return (pipe(args[0]), *args[1:]), kwargs
        key = self.image_key or "image"
        if key not in kwargs:
            raise ValueError(
                f"`{type(discriminator).__name__}` was called with keywords {sorted(kwargs)} and no "
                f"positional argument; AdaptiveAugmentation looked for the images under {key!r}. Set "
                "`image_key` to the keyword holding the images."
            )
        return args, {**kwargs, key: pipe(kwargs[key])}

    def _remove_hook(self) -> None:
        self._augmenting = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._module = None


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


def _find_discriminator(pl_module: pl.LightningModule, discriminator_attr: str | None) -> nn.Module:
    """The module's discriminator: ``discriminator_attr`` if given, else the first known attribute name."""
    module_name = type(pl_module).__name__
    names = (discriminator_attr,) if discriminator_attr is not None else DISCRIMINATOR_ATTRS
    for name in names:
        candidate = getattr(pl_module, name, None)
        if candidate is None:
            continue
        if not isinstance(candidate, nn.Module):
            raise TypeError(
                f"`{module_name}.{name}` is a {type(candidate).__name__}, not an nn.Module; set "
                "`discriminator_attr` to the attribute holding the discriminator."
            )
        return candidate
    if discriminator_attr is not None:
        raise ValueError(
            f"`{module_name}` has no attribute `discriminator_attr={discriminator_attr!r}`; set "
            "`discriminator_attr` to the attribute holding the discriminator."
        )
    raise ValueError(
        f"AdaptiveAugmentation found neither `augment_pipe` nor a discriminator on `{module_name}` (looked "
        f"for {', '.join(DISCRIMINATOR_ATTRS)}); set `discriminator_attr` to the attribute holding the "
        "discriminator."
    )


def _takes_labels(discriminator: nn.Module) -> bool:
    """Whether D's forward needs a second positional argument (labels) besides the images.

    Raises:
        ValueError: if it needs more than two; the foreign path can only call ``D(x)`` or ``D(x, labels)``.
    """
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = inspect.signature(discriminator.forward).parameters.values()
    required = [p for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty]
    if len(required) > 2:
        raise ValueError(
            f"`{type(discriminator).__name__}.forward` requires {len(required)} arguments "
            f"({', '.join(p.name for p in required)}); AdaptiveAugmentation measures r_t by calling "
            "D(images) or D(images, labels). Give the module an `augment_pipe` that it feeds with "
            "`observe(real_logits)` instead (the native path)."
        )
    return len(required) == 2


def _signed_scores(discriminator: nn.Module, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Run D and return scores whose sign says "real": its logits, or ``probability - 0.5``.

    D's written like Lightning's GAN tutorial end with ``nn.Sigmoid`` and output probabilities, for which
    ``sign(D(x))`` is always +1. An output sharing storage with the output of one of D's ``nn.Sigmoid``
    submodules is taken as a probability and shifted by 0.5, which gives it the sign of the logit.
    """
    sigmoid_outputs: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda _module, _inputs, output: sigmoid_outputs.append(output))
        for module in discriminator.modules()
        if isinstance(module, nn.Sigmoid)
    ]
    try:
        scores = _first_tensor(discriminator(*args))
    finally:
        for handle in handles:
            handle.remove()
    storage = scores.untyped_storage().data_ptr()
    if any(output.untyped_storage().data_ptr() == storage for output in sigmoid_outputs):
        return scores - 0.5
    return scores


def _first_tensor(output: Any) -> torch.Tensor:
    """D's logits: the output itself, or the first tensor of a tuple/list output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"The discriminator returned a {type(output).__name__}; AdaptiveAugmentation needs its logits as a "
        "tensor (or the first item of a tuple)."
    )
