"""FID, KID, IS, precision/recall and real-feature statistics as ``torchmetrics.Metric`` objects.

They are used like any torchmetric: ``update`` in ``validation_step``, ``self.log(name, metric)``
or ``compute()``/``reset()`` by hand, and the states are reduced over DDP ranks by torchmetrics
(sums for the Gaussian statistics, concatenation for kept features). FID, KID and IS subclass
torchmetrics' own classes (their states, ``update`` and synchronisation); their ``compute`` calls
the pure functions of :mod:`lightning_genaug.metrics.functional`, so the numbers are those of the
formulas stated there (see each ``compute`` for why). Precision/recall and the real-feature
statistics, which torchmetrics lacks, are ``Metric`` subclasses with ``add_state``.

Inputs: images ``(N, C, H, W)`` in [-1, 1] (the project's convention) fed through a feature
extractor (``"inception-v3-compat"`` or any ``nn.Module``), or, with ``feature_extractor=None``,
features ``(N, D)`` already extracted.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.image import FrechetInceptionDistance as _TorchmetricsFID
from torchmetrics.image import InceptionScore as _TorchmetricsIS
from torchmetrics.image import KernelInceptionDistance as _TorchmetricsKID
from torchmetrics.utilities.data import dim_zero_cat

from lightning_genaug._checks import check_positive_int
from lightning_genaug.metrics.cache import RealStatistics
from lightning_genaug.metrics.extractors import build_feature_extractor, extract_features
from lightning_genaug.metrics.functional import (
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)

FeatureExtractor = str | nn.Module | None


def statistics_from_sums(
    feature_sum: torch.Tensor, cov_sum: torch.Tensor, num_samples: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance from running sums, the form in which the states sync over ranks.

    ``mu = S1 / n`` and ``sigma = (S2 - n mu mu^T) / (n - 1)`` with ``S1 = sum_i x_i`` and
    ``S2 = sum_i x_i x_i^T``; equal to :func:`~lightning_genaug.metrics.gaussian_statistics` up to
    float64 round-off.

    Args:
        feature_sum: ``(D,)``.
        cov_sum: ``(D, D)``.
        num_samples: ``n >= 2``.

    Returns:
        ``(mu, sigma)``, shapes ``(D,)`` and ``(D, D)``, float64.

    >>> x = torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float64)
    >>> mu, sigma = statistics_from_sums(x.sum(0), x.T @ x, 2)
    >>> mu.tolist(), sigma.tolist()
    ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    n = int(num_samples)
    if n < 2:
        raise ValueError(f"Gaussian statistics need at least 2 samples, got {n}; update with more samples.")
    mu = feature_sum.to(torch.float64) / n
    sigma = (cov_sum.to(torch.float64) - n * torch.outer(mu, mu)) / (n - 1)
    return mu, sigma


class FeatureInput(nn.Module):
    """What the torchmetrics classes call as their ``feature`` network: images -> float64 features.

    Args:
        feature_extractor: ``"inception-v3-compat"``, an ``nn.Module`` returning ``(N, D)``, or
            ``None``: the inputs already are features ``(N, D)`` and pass through.
        output: ``"features"`` or ``"logits"`` (the Inception Score's class logits; for a module
            without ``features_and_logits`` both are its output).
        weights_path: local Inception weights (see :func:`resolve_inception_weights`).
        num_features: ``D``; read from the extractor's ``feature_dim`` or ``num_features`` when
            not given (needed by FID to allocate its states).

    Shape:
        - Input: images ``(N, C, H, W)`` in [-1, 1], or features ``(N, D)`` when the extractor is ``None``.
        - Output: ``(N, D)`` float64.
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractor,
        output: str = "features",
        weights_path: str | os.PathLike | None = None,
        num_features: int | None = None,
    ) -> None:
        super().__init__()
        self.extractor = (
            None if feature_extractor is None else build_feature_extractor(feature_extractor, weights_path)
        )
        if self.extractor is not None:
            self.extractor.eval().requires_grad_(False)
        self.output = output
        if num_features is None and self.extractor is not None:
            fallback = getattr(self.extractor, "num_features", None)
            num_features = getattr(self.extractor, "feature_dim", fallback)
        self.num_features = None if num_features is None else check_positive_int("num_features", num_features)

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.extractor is None:
            if inputs.ndim != 2:
                raise ValueError(
                    f"With `feature_extractor=None` the metric is updated with features (N, D), got shape "
                    f"{tuple(inputs.shape)}; pass images together with a `feature_extractor`."
                )
            return inputs.to(torch.float64)
        features, logits = extract_features(self.extractor, inputs)
        return (logits if self.output == "logits" else features).to(torch.float64)


