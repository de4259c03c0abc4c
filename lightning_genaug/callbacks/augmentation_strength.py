"""The augmentation-strength callbacks' one base, and the simplest of them: a fixed ``p``.

Every callback that sets the strength ``p`` of a GAN's discriminator augmentation does the same work
around one decision, as Lightning's fine-tuning callbacks share ``BaseFinetuning``:

* find the pipe: the module's own ``augment_pipe`` (the native path), or, on a module without one, its
  discriminator, on whose image input a pipe is installed with a forward pre-hook (the foreign path,
  :mod:`lightning_genaug.callbacks.foreign_discriminator`);
* read D every ``every_n_batches`` batches: the signs of its logits for *augmented* reals (what the
  module fed to ``pipe.observe``, or a no-grad probe on the foreign path) and, when the subclass asks
  for it, for the current batch's *clean* reals (:attr:`BaseAugmentationStrength.reads_clean_reals`);
* sum the readings over ranks in one reduction, so every rank computes the same ``p``;
* write ``p`` to its one home, the pipe's ``p`` buffer; log ``ada/p``, ``ada/rt`` (and
  ``ada/rt_clean``, ``ada/rv``, ``ada/gap`` when read); checkpoint the counters.

A subclass only says the next ``p`` from a :class:`StrengthReading`
(:meth:`BaseAugmentationStrength.next_strength`):
:class:`~lightning_genaug.callbacks.ada.AdaptiveAugmentation` (a controller),
:class:`~lightning_genaug.callbacks.scheduled_augmentation.ScheduledAugmentation` (a ramp) and
:class:`FixedAugmentation` (the pipe's own ``p``, held) are siblings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn

from lightning_genaug._checks import check_choice, check_images, check_positive_int
from lightning_genaug.augment.ada_pipe import AUGMENT_PRESETS, AugmentPipe
from lightning_genaug.augment.protocol import AugmentationStrength, SignAccumulator
from lightning_genaug.callbacks._progress import TrainingProgress, training_progress
from lightning_genaug.callbacks.foreign_discriminator import ForeignDiscriminator, find_discriminator
from lightning_genaug.data.batch import split_batch

HELDOUT_MIN_IMAGES = 32
"""Fewer held-out reals than this make ``r_v`` a reading of a handful of images: refused."""

RV_WINDOW_IMAGES = 512
"""``r_v`` and D's held-out gap are read from running sums that forget at this many held-out images: one
batch per interval is too few for a reading (a sign controller turns its noise into a random walk of
``p``), so each interval's sums are added to the earlier ones decayed by ``1 - images / RV_WINDOW_IMAGES``."""


def measured_rv(train: float, heldout: float, fake: float) -> float:
    """The validation heuristic ``r_v = (E[D(train)] - E[D(held-out)]) / (E[D(train)] - E[D(fake)])``.

    D's mean raw outputs on clean training reals, held-out reals and generated images: 0 while D scores
    unseen reals like its training reals, 1 when it scores them like fakes. A D that does not score its
    training reals above the fakes is not over-fitting them: 0. NaN without a reading.

    >>> measured_rv(train=2.0, heldout=1.0, fake=-2.0), measured_rv(train=-1.0, heldout=0.0, fake=0.5)
    (0.25, 0.0)
    """
    if any(math.isnan(value) for value in (train, heldout, fake)):
        return math.nan
    spread = train - fake
    return (train - heldout) / spread if spread > 0 else 0.0


def measured_gap(train: float, heldout: float) -> float:
    """D's held-out gap ``E[D(train)] - E[D(held-out)]``: how much higher D scores its clean training reals
    than unseen ones, in D's raw outputs (logits for the logistic loss). NaN without a reading.

    Unlike :func:`measured_rv` it is not divided by D's real-fake spread, which augmentation itself
    shrinks (``docs/results.md``).

    >>> measured_gap(train=2.0, heldout=1.5), measured_gap(train=0.0, heldout=math.nan)
    (0.5, nan)
    """
    return train - heldout


