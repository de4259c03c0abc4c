"""GenerativeMetrics: FID / KID / IS / precision-recall of a generator at intervals, logged for monitoring."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import Metric
from tqdm.auto import tqdm

from lightning_genaug._checks import MismatchError, check_choice, check_images, check_positive_int, check_same
from lightning_genaug.callbacks._progress import TrainingProgress, images_shown, training_progress
from lightning_genaug.data.batch import split_batch
from lightning_genaug.metrics.cache import RealStatistics, RealStatisticsCache, default_cache_dir
from lightning_genaug.metrics.extractors import (
    INCEPTION_NAME,
    build_feature_extractor,
    extract_features,
    resolve_inception_weights,
)
from lightning_genaug.metrics.image_metrics import (
    FrechetInceptionDistance,
    InceptionScore,
    KernelInceptionDistance,
    PrecisionRecall,
)
from lightning_genaug.metrics.real_statistics import RealImages, shard

log = logging.getLogger(__name__)

METRIC_CHOICES = ("fid", "kid", "is", "pr")


def _normalise_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ValueError(f"`metrics` must name at least one of {', '.join(METRIC_CHOICES)}, got {metrics!r}.")
    return tuple(dict.fromkeys(check_choice("metrics", name, METRIC_CHOICES) for name in names))


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
    ``c_dim`` > 0) get uniformly drawn labels. Real images come from ``real_data`` or, by default,
    the datamodule's training set; their statistics are computed once and cached on disk
    (:class:`~lightning_genaug.metrics.real_statistics.RealImages` reads, shares and caches them).

    Logged keys: ``metrics/fid``, ``metrics/kid`` (+ ``metrics/kid_std``), ``metrics/is``
    (+ ``metrics/is_std``), ``metrics/precision``, ``metrics/recall`` and ``kimg`` (the module's
    ``cur_nimg`` when it has one, as ``SampleGrid`` logs it, else the images this callback counted). During
    ``fit`` they go to ``trainer.callback_metrics`` (so ``ModelCheckpoint(monitor="metrics/fid",
    mode="min")`` and ``EarlyStopping`` see them) and to every logger at the current global step;
    in ``trainer.validate`` / ``trainer.test`` they are logged with ``pl_module.log`` and returned
    in the results.

    The generated images are drawn in chunks of at most ``batch_size``, chunk ``j`` from its own
    seed (derived from ``seed``); chunks and real images are dealt to ranks in contiguous blocks,
    and the metrics' states are reduced by torchmetrics (sums, and concatenation in rank order).
    So every rank computes the same values, and, when ``num_gen >= world_size * batch_size``,
    the values of a single-process evaluation: the number of devices does not change them.

    Args:
        metrics: any of ``"fid"``, ``"kid"``, ``"is"``, ``"pr"`` (precision and recall).
        num_gen: generated images per evaluation (50k is the standard for FID; use fewer for
            quick checks and KID on small datasets).
        num_real: real images used (``None``: the whole dataset).
        every_n_batches: evaluate every this many training batches (the unit of every callback here).
        at_fit_end: also evaluate when fitting ends (unless the last evaluation was at that point).
        feature_extractor: ``"inception-v3-compat"`` (torch-fidelity's FID Inception; its weights
            from a local file, else downloaded once) or any ``nn.Module`` mapping images
            ``(N, C, H, W)`` in [-1, 1] to ``(N, D)`` features. A custom module receives the images
            unchanged; for ``"is"`` its output is read as class logits.
        feature_extractor_weights_path: the Inception weights file; default
            ``$LIGHTNING_GENAUG_INCEPTION_WEIGHTS`` or torch-fidelity's hub cache. A path (or variable)
            that names no file is an error at construction; the hub cache file, when missing, is
            downloaded in ``setup`` (never in the constructor), with a clear error offline.
        real_data: a ``DataLoader``, a map-style ``Dataset`` or an image tensor ``(N, C, H, W)`` in
            [-1, 1]; ``None`` uses ``trainer.datamodule.train_dataloader()``.
        dataset_fingerprint: a string naming the real data for the cache (default: a hash of its
            length and a few items).
        cache_dir: folder of the real-statistics cache (default ``$LIGHTNING_GENAUG_CACHE`` or
            ``~/.cache/lightning_genaug/real_stats``).
        use_cache: set ``False`` to recompute the real statistics at the first evaluation of each run.
        batch_size: images per generation / extraction batch.
        image_key: the image entry of dict batches (see ``split_batch``).
        kid_subsets: KID subsets.
        kid_subset_size: images per KID subset (lowered to the available number, with a warning).
        is_splits: Inception Score splits.
        pr_k: neighbourhood size of precision/recall.
        seed: seed of the generated latents/labels and of the KID subsets.
        progress_bar: show a progress bar on rank 0 while evaluating.
    """

    def __init__(
        self,
        metrics: Sequence[str] | str = ("fid",),
        num_gen: int = 50_000,
        num_real: int | None = None,
        every_n_batches: int | None = None,
        at_fit_end: bool = True,
        feature_extractor: str | nn.Module = INCEPTION_NAME,
        feature_extractor_weights_path: str | os.PathLike | None = None,
        real_data: DataLoader | Dataset | torch.Tensor | None = None,
        dataset_fingerprint: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        batch_size: int = 64,
        image_key: str | None = None,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        pr_k: int = 3,
        seed: int = 0,
        progress_bar: bool = True,
    ) -> None:
        super().__init__()
        self.metrics = _normalise_metrics(metrics)
        self.num_gen = check_positive_int("num_gen", num_gen)
        self.num_real = None if num_real is None else check_positive_int("num_real", num_real)
        self.every_n_batches = (
            None if every_n_batches is None else check_positive_int("every_n_batches", every_n_batches)
        )
        self.at_fit_end = at_fit_end
        if isinstance(feature_extractor, str):
            feature_extractor = check_choice("feature_extractor", feature_extractor, [INCEPTION_NAME])
            # A path that names no file fails now; the hub-cache download waits for `setup`.
            resolve_inception_weights(feature_extractor_weights_path, download=False)
        elif not isinstance(feature_extractor, nn.Module):
            raise TypeError(
                f"`feature_extractor` must be {INCEPTION_NAME!r} or an nn.Module, got "
                f"{type(feature_extractor).__name__}."
            )
        self.feature_extractor = feature_extractor
        self.feature_extractor_weights_path = feature_extractor_weights_path
        self.real_data = real_data
        self.dataset_fingerprint = dataset_fingerprint
        self.cache = RealStatisticsCache(default_cache_dir() if cache_dir is None else cache_dir)
        self.use_cache = use_cache
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.image_key = image_key
        self.kid_subsets = check_positive_int("kid_subsets", kid_subsets)
        self.kid_subset_size = check_positive_int("kid_subset_size", kid_subset_size)
        self.is_splits = check_positive_int("is_splits", is_splits)
        if "is" in self.metrics and num_gen < is_splits:
            raise ValueError(
                f"`num_gen` ({num_gen}) must be >= `is_splits` ({is_splits}) for the Inception Score."
            )
        self.pr_k = check_positive_int("pr_k", pr_k)
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
        return self._generate_state_key(metrics=self.metrics, num_gen=self.num_gen)

    def state_dict(self) -> dict[str, Any]:
        return {"last_eval_batches": self.last_eval_batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_eval_batches = state_dict.get("last_eval_batches")

    # ----------------------------------------------------------------------------------- hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "sample", None)):
            raise TypeError(
                f"GenerativeMetrics needs the generator protocol: {type(pl_module).__name__} must define "
                "`sample(n, labels=None, generator=None) -> Tensor (n, C, H, W)` in [-1, 1]."
            )
        if stage == "fit":
            self._progress = training_progress(trainer, self.image_key)
        if self._extractor is None:
            weights_path = self.feature_extractor_weights_path
            self._extractor = build_feature_extractor(self.feature_extractor, weights_path)
            self._extractor.eval().requires_grad_(False)
        self._check_extractor_agrees(trainer, pl_module)

    def _images_checked(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[str, tuple] | None:
        """``(whose images, (C, H, W))`` the extractor will see: ``real_data``'s, the data's, the model's."""
        if isinstance(self.real_data, torch.Tensor) and self.real_data.ndim == 4:
            return "`real_data`", tuple(self.real_data.shape[1:])
        datamodule = getattr(trainer, "datamodule", None)
        shape = getattr(datamodule, "image_shape", None) if self.real_data is None else None
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
        data_classes = getattr(datamodule, "num_classes", None) if self.real_data is None else None
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
            logger.log_metrics(row, step=trainer.global_step)

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
        built: dict[str, Metric] = {}
        if "fid" in self.metrics:
            built["fid"] = FrechetInceptionDistance(None, num_features=real.mu.shape[0], reference=real)
        if "kid" in self.metrics:
            available = min(real.num_images, self.num_gen)
            subset_size = min(self.kid_subset_size, available)
            if subset_size < self.kid_subset_size:
                rank_zero_warn(
                    f"GenerativeMetrics: `kid_subset_size` {self.kid_subset_size} exceeds the available "
                    f"images; using {subset_size}."
                )
            built["kid"] = KernelInceptionDistance(
                None, subsets=self.kid_subsets, subset_size=subset_size, seed=self.seed, reference=real
            )
        if "is" in self.metrics:
            built["is"] = InceptionScore(None, splits=self.is_splits)
        if "pr" in self.metrics:
            built["pr"] = PrecisionRecall(None, k=self.pr_k, reference=real)
        return {name: metric.to(device) for name, metric in built.items()}

    @staticmethod
    def _compute(metrics: dict[str, Metric]) -> dict[str, float]:
        """Each metric's synced value(s) under the logged names."""
        names = {
            "fid": ("fid",),
            "kid": ("kid", "kid_std"),
            "is": ("is", "is_std"),
            "pr": ("precision", "recall"),
        }
        values: dict[str, float] = {}
        for key, metric in metrics.items():
            result = metric.compute()
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(names[key], results, strict=True):
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
                    for name, metric in metrics.items():
                        if name == "is":
                            metric.update(logits)
                        else:
                            metric.update(features, real=False)
                    bar.update(count * trainer.world_size)
        finally:
            pl_module.train(was_training)

    # ------------------------------------------------------------------------------- real data
    def _real_source(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> DataLoader | Dataset | torch.Tensor:
        """``real_data``, else the fit loop's training loader, else the datamodule's (or module's) one."""
        if self.real_data is not None:
            return self.real_data
        if isinstance(trainer.train_dataloader, DataLoader):
            return trainer.train_dataloader
        datamodule = getattr(trainer, "datamodule", None)
        owner = datamodule if datamodule is not None else pl_module
        try:
            return owner.train_dataloader()
        except Exception as first_error:  # any failure: retried once after setup("fit")
            if datamodule is None:
                raise RuntimeError(
                    "GenerativeMetrics found no real images: pass `real_data=` (a DataLoader, Dataset or "
                    "tensor) or attach a datamodule with a train_dataloader()."
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
                num_real=self.num_real,
            )
            self._real_stats = real.statistics(
                extractor,
                pl_module.device,
                keep_features="kid" in self.metrics or "pr" in self.metrics,
                cache=self.cache if self.use_cache else None,
                fingerprint=self.dataset_fingerprint,
                rank=trainer.global_rank,
                world_size=trainer.world_size,
                any_rank=lambda flag: trainer.strategy.reduce_boolean_decision(flag, all=False),
                progress_bar=self.progress_bar and trainer.is_global_zero,
            )
        return self._real_stats