def _required_num_features(feature: FeatureInput) -> int:
    if feature.num_features is None:
        raise ValueError(
            "FrechetInceptionDistance needs the feature size D: pass `num_features=` or give the extractor "
            "a `feature_dim` attribute."
        )
    return feature.num_features


def _quiet_init(init: Any, *args: Any, **kwargs: Any) -> None:
    """Run a torchmetrics constructor without its "will save all extracted features" notice (documented)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        init(*args, **kwargs)


class FrechetInceptionDistance(_TorchmetricsFID):
    """FID on our extractors and [-1, 1] images: torchmetrics' FID states, our Fréchet computation.

    ``update(inputs, real)`` adds images (or features) to the real or generated statistics, kept as
    float64 sums reduced over ranks by torchmetrics. Real statistics may instead come from a
    cache (``reference=``), which then stays fixed across ``reset()``.

    ``compute`` uses :func:`~lightning_genaug.metrics.frechet_distance` (two symmetric
    eigendecompositions) instead of torchmetrics' ``eigvals(sigma1 @ sigma2)``: the same value to
    round-off, not slower (1.25x faster at D = 2048 on an idle CPU, docs/performance.md), and free
    of the complex round-off of a non-symmetric eigensolver on rank-deficient covariances.

    Args:
        feature_extractor: see :class:`FeatureInput`.
        feature_extractor_weights_path: local Inception weights file.
        num_features: feature size ``D`` when the extractor does not expose ``feature_dim``.
        reference: cached real statistics used instead of the ``real=True`` updates.
        reset_real_features: whether ``reset()`` also clears the real statistics.
        kwargs: ``torchmetrics.Metric`` options (``sync_on_compute``, ``process_group``, ...).

    Example:
        >>> fid = FrechetInceptionDistance(feature_extractor=None, num_features=2)
        >>> fid.update(torch.tensor([[0.0, 0.0], [2.0, 2.0]]), real=True)
        >>> fid.update(torch.tensor([[1.0, 1.0], [3.0, 3.0]]), real=False)
        >>> round(float(fid.compute()), 6)
        2.0
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractor = "inception-v3-compat",
        feature_extractor_weights_path: str | os.PathLike | None = None,
        num_features: int | None = None,
        reference: RealStatistics | None = None,
        reset_real_features: bool = True,
        **kwargs: Any,
    ) -> None:
        feature = FeatureInput(feature_extractor, "features", feature_extractor_weights_path, num_features)
        _required_num_features(feature)
        super().__init__(feature=feature, reset_real_features=reset_real_features, normalize=False, **kwargs)
        self.reference = reference

    def compute(self) -> torch.Tensor:
        """The squared Fréchet distance between the real (or reference) and generated Gaussians, float64."""
        fake_mu, fake_sigma = statistics_from_sums(
            self.fake_features_sum, self.fake_features_cov_sum, self.fake_features_num_samples
        )
        if self.reference is not None:
            real_mu, real_sigma = self.reference.mu.to(fake_mu), self.reference.sigma.to(fake_mu)
        else:
            real_mu, real_sigma = statistics_from_sums(
                self.real_features_sum, self.real_features_cov_sum, self.real_features_num_samples
            )
        return frechet_distance(real_mu, real_sigma, fake_mu, fake_sigma)


