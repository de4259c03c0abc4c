"""Sample-quality metrics (torchmetrics ``Metric``s and pure functions), feature extractors, cached real
statistics and bits-per-dim (no Lightning)."""

from lightning_genaug.metrics.bpd import bits_per_dim_from_logits, nats_to_bits_per_dim, num_subpixels
from lightning_genaug.metrics.cache import (
    RealStatistics,
    RealStatisticsCache,
    dataset_fingerprint,
    default_cache_dir,
)
from lightning_genaug.metrics.extractors import (
    INCEPTION_URL_ENV,
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_URL,
    InceptionV3Compat,
    InceptionWeightsNotFoundError,
    build_feature_extractor,
    extract_features,
    extractor_fingerprint,
    resolve_inception_weights,
)
from lightning_genaug.metrics.functional import (
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    polynomial_kernel,
    precision_recall,
)
from lightning_genaug.metrics.image_metrics import (
    FeatureInput,
    FrechetInceptionDistance,
    InceptionScore,
    KernelInceptionDistance,
    PrecisionRecall,
    RealFeatureStatistics,
    statistics_from_sums,
)
from lightning_genaug.metrics.options import FID, IS, KID, PR, MetricOption, RealData, metric_options
from lightning_genaug.metrics.real_statistics import RealImages

__all__ = [
    "FID",
    "INCEPTION_URL_ENV",
    "INCEPTION_WEIGHTS_ENV",
    "INCEPTION_WEIGHTS_URL",
    "IS",
    "KID",
    "PR",
    "FeatureInput",
    "FrechetInceptionDistance",
    "InceptionScore",
    "InceptionV3Compat",
    "InceptionWeightsNotFoundError",
    "KernelInceptionDistance",
    "MetricOption",
    "PrecisionRecall",
    "RealData",
    "RealFeatureStatistics",
    "RealImages",
    "RealStatistics",
    "RealStatisticsCache",
    "bits_per_dim_from_logits",
    "build_feature_extractor",
    "dataset_fingerprint",
    "default_cache_dir",
    "extract_features",
    "extractor_fingerprint",
    "frechet_distance",
    "gaussian_statistics",
    "inception_score",
    "kernel_inception_distance",
    "metric_options",
    "mmd2_unbiased",
    "nats_to_bits_per_dim",
    "num_subpixels",
    "polynomial_kernel",
    "precision_recall",
    "resolve_inception_weights",
    "statistics_from_sums",
]
