"""GenerativeMetrics: FID / KID / IS / precision-recall of a generator at intervals, logged for monitoring."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric
from tqdm.auto import tqdm

from lightning_genaug._checks import MismatchError, check_choice, check_images, check_positive_int, check_same
from lightning_genaug.callbacks._progress import TrainingProgress, images_shown, training_progress
from lightning_genaug.data.batch import split_batch
from lightning_genaug.metrics.cache import RealStatistics
from lightning_genaug.metrics.extractors import (
    INCEPTION_NAME,
    build_feature_extractor,
    extract_features,
    resolve_inception_weights,
)
from lightning_genaug.metrics.options import MetricOption, RealData, metric_options
from lightning_genaug.metrics.real_statistics import RealImages, shard
from lightning_genaug.runs import log_step

log = logging.getLogger(__name__)


def generator_sample(callback: Callback, pl_module: nn.Module) -> Any:
    """``pl_module.sample``, the generator protocol of every image callback; else a ``TypeError`` naming both.

    >>> generator_sample(Callback(), nn.Linear(1, 1))
    Traceback (most recent call last):
    ...
    TypeError: Callback needs the generator protocol: Linear must define `sample(n, labels=None, ...
    """
    sample = getattr(pl_module, "sample", None)
    if not callable(sample):
        raise TypeError(
            f"{type(callback).__name__} needs the generator protocol: {type(pl_module).__name__} must define "
            "`sample(n, labels=None, generator=None) -> Tensor (n, C, H, W)` in [-1, 1]."
        )
    return sample


def generator_num_classes(pl_module: nn.Module) -> int:
    """Classes a conditional generator samples from (0 for an unconditional one).

    Read from the module's ``num_classes`` or ``c_dim`` attribute, else from the same names in its
    ``hparams``.
    """
    hparams = getattr(pl_module, "hparams", {})
    for source in (pl_module, hparams):
        for name in ("num_classes", "c_dim"):
            value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
            if isinstance(value, int) and value > 0:
                return value
    return 0


def _sample(pl_module: nn.Module, count: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` images ``(count, C, H, W)`` from the generator protocol, uniform labels if conditional."""
    labels = None
    if num_classes > 0:
        labels = torch.randint(num_classes, (count,), generator=generator, device=generator.device)
    images = pl_module.sample(count, labels=labels, generator=generator)
    check_images(images, "sample()")
    if images.shape[0] != count:
        raise ValueError(f"{type(pl_module).__name__}.sample({count}) returned {images.shape[0]} images.")
    return images


class GenerativeMetrics(Callback):
    """Evaluates a generator with FID, KID, IS and precision/recall and logs the results.

    A thin scheduler around the torchmetrics of :mod:`lightning_genaug.metrics.image_metrics`:
    it decides when to evaluate, draws images from the module, extracts their features once per
    batch, feeds them to the metrics and logs what they compute. The module is used only through
    the generator protocol ``pl_module.sample(n, labels=None, generator=None) -> (n, C, H, W)`` in
    [-1, 1] (EMA weights are the module's business). Conditional modules (``num_classes`` or
    ``c_dim`` > 0) get uniformly drawn labels. Real images come from ``real``
    (:class:`~lightning_genaug.metrics.options.RealData`; by default the run's training set); their
    statistics are computed once and cached on disk
    (:class:`~lightning_genaug.metrics.real_statistics.RealImages` reads, shares and caches them).

    The callback is composed like the package's modules: each metric's own options live in its
    object (:class:`~lightning_genaug.metrics.options.FID`, ``KID``, ``IS``, ``PR``; the strings
    ``"fid"``, ``"kid"``, ``"is"``, ``"pr"`` are those objects with their defaults) and everything
    about the real images in one ``RealData``. In YAML::

        - class_path: GenerativeMetrics
          init_args:
            metrics:
              - fid
              - class_path: KID
                init_args: {subsets: 50, subset_size: 500}
            num_gen: 5000
            real:
              num_images: 5000
              cache_dir: /data/real_stats

    Logged keys: ``metrics/fid``, ``metrics/kid`` (+ ``metrics/kid_std``), ``metrics/is``
    (+ ``metrics/is_std``), ``metrics/precision``, ``metrics/recall`` and ``kimg`` (the module's
    ``cur_nimg`` when it has one, as ``SampleGrid`` logs it, else the images this callback counted). During
    ``fit`` they go to ``trainer.callback_metrics`` (so ``ModelCheckpoint(monitor="metrics/fid",
    mode="min")`` and ``EarlyStopping`` see them) and to every logger at the run's step
    (:func:`~lightning_genaug.runs.log_step`: training batches, the step of Lightning's own rows);
    in ``trainer.validate`` / ``trainer.test`` they are logged with ``pl_module.log`` and returned
    in the results.

    The generated images are drawn in chunks of at most ``batch_size``, chunk ``j`` from its own
    seed (derived from ``seed``); chunks and real images are dealt to ranks in contiguous blocks,
    and the metrics' states are reduced by torchmetrics (sums, and concatenation in rank order).
    So every rank computes the same values, and, when ``num_gen >= world_size * batch_size``,
    the values of a single-process evaluation: the number of devices does not change them.

    Args:
        metrics: metric objects (``FID()``, ``KID(subsets, subset_size)``, ``IS(splits)``,
            ``PR(k)``) or their names ``"fid"``, ``"kid"``, ``"is"``, ``"pr"`` (the defaults), each
            at most once; one name or object alone also works.
        num_gen: generated images per evaluation (50k is the standard for FID; use fewer for
            quick checks and KID on small datasets).
        every_n_batches: evaluate every this many training batches (the unit of every callback here).
        at_fit_end: also evaluate when fitting ends (unless the last evaluation was at that point).
        feature_extractor: ``"inception-v3-compat"`` (torch-fidelity's FID Inception; its weights
            from ``$LIGHTNING_GENAUG_INCEPTION_WEIGHTS``, else torch-fidelity's hub cache, downloaded
            there once in ``setup``, never in the constructor, with a clear error offline; a variable
            that names no file is an error at construction), an
            :class:`~lightning_genaug.metrics.InceptionV3Compat` given its ``weights_path`` (a local
            file), or any ``nn.Module`` mapping images ``(N, C, H, W)`` in [-1, 1] to ``(N, D)``
            features. A custom module receives the images unchanged; for ``IS`` its output is read as
            class logits.
        real: the real images and their statistics' cache
            (:class:`~lightning_genaug.metrics.options.RealData`); ``None``: ``RealData()``, the run's
            training set cached in the default folder.
        batch_size: images per generation / extraction batch.
        image_key: the image entry of dict batches (see ``split_batch``).
        seed: seed of the generated latents/labels and of the KID subsets.
        progress_bar: show a progress bar on rank 0 while evaluating.

    Raises:
        ValueError: an unknown metric name, a metric given twice, or ``num_gen`` below ``IS``'s splits.
        TypeError: a ``metrics`` item, ``feature_extractor`` or ``real`` of the wrong type.
    """

    MAX_ARGUMENTS = 10
    """The constructor's bound: options of one metric or of the real data belong to their objects."""

    def __init__(
        self,
        metrics: Sequence[str | MetricOption] | str | MetricOption = ("fid",),
        num_gen: int = 50_000,
        every_n_batches: int | None = None,
        at_fit_end: bool = True,
        feature_extractor: str | nn.Module = INCEPTION_NAME,
        real: RealData | None = None,
        batch_size: int = 64,
        image_key: str | None = None,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> None:
        super().__init__()
        self.metrics = metric_options(metrics)
        self.num_gen = check_positive_int("num_gen", num_gen)
        for option in self.metrics:
            option.check(num_gen)
        self.every_n_batches = (
            None if every_n_batches is None else check_positive_int("every_n_batches", every_n_batches)
        )
        self.at_fit_end = at_fit_end
        if isinstance(feature_extractor, str):
            feature_extractor = check_choice("feature_extractor", feature_extractor, [INCEPTION_NAME])
            # A variable that names no file fails now; the hub-cache download waits for `setup`.
            resolve_inception_weights(None, download=False)
        elif not isinstance(feature_extractor, nn.Module):
            raise TypeError(
                f"`feature_extractor` must be {INCEPTION_NAME!r} or an nn.Module (e.g. "
                f"InceptionV3Compat(weights_path=...)), got {type(feature_extractor).__name__}."
            )
        self.feature_extractor = feature_extractor
        if real is not None and not isinstance(real, RealData):
            raise TypeError(
                f"`real` must be a RealData or None, got {type(real).__name__}; wrap the images: "
                "`real=RealData(source=images)` (in YAML, `real: {source: ...}`)."
            )
        self.real = real if real is not None else RealData()
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.image_key = image_key
        self.seed = seed
        self.progress_bar = progress_bar

        self.last_eval_batches: int | None = None  # the run's batches at the last evaluation
        self._progress: TrainingProgress | None = None  # the Trainer's count (``setup``)
        self.last_values: dict[str, float] = {}
        self._extractor: nn.Module | None = None
        self._real_stats: RealStatistics | None = None

    # ----------------------------------------------------------------------------------- state
    @property
    def state_key(self) -> str:
        return self._generate_state_key(metrics=self.metric_names, num_gen=self.num_gen)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The configured metrics' names, e.g. ``("fid", "kid")``."""
        return tuple(option.name for option in self.metrics)

    def state_dict(self) -> dict[str, Any]:
        return {"last_eval_batches": self.last_eval_batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_eval_batches = state_dict.get("last_eval_batches")

    # ----------------------------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        generator_sample(self, pl_module)
        if stage == "fit":
            self._progress = training_progress(trainer, self.image_key)
        if self._extractor is None:
            self._extractor = build_feature_extractor(self.feature_extractor)
            self._extractor.eval().requires_grad_(False)
        self._check_extractor_agrees(trainer, pl_module)

    def _images_checked(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[str, tuple] | None:
        """``(whose images, (C, H, W))`` the extractor sees: ``real.source``'s, the data's, the model's."""
        source = self.real.source
        if isinstance(source, torch.Tensor) and source.ndim == 4:
            return "`real.source`", tuple(source.shape[1:])
        datamodule = getattr(trainer, "datamodule", None)
        shape = getattr(datamodule, "image_shape", None) if source is None else None
        if shape is not None:
            return f"{type(datamodule).__name__}'s images", tuple(int(size) for size in shape)
        hparams = getattr(pl_module, "hparams", {})
        channels, resolution = hparams.get("channels"), hparams.get("resolution")
        if isinstance(channels, int) and isinstance(resolution, int):
            return f"{type(pl_module).__name__}'s images", (channels, resolution, resolution)
        return None

    def _check_extractor_agrees(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop in ``setup``, in one line, when the extractor cannot take the run's images or classes.

        The extractor's declared ``in_channels`` (``ClassifierFeatures``) must be the images' channels;
        any extractor must run on two blank images of the run's shape (a shape error now, not after
        training); a declared ``num_classes`` must be the data's when the data is labelled.

        Raises:
            MismatchError: the extractor and the run's images or classes disagree.
        """
        found = self._images_checked(trainer, pl_module)
        if found is None:
            return
        whose, (channels, height, width) = found
        extractor = self._extractor
        name = f"GenerativeMetrics' `feature_extractor` ({type(extractor).__name__})"
        declared_channels = getattr(extractor, "in_channels", None)
        if isinstance(declared_channels, int):
            check_same(
                "Image channels",
                (f"{name} `in_channels`", declared_channels),
                (whose, channels),
                f"set the feature_extractor's `in_channels: {channels}` "
                "(`init_args.in_channels` in a config).",
            )
        parameter = next(extractor.parameters(), None)
        device = None if parameter is None else parameter.device
        blank = torch.zeros(2, channels, height, width, device=device)
        try:
            extract_features(extractor, blank)
        except RuntimeError as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise MismatchError(
                f"{name} cannot take {whose} ({channels}x{height}x{width}): {reason}; give it an extractor "
                f"for {channels}-channel {height}x{width} images."
            ) from error
        datamodule = getattr(trainer, "datamodule", None)
        data_classes = getattr(datamodule, "num_classes", None) if self.real.source is None else None
        data_classes = int(data_classes) if isinstance(data_classes, int | torch.Tensor) else None
        declared_classes = getattr(extractor, "num_classes", None)
        if isinstance(declared_classes, int) and isinstance(data_classes, int) and data_classes > 0:
            check_same(
                "Classes",
                (f"{name} `num_classes`", declared_classes),
                (f"{type(datamodule).__name__}'s labels", data_classes),
                f"set the feature_extractor's `num_classes: {data_classes}` "
                "(`init_args.num_classes` in a config).",
            )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.every_n_batches is not None and self._require_progress().batches % self.every_n_batches == 0:
            self._evaluate_while_fitting(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.at_fit_end and self.last_eval_batches != self._require_progress().batches:
            self._evaluate_while_fitting(trainer, pl_module)

    def _require_progress(self) -> TrainingProgress:
        if self._progress is None:
            raise RuntimeError("GenerativeMetrics has no progress: `setup(stage='fit')` has not run.")
        return self._progress

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._evaluate_and_log_with_module(trainer, pl_module)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._evaluate_and_log_with_module(trainer, pl_module)

    # --------------------------------------------------------------------------------- logging
    def _evaluate_while_fitting(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        values = self.evaluate(trainer, pl_module)
        progress = self._require_progress()
        self.last_eval_batches = progress.batches
        trainer.callback_metrics.update({name: torch.tensor(value) for name, value in values.items()})
        row = {**values, "kimg": progress.kimg(pl_module)}
        for logger in trainer.loggers:
            logger.log_metrics(row, step=log_step(trainer))  # the run's one step axis (training batches)

    def _evaluate_and_log_with_module(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, value in self.evaluate(trainer, pl_module).items():
            pl_module.log(name, value, sync_dist=False)

    # ------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Generate ``num_gen`` images, compare them with the real statistics, return the metric values.

        Returns:
            ``{"metrics/fid": ..., ...}`` for the configured metrics (same values on every rank).
        """
        if self._extractor is None:
            self.setup(trainer, pl_module, stage="evaluate")
        extractor = self._extractor.to(pl_module.device)
        real = self._real_statistics(trainer, pl_module, extractor)
        metrics = self._build_metrics(real, pl_module.device)
        self._feed_generated(trainer, pl_module, extractor, metrics)
        values = self._compute(metrics)
        self.last_values = values
        if trainer.is_global_zero:
            progress = self._progress
            kimg = images_shown(pl_module, 0) / 1000 if progress is None else progress.kimg(pl_module)
            log.info("kimg %.1f: %s", kimg, values)
        return values

    def _build_metrics(self, real: RealStatistics, device: torch.device) -> dict[str, Metric]:
        """One torchmetric per configured metric, fed features (extracted once) and ``real`` as reference."""
        return {
            option.name: option.build(real, self.num_gen, self.seed).to(device) for option in self.metrics
        }

    def _compute(self, metrics: dict[str, Metric]) -> dict[str, float]:
        """Each metric's synced value(s) under the logged names (``metrics/<name>``)."""
        values: dict[str, float] = {}
        for option in self.metrics:
            result = metrics[option.name].compute()
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(option.logged, results, strict=True):
                values[f"metrics/{name}"] = float(value)
        return values

    def _generation_bar(self, trainer: pl.Trainer, total: int, description: str) -> tqdm:
        return tqdm(
            total=total,
            desc=description,
            unit="img",
            leave=False,
            disable=not (self.progress_bar and trainer.is_global_zero),
        )

    def _generation_chunks(self, world_size: int) -> tuple[int, torch.Tensor]:
        """``(chunk size, one seed per chunk)``: the generated set, whatever rank draws each chunk."""
        if self.num_gen < world_size:
            raise ValueError(
                f"`num_gen` ({self.num_gen}) must be at least the number of processes ({world_size})."
            )
        chunk_size = min(self.batch_size, self.num_gen // world_size)  # every rank gets a chunk
        num_chunks = math.ceil(self.num_gen / chunk_size)
        seeds = torch.randint(2**62, (num_chunks,), generator=torch.Generator().manual_seed(self.seed))
        return chunk_size, seeds

    def _feed_generated(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        extractor: nn.Module,
        metrics: dict[str, Metric],
    ) -> None:
        chunk_size, seeds = self._generation_chunks(trainer.world_size)
        mine = shard(len(seeds), trainer.world_size, trainer.global_rank)
        num_classes = generator_num_classes(pl_module)
        generator = torch.Generator(device=pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with self._generation_bar(trainer, self.num_gen, "metrics: generated images") as bar:
                for chunk in mine:
                    count = min(chunk_size, self.num_gen - chunk * chunk_size)
                    images = _sample(pl_module, count, num_classes, generator.manual_seed(int(seeds[chunk])))
                    features, logits = extract_features(extractor, images)
                    for option in self.metrics:
                        if option.reads_logits:
                            metrics[option.name].update(logits)
                        else:
                            metrics[option.name].update(features, real=False)
                    bar.update(count * trainer.world_size)
        finally:
            pl_module.train(was_training)

    # ------------------------------------------------------------------------------- real data
    def _real_source(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> DataLoader | Dataset | torch.Tensor:
        """``real.source``, else the fit loop's training loader, else the datamodule's (or module's) one."""
        if self.real.source is not None:
            return self.real.source
        if isinstance(trainer.train_dataloader, DataLoader):
            return trainer.train_dataloader
        datamodule = getattr(trainer, "datamodule", None)
        owner = datamodule if datamodule is not None else pl_module
        try:
            return owner.train_dataloader()
        except Exception as first_error:  # any failure: retried once after setup("fit")
            if datamodule is None:
                raise RuntimeError(
                    "GenerativeMetrics found no real images: pass `real=RealData(source=...)` (a DataLoader, "
                    "Dataset or tensor) or attach a datamodule with a train_dataloader()."
                ) from first_error
            datamodule.setup("fit")  # outside fit (validate/test), the train split may not be set up
            return datamodule.train_dataloader()

    def _real_statistics(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, extractor: nn.Module
    ) -> RealStatistics:
        """The real statistics, computed (or loaded from the cache) at the first evaluation of the run."""
        if self._real_stats is None:
            real = RealImages(
                self._real_source(trainer, pl_module),
                images_of=lambda batch: split_batch(batch, self.image_key)[0],
                batch_size=self.batch_size,
                num_real=self.real.num_images,
            )
            self._real_stats = real.statistics(
                extractor,
                pl_module.device,
                keep_features=any(option.needs_real_features for option in self.metrics),
                cache=self.real.cache,
                fingerprint=self.real.fingerprint,
                rank=trainer.global_rank,
                world_size=trainer.world_size,
                any_rank=lambda flag: trainer.strategy.reduce_boolean_decision(flag, all=False),
                progress_bar=self.progress_bar and trainer.is_global_zero,
            )
        return self._real_stats