def _reference_features(reference: RealStatistics | None, name: str) -> torch.Tensor | None:
    if reference is not None and reference.features is None:
        raise ValueError(
            f"{name} needs the real features themselves, but `reference` holds only their mean and "
            "covariance; build it with `keep_features=True`."
        )
    return None if reference is None else reference.features


class KernelInceptionDistance(_TorchmetricsKID):
    """KID on our extractors: torchmetrics' KID states and ``update``, subsets drawn from ``seed``.

    The real and generated features are kept (concatenated over ranks in rank order, so a
    contiguous split of the data over ranks reproduces the single-process order). ``compute``
    calls :func:`~lightning_genaug.metrics.kernel_inception_distance` with a generator seeded by
    ``seed``: the same subsets as torchmetrics' own ``compute`` under ``torch.manual_seed(seed)``,
    and the same value (checked by a test), but reproducible without touching the global RNG.

    Args:
        feature_extractor: see :class:`FeatureInput`.
        feature_extractor_weights_path: local Inception weights file.
        subsets: number of random subsets.
        subset_size: rows per subset.
        seed: seed of the subset draws.
        reference: cached real statistics with features, used instead of the ``real=True`` updates.
        reset_real_features: whether ``reset()`` also clears the real features.
        kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractor = "inception-v3-compat",
        feature_extractor_weights_path: str | os.PathLike | None = None,
        subsets: int = 100,
        subset_size: int = 1000,
        seed: int = 0,
        reference: RealStatistics | None = None,
        reset_real_features: bool = True,
        **kwargs: Any,
    ) -> None:
        feature = FeatureInput(feature_extractor, "features", feature_extractor_weights_path)
        _quiet_init(
            super().__init__,
            feature=feature,
            subsets=subsets,
            subset_size=subset_size,
            reset_real_features=reset_real_features,
            normalize=False,
            **kwargs,
        )
        # torchmetrics registers these lists without a reduction, which gathers them item by item
        # (interleaving ranks, and hanging when ranks hold different numbers of batches): concatenate.
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")
        self.seed = seed
        _reference_features(reference, "KernelInceptionDistance")
        self.reference = reference

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of the unbiased MMD^2 over the subsets, float64."""
        real = _reference_features(self.reference, "KernelInceptionDistance")
        real = dim_zero_cat(self.real_features) if real is None else real
        fake = dim_zero_cat(self.fake_features)
        generator = torch.Generator().manual_seed(self.seed)
        return kernel_inception_distance(real.to(fake), fake, self.subsets, self.subset_size, generator)


