"""The torchmetrics classes give the numbers of the pure functions (the previous implementation)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torchmetrics.image import KernelInceptionDistance as TorchmetricsKID

from lightning_genaug.metrics import (
    FrechetInceptionDistance,
    InceptionScore,
    KernelInceptionDistance,
    PrecisionRecall,
    RealFeatureStatistics,
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)


def fixed_features(rows: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """Float32 features ``(rows, 12)`` like an extractor's, correlated and off-centre."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(12, 12, generator=torch.Generator().manual_seed(99))
    return (torch.randn(rows, 12, generator=generator) @ mixing + 3.0 + shift).float()


REAL, FAKE = fixed_features(300, seed=0), fixed_features(200, seed=1, shift=0.3)


def feed(metric, real: torch.Tensor | None, fake: torch.Tensor, batch: int = 64) -> None:
    """Update ``metric`` batch by batch, as an evaluation loop does."""
    for chunk in () if real is None else real.split(batch):
        metric.update(chunk, real=True)
    for chunk in fake.split(batch):
        metric.update(chunk, real=False)


def test_fid_matches_the_functional_value_to_1e_6():
    old = frechet_distance(*gaussian_statistics(REAL), *gaussian_statistics(FAKE))
    metric = FrechetInceptionDistance(feature_extractor=None, num_features=12)
    feed(metric, REAL, FAKE)
    assert float(metric.compute()) == pytest.approx(float(old), rel=1e-6)


def test_fid_against_cached_real_statistics_matches_and_survives_reset():
    statistics = RealFeatureStatistics(num_features=12, keep_features=True)
    for chunk in REAL.split(64):
        statistics.update(chunk)
    reference = statistics.compute()
    mu, sigma = gaussian_statistics(REAL)
    torch.testing.assert_close(reference.mu, mu)
    torch.testing.assert_close(reference.sigma, sigma)
    assert torch.equal(reference.features, REAL) and reference.num_images == 300

    metric = FrechetInceptionDistance(feature_extractor=None, num_features=12, reference=reference)
    feed(metric, None, FAKE)
    first = float(metric.compute())
    metric.reset()
    feed(metric, None, FAKE)
    assert float(metric.compute()) == first
    assert first == pytest.approx(float(frechet_distance(mu, sigma, *gaussian_statistics(FAKE))), rel=1e-6)


def test_kid_is_exactly_the_functional_value_on_the_same_subsets():
    old = kernel_inception_distance(REAL, FAKE, 7, 50, generator=torch.Generator().manual_seed(5))
    metric = KernelInceptionDistance(feature_extractor=None, subsets=7, subset_size=50, seed=5)
    feed(metric, REAL, FAKE)
    new = metric.compute()
    assert float(new[0]) == float(old[0]) and float(new[1]) == float(old[1])


def test_torchmetrics_own_kid_draws_the_same_subsets_and_value():
    stock = TorchmetricsKID(feature=nn.Identity(), subsets=7, subset_size=50)
    feed(stock, REAL.double(), FAKE.double())
    torch.manual_seed(5)  # torchmetrics draws subsets from the global generator, in the same order
    stock_mean, stock_std = stock.compute()
    ours = kernel_inception_distance(REAL, FAKE, 7, 50, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(stock_mean, ours[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(stock_std, ours[1], rtol=1e-12, atol=1e-14)


def test_inception_score_and_precision_recall_are_the_functional_values():
    score = InceptionScore(feature_extractor=None, splits=4)
    for chunk in FAKE.split(64):
        score.update(chunk)
    assert [float(v) for v in score.compute()] == [float(v) for v in inception_score(FAKE, splits=4)]

    pr = PrecisionRecall(feature_extractor=None, k=3)
    feed(pr, REAL, FAKE)
    assert [float(v) for v in pr.compute()] == [float(v) for v in precision_recall(REAL, FAKE, k=3)]


def test_metrics_run_the_extractor_on_images():
    extractor = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    extractor.feature_dim = 5
    images = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(3)) * 2 - 1
    metric = FrechetInceptionDistance(feature_extractor=extractor)
    metric.update(images[:20], real=True)
    metric.update(images[20:], real=False)
    with torch.no_grad():
        features = extractor(images)
    expected = frechet_distance(*gaussian_statistics(features[:20]), *gaussian_statistics(features[20:]))
    assert float(metric.compute()) == pytest.approx(float(expected), rel=1e-6)


def test_fid_without_a_known_feature_size_is_a_clear_error():
    with pytest.raises(ValueError, match="num_features"):
        FrechetInceptionDistance(feature_extractor=nn.Flatten())


def test_kid_with_a_reference_without_features_is_a_clear_error():
    statistics = RealFeatureStatistics(num_features=12)
    statistics.update(REAL)
    with pytest.raises(ValueError, match="keep_features"):
        KernelInceptionDistance(feature_extractor=None, reference=statistics.compute())


class ValidatingModule(pl.LightningModule):
    """A plain module that logs our FID from its own validation_step, as in docs/metrics.md."""

    def __init__(self) -> None:
        super().__init__()
        self.fid = FrechetInceptionDistance(feature_extractor=None, num_features=12)

    def validation_step(self, batch, batch_idx):
        real, fake = batch
        self.fid.update(real, real=True)
        self.fid.update(fake, real=False)
        self.log("val/fid", self.fid, on_epoch=True)


def test_a_metric_logged_from_validation_step_gives_the_epoch_value(tmp_path):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(REAL[:200], FAKE), batch_size=50)
    trainer = pl.Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (result,) = trainer.validate(ValidatingModule(), loader, verbose=False)
    expected = frechet_distance(*gaussian_statistics(REAL[:200]), *gaussian_statistics(FAKE))
    assert result["val/fid"] == pytest.approx(float(expected), rel=1e-5)  # logged as float32