def windowed_scores(window: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
    """``r_v``'s running sums after one interval: the earlier sums decayed, plus the interval's.

    Args:
        window, interval: ``(6,)`` float64, ``[train sum, train count, held-out sum, held-out count,
            fake sum, fake count]`` of D's raw outputs; the decay is ``1 - held-out count of the
            interval / RV_WINDOW_IMAGES`` (floored at 0).

    >>> window = torch.tensor([64.0, 32, 64, 32, -64, 32], dtype=torch.float64)  # r_v 0: no gap yet
    >>> held_out_now_scored_0 = torch.tensor([64.0, 32, 0, 32, -64, 32], dtype=torch.float64)
    >>> [round(mean, 3) for mean in window_means(windowed_scores(window, held_out_now_scored_0))]
    [2.0, 0.968, -2.0]
    """
    decay = max(0.0, 1.0 - interval[3].item() / RV_WINDOW_IMAGES)
    return decay * window + interval


def window_means(window: torch.Tensor) -> tuple[float, float, float]:
    """D's mean raw output on training reals, held-out reals and fakes from ``(6,)`` sums (NaN if none)."""
    sums = window.tolist()
    train, heldout, fake = (
        sums[2 * index] / sums[2 * index + 1] if sums[2 * index + 1] > 0 else math.nan for index in range(3)
    )
    return train, heldout, fake


def heldout_reals(trainer: pl.Trainer) -> tuple[Any, int]:
    """The datamodule's validation loader and how many images it holds (``(None, 0)`` without one).

    Lightning has run the datamodule's own ``setup("fit")`` before any callback's ``setup``, so a
    callback's ``setup`` can call this.
    """
    datamodule = trainer.datamodule
    if (
        datamodule is None
        or getattr(datamodule, "has_validation_data", True) is False
        or not is_overridden("val_dataloader", datamodule, LightningDataModule)
    ):
        return None, 0
    loader = datamodule.val_dataloader()
    return loader, len(loader.dataset) if loader is not None and hasattr(loader, "dataset") else 0


def measured_rt(sign_sum: float, count: float) -> float:
    """The overfitting heuristic ``r_t = sum(sign(D(x_real))) / count``; NaN with no observation.

    >>> measured_rt(10.0, 16.0), measured_rt(0.0, 0.0)
    (0.625, nan)
    """
    return sign_sum / count if count > 0 else math.nan


@dataclass(frozen=True)
class StrengthReading:
    """What D said over one interval of ``every_n_batches`` batches, summed over ranks.

    Attributes:
        rt: ``E[sign(D(augmented reals))]``, the paper's ``r_t`` (NaN without observations).
        rt_clean: ``E[sign(D(clean reals))]`` over the interval's last batch, un-augmented (NaN unless
            the callback :attr:`~BaseAugmentationStrength.reads_clean_reals`).
        rv: ``r_v`` (:func:`measured_rv`) of D's raw outputs on clean reals (one batch an interval),
            held-out reals and generated images, from sums over about the last
            :data:`RV_WINDOW_IMAGES` held-out images (NaN unless the callback
            :attr:`~BaseAugmentationStrength.reads_generated_images`).
        gap: D's held-out gap (:func:`measured_gap`) over the same window (NaN unless the callback
            :attr:`~BaseAugmentationStrength.reads_heldout_reals`).
        images_seen: training images in the interval, all ranks together.
        images_total: training images since the start of the run, all ranks together, this interval's
            included.
    """

    rt: float
    rt_clean: float
    images_seen: float
    images_total: float
    rv: float = math.nan
    gap: float = math.nan


class BaseAugmentationStrength(Callback):
    """Sets the augmentation strength ``p`` of a GAN every ``every_n_batches`` batches.

    Subclasses implement :meth:`next_strength`. Use one such callback per Trainer.

    A module that owns ``augment_pipe`` (``StyleGAN2ADA``, ``ScaleGAN``, any module following the ADA
    protocol) gets its pipe's ``p`` set. A module without one gets augmentation added to its
    discriminator, found by ``discriminator_attr`` or as the first of ``discriminator``, ``netD``,
    ``D``, ``disc``, ``critic``, with no code change: D's first positional argument (or the keyword
    argument named ``image_key``, default ``"image"``) is augmented while the module is training; its
    other arguments (labels) pass through untouched. D must then be callable as ``D(images)`` or
    ``D(images, labels)`` for the ``r_t`` reading, which costs one extra no-grad D forward on the
    current batch's reals every ``every_n_batches`` batches.

    Logs ``ada/p`` (progress bar) and ``ada/rt`` (the latest reading) every training batch, and
    ``ada/rt_clean``, ``ada/rv``, ``ada/gap`` when they are read. ``p`` lives in the pipe's ``p`` buffer
    only: the module's checkpoint holds it on the native path, this callback's state holds the pipe it
    owns on the foreign path, so a resumed run continues ``p`` exactly.

    Args:
        every_n_batches: read D and set ``p`` every this many training batches.
        preset: preset of the ``AugmentPipe`` created for a module without ``augment_pipe`` (ignored when
            ``pipe`` is given or the module owns a pipe).
        pipe: a ready pipe implementing the ADA protocol (``AugmentPipe``, ``DiffAugment``,
            ``DataScaling``, ...) to install on a module without ``augment_pipe``.
        discriminator_attr: attribute of the module holding D (foreign path), or a dotted path to a nested
            one (``"loss.discriminator"``). Default: the first of the names above on the module, else the
            one submodule at any depth with such a name.
        image_key: key of the images in dict batches, and keyword of D's image argument when D is
            called with keywords only.
    """

    def __init__(
        self,
        every_n_batches: int = 4,
        preset: str = "bgc",
        pipe: nn.Module | None = None,
        discriminator_attr: str | None = None,
        image_key: str | None = None,
    ) -> None:
        self.every_n_batches = check_positive_int("every_n_batches", every_n_batches)
        self.preset = check_choice("preset", preset, AUGMENT_PRESETS)
        self.discriminator_attr = (
            None if discriminator_attr is None else _check_name("discriminator_attr", discriminator_attr)
        )
        self.image_key = None if image_key is None else _check_name("image_key", image_key)
        if pipe is not None:
            _check_pipe(pipe, "pipe")
        self._pipe_given = pipe is not None
        self._foreign_pipe: nn.Module | None = pipe  # built in `setup` when the foreign path needs one

        self._rt: float | None = None
        self._rt_clean: float | None = None
        self._images_at_last_step: int | None = None  # the run's images when p was last set
        self._progress: TrainingProgress | None = None  # the Trainer's count (``setup``)
        self._warned_no_signs = False
        self._clean_signs = SignAccumulator()  # the clean reading's accumulator (its p is unused)
        self._rv: float | None = None
        self._gap: float | None = None
        # the held-out window's sums of D's raw outputs and counts: clean training reals, held-out reals,
        # generated images
        self._raw_scores = torch.zeros(6, dtype=torch.float64)
        self._rv_window = torch.zeros(6, dtype=torch.float64)  # the same, summed over ranks and decayed
        self._heldout: Any = None  # the datamodule's validation loader (``setup``), and its iterator
        self._heldout_batches: Any = None

        self._pipe: nn.Module | None = None
        self._foreign: ForeignDiscriminator | None = None  # the hook on D, on the foreign path

    # ------------------------------------------------------------------ what subclasses say

    reads_clean_reals: bool = False
    """Whether :meth:`next_strength` needs ``rt_clean``: D is then run, under ``no_grad``, on the clean
    reals of every ``every_n_batches``-th batch (the module's ``score_reals`` on the native path)."""

    reads_heldout_reals: bool = False
    """Whether :meth:`next_strength` needs ``gap`` (or ``rv``): at the end of every interval D also scores
    the batch's clean reals and a batch of held-out reals (the datamodule's validation data), un-augmented
    (native path only: the module's ``score_reals``)."""

    reads_generated_images: bool = False
    """Whether :meth:`next_strength` needs ``rv``: as :attr:`reads_heldout_reals`, and D also scores a
    batch of the training generator's images (native path only: the module's ``score_fakes``)."""

    def next_strength(self, p: float, reading: StrengthReading) -> float:
        """The strength after an interval, from the current ``p`` and what D said during it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public state

    @property
    def p(self) -> float | None:
        """The current strength, read from the pipe's ``p`` buffer (``None`` before ``setup``)."""
        return None if self._pipe is None else float(self._pipe.p)

    @property
    def rt(self) -> float | None:
        """The latest ``r_t`` on augmented reals (``None`` before the first reading)."""
        return self._rt

    @property
    def rt_clean(self) -> float | None:
        """The latest ``r_t`` on clean reals (``None`` unless :attr:`reads_clean_reals`)."""
        return self._rt_clean

    @property
    def rv(self) -> float | None:
        """The latest ``r_v`` (``None`` unless :attr:`reads_generated_images`)."""
        return self._rv

    @property
    def gap(self) -> float | None:
        """The latest held-out gap (``None`` unless :attr:`reads_heldout_reals`)."""
        return self._gap

    @property
    def images_total(self) -> int:
        """Training images, all ranks together, when ``p`` was last set (0 before the first step)."""
        return self._images_at_last_step or 0

    @property
    def pipe(self) -> nn.Module | None:
        """The pipe whose ``p`` is set (known after ``setup``)."""
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
        """The counters and readings, plus the state of the pipe it owns on the foreign path (its ``p``)."""
        state: dict[str, Any] = {
            "rt": self._rt,
            "rt_clean": self._rt_clean,
            "rv": self._rv,
            "gap": self._gap,
            "rv_window": self._rv_window.tolist(),
            "images_at_last_step": self._images_at_last_step,
        }
        if self.is_foreign:
            state["pipe"] = self._foreign_pipe.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rt = state_dict.get("rt")
        self._rt_clean = state_dict.get("rt_clean")
        self._rv = state_dict.get("rv")
        self._gap = state_dict.get("gap")
        self._rv_window = torch.tensor(state_dict.get("rv_window", [0.0] * 6), dtype=torch.float64)
        self._images_at_last_step = state_dict.get("images_at_last_step")
        if "pipe" in state_dict:
            self._require_foreign_pipe().load_state_dict(state_dict["pipe"])

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._progress = training_progress(trainer, self.image_key)
        self._remove_hook()
        self._foreign = None
        if hasattr(pl_module, "augment_pipe"):
            self._pipe = self._module_pipe(pl_module)
            if self.reads_clean_reals and not callable(getattr(pl_module, "score_reals", None)):
                raise ValueError(
                    f"{type(self).__name__} reads D on clean reals, and `{type(pl_module).__name__}` owns "
                    "`augment_pipe` but has no `score_reals(images, labels)` returning D's logits for "
                    "un-augmented images; add that method, or choose a reading of augmented reals "
                    "(e.g. `heuristic='rt'`)."
                )
            if self.reads_heldout_reals:
                self._heldout = self._heldout_loader(trainer, pl_module)
            return
        if self.reads_heldout_reals:
            raise ValueError(
                f"{type(self).__name__} reads D on held-out reals, which needs D's raw scores from the "
                f"module (`{'`, `'.join(self._score_methods)}`); `{type(pl_module).__name__}` owns no "
                "`augment_pipe` (a foreign GAN): choose `heuristic='rt'` or `'rt_clean'`."
            )
        discriminator = find_discriminator(pl_module, self.discriminator_attr)
        self._pipe = self._require_foreign_pipe()
        self._foreign = ForeignDiscriminator(pl_module, discriminator, self._pipe, self.image_key)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start augmenting from the pipe's own ``p`` (a fresh run's, or the one a checkpoint restored)."""
        pipe = self._require_pipe()
        if self._images_at_last_step is None:  # a fresh run, or this callback added on resume
            self._images_at_last_step = self._require_progress().images(pl_module)
        self._clean_signs.to(pl_module.device)
        self._raw_scores = self._raw_scores.to(pl_module.device)
        if self._foreign is not None:
            pipe.to(pl_module.device)
            self._foreign.augmenting = True

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._split(batch)  # the batch's images must be found before the first training step
        if self._foreign is not None:
            self._foreign.start_batch(batch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._require_progress().batches % self.every_n_batches == 0:
            images, labels = self._split(batch)
            if self._foreign is not None:
                self._require_pipe().observe(self._foreign.real_scores(images, labels, augment=True))
            if self.reads_clean_reals:
                self._clean_signs.observe(self._clean_scores(pl_module, images, labels))
            if self.reads_heldout_reals:
                self._score_window(pl_module, images, labels)
            self._update(trainer, pl_module)
        p = self._require_pipe().p.detach().float()
        pl_module.log("ada/p", p, prog_bar=True, on_step=True, on_epoch=False, batch_size=1)
        readings = {"rt": self._rt, "rt_clean": self._rt_clean, "rv": self._rv, "gap": self._gap}
        for name, value in readings.items():
            if value is not None and not math.isnan(value):
                pl_module.log(f"ada/{name}", value, on_step=True, on_epoch=False, batch_size=1)

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

    def _module_pipe(self, pl_module: pl.LightningModule) -> nn.Module:
        """The native path's pipe, ``pl_module.augment_pipe``, checked."""
        module_name, own_pipe = type(pl_module).__name__, pl_module.augment_pipe
        if own_pipe is None:
            raise ValueError(
                f"`{module_name}.augment_pipe` is None: the module has its augmentation switched off, so "
                f"there is no strength to set. Give the module an augmentation (e.g. `augment: "
                f"{{class_path: AugmentPipe}}`) or remove {type(self).__name__}."
            )
        _check_pipe(own_pipe, f"{module_name}.augment_pipe")
        if self._pipe_given and self._foreign_pipe is not own_pipe:
            raise ValueError(
                f"{module_name} already owns `augment_pipe`, and `pipe` was given too; drop `pipe=` (the "
                "callback sets the module's own pipe)."
            )
        return own_pipe

    @torch.no_grad()
    def _clean_scores(
        self, pl_module: pl.LightningModule, images: torch.Tensor, labels: torch.Tensor | None
    ) -> torch.Tensor | list[torch.Tensor]:
        """D's scores for the batch's un-augmented reals: the module's ``score_reals``, or the foreign D."""
        if self._foreign is not None:
            return self._foreign.real_scores(images, labels, augment=False)
        return pl_module.score_reals(images, labels)

    def _heldout_loader(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Any:
        """The datamodule's validation loader: the held-out reals, checked to exist and to be enough."""
        needed = self._score_methods
        if not all(callable(getattr(pl_module, name, None)) for name in needed):
            raise ValueError(
                f"{type(self).__name__} reads D on held-out reals, which needs `{type(pl_module).__name__}."
                f"{'` and `'.join(needed)}` (D's logits for un-augmented reals"
                f"{' and for the generator images' if self.reads_generated_images else ''}); add "
                f"{'them' if len(needed) > 1 else 'it'}, or choose `heuristic='rt'`."
            )
        loader, count = heldout_reals(trainer)
        if count < HELDOUT_MIN_IMAGES:
            raise ValueError(
                f"{type(self).__name__} reads D on held-out reals, the datamodule's validation data, which "
                f"holds {count} images (at least {HELDOUT_MIN_IMAGES}); hold some out of training (e.g. "
                "`data.val_fraction: 0.1`), or choose `heuristic='rt'` or `'rt_clean'`."
            )
        return loader

    @property
    def _score_methods(self) -> tuple[str, ...]:
        """The module's methods the held-out readings call."""
        return ("score_reals", "score_fakes") if self.reads_generated_images else ("score_reals",)

    @torch.no_grad()
    def _score_window(self, pl_module: pl.LightningModule, images: torch.Tensor, labels: Any) -> None:
        """Add D's raw outputs on the batch's clean reals, a held-out batch (and generated images)."""
        heldout = next(self._heldout_batches, None) if self._heldout_batches is not None else None
        if heldout is None:  # not started, or every held-out batch read: go round them again
            self._heldout_batches = iter(self._heldout)
            heldout = next(self._heldout_batches)
        heldout_images, heldout_labels = split_batch(heldout, self.image_key)
        heldout_labels = None if heldout_labels is None else heldout_labels.to(pl_module.device)
        groups = [
            pl_module.score_reals(images, labels),
            pl_module.score_reals(heldout_images.to(pl_module.device), heldout_labels),
        ]
        if self.reads_generated_images:
            groups.append(pl_module.score_fakes(images.shape[0], labels))
        for index, logits in enumerate(groups):
            self._raw_scores[2 * index] += logits.double().sum()
            self._raw_scores[2 * index + 1] += logits.numel()

    def _require_progress(self) -> TrainingProgress:
        if self._progress is None:
            raise RuntimeError(f"{type(self).__name__} has no progress: `setup(stage='fit')` has not run.")
        return self._progress

    def _require_pipe(self) -> nn.Module:
        if self._pipe is None:
            raise RuntimeError(f"{type(self).__name__} has no pipe: `setup(stage='fit')` has not run.")
        return self._pipe

    def _split(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        try:
            images, labels = split_batch(batch, self.image_key)
        except ValueError as error:
            raise ValueError(f"{type(self).__name__} cannot find the batch's images: {error}") from None
        return check_images(images, "batch images"), labels

    def _require_foreign_pipe(self) -> nn.Module:
        """The pipe of the foreign path: ``pipe=`` or an ``AugmentPipe(preset)``, built on first use."""
        if self._foreign_pipe is None:
            self._foreign_pipe = AugmentPipe(preset=self.preset)
        return self._foreign_pipe

    def _write_p(self, p: float) -> None:
        with torch.no_grad():
            self._require_pipe().p.fill_(p)

    def _update(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Sum the interval's readings over ranks (one reduction), ask the subclass for ``p``, write it."""
        sign_sum, count = self._require_pipe().pop_stats()
        clean_sum, clean_count = self._clean_signs.pop_stats()
        signs = [sign_sum, count, clean_sum, clean_count]
        local = torch.cat(
            [
                torch.stack([value.to(sign_sum.device, torch.float64) for value in signs]),
                self._raw_scores.to(sign_sum.device),
            ]
        )
        self._raw_scores.zero_()
        totals = trainer.strategy.reduce(local, reduce_op="sum").tolist()
        total_signs, total_count, total_clean, total_clean_count = totals[:4]
        self._rv_window = windowed_scores(self._rv_window, torch.tensor(totals[4:], dtype=torch.float64))
        train, heldout, fake = window_means(self._rv_window)
        images = self._require_progress().images(pl_module)  # all ranks already
        reading = StrengthReading(
            rt=measured_rt(total_signs, total_count),
            rt_clean=measured_rt(total_clean, total_clean_count),
            images_seen=images - (self._images_at_last_step or 0),
            images_total=images,
            rv=measured_rv(train, heldout, fake),
            gap=measured_gap(train, heldout),
        )
        self._images_at_last_step = images
        self._rt = reading.rt
        if self.reads_clean_reals:
            self._rt_clean = reading.rt_clean
        if self.reads_generated_images:
            self._rv = reading.rv
        if self.reads_heldout_reals:
            self._gap = reading.gap
        if total_count <= 0 and not self._warned_no_signs:
            self._warned_no_signs = True
            rank_zero_warn(
                f"{type(self).__name__}: the pipe observed no discriminator logits during the last "
                f"{self.every_n_batches} batches, so r_t cannot be measured. The module must call "
                "`self.augment_pipe.observe(real_logits)` on D's logits for augmented reals."
            )
        self._write_p(self.next_strength(float(self._require_pipe().p), reading))

    def _remove_hook(self) -> None:
        if self._foreign is not None:
            self._foreign.remove()


class FixedAugmentation(BaseAugmentationStrength):
    """Hold the pipe's own ``p`` all run, and read D's ``r_t`` the way the adaptive callback does.

    The paper's fixed-p baselines, Scale-GAN's constant scaling strength, or any augmentation at full
    strength (``DiffAugment(p=1)``) with ``r_t`` logged to watch over-fitting; on a module without
    ``augment_pipe`` it also installs the augmentation on D (the pipe at the ``p`` it was built with).
    Takes the arguments of :class:`BaseAugmentationStrength`; ``p`` is the pipe's (``AugmentPipe(p=0.2)``).

    Example:
        >>> callback = FixedAugmentation(pipe=AugmentPipe("bgc", p=0.2))
        >>> callback.next_strength(0.2, StrengthReading(rt=0.9, rt_clean=math.nan, images_seen=128,
        ...     images_total=1280))
        0.2
    """

    def next_strength(self, p: float, reading: StrengthReading) -> float:
        return p


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