class InceptionScore(_TorchmetricsIS):
    """Inception Score on our extractors: torchmetrics' state and ``update``, our ``compute``.

    torchmetrics' ``compute`` shuffles the samples with the global RNG before splitting and
    reports the unbiased standard deviation; ours splits in update order and reports the
    population standard deviation (:func:`~lightning_genaug.metrics.inception_score`), as before.

    Args:
        feature_extractor: ``"inception-v3-compat"`` (its 1008 class logits), a module whose output
            is read as class logits, or ``None`` (the inputs are logits ``(N, K)``).
        feature_extractor_weights_path: local Inception weights file.
        splits: number of chunks.
        kwargs: ``torchmetrics.Metric`` options.
    """

    def __init__(
        self,
        feature_extractor: FeatureExtractor = "inception-v3-compat",
        feature_extractor_weights_path: str | os.PathLike | None = None,
        splits: int = 10,
        **kwargs: Any,
    ) -> None:
        feature = FeatureInput(feature_extractor, "logits", feature_extractor_weights_path)
        _quiet_init(super().__init__, feature=feature, splits=check_positive_int("splits", splits), **kwargs)
        self.add_state("features", [], dist_reduce_fx="cat")  # rank order, see KernelInceptionDistance

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of the score over the splits, float64."""
        return inception_score(dim_zero_cat(self.features), self.splits)


class PrecisionRecall(Metric):
    """Improved precision and recall (Kynkaanniemi et al. 2019) as a torchmetric.

    Keeps the real and generated features (``dist_reduce_fx="cat"``) and computes
    :func:`~lightning_genaug.metrics.precision_recall` on them.

    Args:
        feature_extractor: see :class:`FeatureInput`.
        feature_extractor_weights_path: local Inception weights file.
        k: neighbourhood size (3 in the paper).
        reference: cached real statistics with features, used instead of the ``real=True`` updates.
        reset_real_features: whether ``reset()`` also clears the real features.
        kwargs: ``torchmetrics.Metric`` options.

    Example:
        >>> metric = PrecisionRecall(feature_extractor=None, k=1)
        >>> metric.update(torch.tensor([[0.0], [1.0], [2.0]]), real=True)
        >>> metric.update(torch.tensor([[0.5], [1.5], [9.0]]), real=False)
        >>> tuple(round(float(value), 3) for value in metric.compute())  # (precision, recall)
        (0.667, 1.0)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        feature_extractor: FeatureExtractor = "inception-v3-compat",
        feature_extractor_weights_path: str | os.PathLike | None = None,
        k: int = 3,
        reference: RealStatistics | None = None,
        reset_real_features: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.feature = FeatureInput(feature_extractor, "features", feature_extractor_weights_path)
        self.k = check_positive_int("k", k)
        _reference_features(reference, "PrecisionRecall")
        self.reference = reference
        self.reset_real_features = reset_real_features
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, inputs: torch.Tensor, real: bool) -> None:
        """Add images ``(N, C, H, W)`` (or features ``(N, D)``) to the real or generated set."""
        features = self.feature(inputs)
        (self.real_features if real else self.fake_features).append(features)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(precision, recall)``, float64 in [0, 1]."""
        real = _reference_features(self.reference, "PrecisionRecall")
        real = dim_zero_cat(self.real_features) if real is None else real
        fake = dim_zero_cat(self.fake_features)
        return precision_recall(real.to(fake), fake, k=self.k)

    def reset(self) -> None:
        """Clear the generated features, and the real ones if ``reset_real_features``."""
        real = self.real_features
        super().reset()
        if not self.reset_real_features:
            self.real_features = real


class RealFeatureStatistics(Metric):
    """Running statistics of real features, synced over ranks, computed into :class:`RealStatistics`.

    This is what the real-statistics cache stores: the float64 sums behind the mean and covariance
    (``dist_reduce_fx="sum"``) and, with ``keep_features``, the features themselves for KID and
    precision/recall (``"cat"``, in rank order).

    Args:
        num_features: feature size ``D``.
        keep_features: also keep the features.
        kwargs: ``torchmetrics.Metric`` options.
    """

    full_state_update = False

    def __init__(self, num_features: int, keep_features: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        dim = check_positive_int("num_features", num_features)
        self.keep_features = keep_features
        self.add_state("feature_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("cov_sum", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_samples", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("features", [], dist_reduce_fx="cat")

    def update(self, features: torch.Tensor) -> None:
        """Add features ``(N, D)``."""
        features = features.to(torch.float64)
        self.feature_sum += features.sum(dim=0)
        self.cov_sum += features.T @ features
        self.num_samples += features.shape[0]
        if self.keep_features:
            self.features.append(features.to(torch.float32))

    def compute(self) -> RealStatistics:
        """Mean, covariance (and features) of everything seen on every rank."""
        mu, sigma = statistics_from_sums(self.feature_sum, self.cov_sum, self.num_samples)
        features = dim_zero_cat(self.features).cpu() if self.keep_features else None
        return RealStatistics(mu.cpu(), sigma.cpu(), features, int(self.num_samples))
