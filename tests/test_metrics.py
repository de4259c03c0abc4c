"""The metric functions, extractors, statistics cache and bits-per-dim helpers (no Lightning)."""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from lightning_genaug.metrics import (
    INCEPTION_WEIGHTS_ENV,
    INCEPTION_WEIGHTS_URL,
    InceptionV3Compat,
    InceptionWeightsNotFoundError,
    RealStatistics,
    RealStatisticsCache,
    bits_per_dim_from_logits,
    dataset_fingerprint,
    extract_features,
    extractor_fingerprint,
    extractors,
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
    mmd2_unbiased,
    nats_to_bits_per_dim,
    precision_recall,
    resolve_inception_weights,
)


def statistics_of(features: torch.Tensor, keep_features: bool) -> RealStatistics:
    """The cache's entry for ``features`` ``(N, D)``, as the metrics build it."""
    mu, sigma = gaussian_statistics(features)
    return RealStatistics(mu, sigma, features if keep_features else None, int(features.shape[0]))


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The original FID formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def random_covariance(dim: int, rng: np.random.Generator) -> np.ndarray:
    factor = rng.normal(size=(dim, dim))
    return factor @ factor.T / dim + 0.1 * np.eye(dim)


class TestFrechetDistance:
    def test_matches_scipy_on_known_gaussians(self):
        rng = np.random.default_rng(0)
        mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
        sigma1, sigma2 = random_covariance(16, rng), random_covariance(16, rng)
        ours = frechet_distance(*map(torch.from_numpy, (mu1, sigma1, mu2, sigma2)))
        assert ours.dtype == torch.float64
        assert float(ours) == pytest.approx(scipy_frechet(mu1, sigma1, mu2, sigma2), rel=1e-8)

    def test_closed_form_for_commuting_covariances(self):
        # diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
        a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
        mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 2.0])
        expected = 9.0 + ((a.sqrt() - b.sqrt()) ** 2).sum()
        distance = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
        assert float(distance) == pytest.approx(float(expected))

    def test_fid_of_a_set_with_itself_is_zero_even_when_rank_deficient(self):
        features = torch.randn(20, 64, generator=torch.Generator().manual_seed(1))  # fewer rows than dims
        mu, sigma = gaussian_statistics(features)
        # round-off of the zero eigenvalues only: tiny compared with the trace (the scale of the terms)
        assert abs(float(frechet_distance(mu, sigma, mu, sigma))) < 1e-6 * float(torch.trace(sigma))

    def test_statistics_match_numpy(self):
        features = torch.randn(50, 5, generator=torch.Generator().manual_seed(2))
        mu, sigma = gaussian_statistics(features)
        np.testing.assert_allclose(mu.numpy(), features.double().numpy().mean(0), rtol=1e-12)
        np.testing.assert_allclose(sigma.numpy(), np.cov(features.double().numpy(), rowvar=False), rtol=1e-10)

    def test_shape_mismatch_is_a_clear_error(self):
        with pytest.raises(ValueError, match="sigma2"):
            frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(3), torch.eye(4))


class TestKID:
    def test_unbiased_estimator_equals_brute_force_formula(self):
        gen = torch.Generator().manual_seed(3)
        x, y = torch.randn(7, 4, generator=gen), torch.randn(9, 4, generator=gen) + 0.5
        xd, yd = x.double().numpy(), y.double().numpy()

        def k(a, b):
            return (a @ b / 4 + 1) ** 3

        within_x = sum(k(xd[i], xd[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
        within_y = sum(k(yd[i], yd[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
        across = sum(k(xd[i], yd[j]) for i in range(7) for j in range(9)) / (7 * 9)
        assert float(mmd2_unbiased(x, y)) == pytest.approx(within_x + within_y - 2 * across, rel=1e-10)

    def test_expectation_is_zero_for_one_distribution(self):
        gen = torch.Generator().manual_seed(4)
        pairs = [(torch.randn(20, 8, generator=gen), torch.randn(20, 8, generator=gen)) for _ in range(400)]
        estimates = torch.stack([mmd2_unbiased(x, y) for x, y in pairs])
        standard_error = estimates.std() / math.sqrt(len(estimates))
        assert abs(float(estimates.mean())) < 3 * float(standard_error)
        assert (estimates < 0).any()  # a biased (V-statistic) estimator would always be positive

    def test_kid_is_positive_for_shifted_distributions_and_reproducible(self):
        gen = torch.Generator().manual_seed(5)
        real, fake = torch.randn(200, 8, generator=gen), torch.randn(200, 8, generator=gen) + 1.0
        kid, std = kernel_inception_distance(real, fake, 10, 50, generator=torch.Generator().manual_seed(0))
        again, _ = kernel_inception_distance(real, fake, 10, 50, generator=torch.Generator().manual_seed(0))
        assert kid > 5 * std > 0
        assert kid == again

    def test_subset_size_larger_than_data_is_a_clear_error(self):
        with pytest.raises(ValueError, match="subset_size"):
            kernel_inception_distance(torch.randn(10, 2), torch.randn(10, 2), 2, 11)


class TestInceptionScore:
    def test_confident_uniform_predictions_score_the_number_of_classes(self):
        logits = 50.0 * torch.eye(10).repeat(8, 1)
        mean, std = inception_score(logits, splits=4)
        assert float(mean) == pytest.approx(10.0, rel=1e-6)
        assert float(std) == pytest.approx(0.0, abs=1e-6)

    def test_identical_predictions_score_one(self):
        logits = torch.randn(1, 10).repeat(40, 1)
        assert float(inception_score(logits, splits=2)[0]) == pytest.approx(1.0)

    def test_matches_the_definition(self):
        logits = torch.randn(30, 5, generator=torch.Generator().manual_seed(6)).double()
        p = logits.softmax(1).numpy()
        marginal = p.mean(0)
        expected = math.exp(float((p * (np.log(p) - np.log(marginal))).sum(1).mean()))
        assert float(inception_score(logits, splits=1)[0]) == pytest.approx(expected, rel=1e-10)


class TestPrecisionRecall:
    def test_same_set_has_full_precision_and_recall(self):
        features = torch.randn(50, 6, generator=torch.Generator().manual_seed(7))
        precision, recall = precision_recall(features, features.clone(), k=3)
        assert float(precision) == 1.0 and float(recall) == 1.0

    def test_far_apart_sets_have_zero_precision_and_recall(self):
        gen = torch.Generator().manual_seed(8)
        real, fake = torch.randn(40, 6, generator=gen), torch.randn(40, 6, generator=gen) + 100.0
        assert tuple(map(float, precision_recall(real, fake, batch_size=16))) == (0.0, 0.0)

    def test_collapsed_generator_has_precision_but_no_recall(self):
        gen = torch.Generator().manual_seed(9)
        real = torch.randn(200, 2, generator=gen)
        fake = 0.01 * torch.randn(200, 2, generator=gen)  # all samples at the mode
        precision, recall = precision_recall(real, fake, k=3)
        assert float(precision) > 0.95 and float(recall) < 0.2


class TestBitsPerDim:
    def test_uniform_8_bit_model_is_8_bits(self):
        assert float(nats_to_bits_per_dim(3 * 32 * 32 * math.log(256), 3 * 32 * 32)) == pytest.approx(8.0)

    def test_logits_helper_sums_per_image_and_divides_by_subpixels(self):
        logits = torch.randn(2, 4, 3, 2, 2, generator=torch.Generator().manual_seed(10))
        targets = torch.randint(4, (2, 3, 2, 2), generator=torch.Generator().manual_seed(11))
        nll = -logits.log_softmax(1).gather(1, targets.unsqueeze(1)).squeeze(1).flatten(1).sum(1)
        expected = nll / (math.log(2) * 12)
        torch.testing.assert_close(bits_per_dim_from_logits(logits, targets).float(), expected)


class TestInceptionWeights:
    def test_missing_file_error_names_the_option_env_var_and_url_fast(self, tmp_path, monkeypatch):
        monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        start = time.perf_counter()
        with pytest.raises(InceptionWeightsNotFoundError) as error:
            InceptionV3Compat()
        assert time.perf_counter() - start < 1.0
        message = str(error.value)
        assert "feature_extractor_weights_path" in message
        assert INCEPTION_WEIGHTS_ENV in message
        assert INCEPTION_WEIGHTS_URL in message

    def test_explicit_missing_path_is_named(self, tmp_path):
        with pytest.raises(InceptionWeightsNotFoundError, match="missing.pth"):
            resolve_inception_weights(tmp_path / "missing.pth")

    def test_missing_hub_file_is_downloaded_once_with_its_hash_checked(self, tmp_path, monkeypatch):
        payload = b"stand-in weights"  # its own hash prefix is made the expected one
        prefix = hashlib.sha256(payload).hexdigest()[:8]
        monkeypatch.setattr(extractors, "INCEPTION_WEIGHTS_SHA256_PREFIX", prefix)
        source = tmp_path / "mirror.pth"
        source.write_bytes(payload)
        monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        monkeypatch.setenv(extractors.INCEPTION_URL_ENV, source.as_uri())
        path = resolve_inception_weights()
        assert path == tmp_path / "torch_home" / "hub" / "checkpoints" / extractors.INCEPTION_WEIGHTS_FILENAME
        assert path.read_bytes() == payload
        source.unlink()  # the second call finds the cached file and does not download
        assert resolve_inception_weights() == path

    def test_a_download_with_the_wrong_hash_is_discarded(self, tmp_path, monkeypatch):
        source = tmp_path / "tampered.pth"
        source.write_bytes(b"not the inception weights")
        monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        monkeypatch.setenv(extractors.INCEPTION_URL_ENV, source.as_uri())
        with pytest.raises(InceptionWeightsNotFoundError, match="SHA-256"):
            resolve_inception_weights()
        assert not any((tmp_path / "torch_home").rglob("*.pth*"))

    def test_an_unreachable_url_gives_the_offline_error(self, tmp_path, monkeypatch):
        monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        monkeypatch.setenv(extractors.INCEPTION_URL_ENV, (tmp_path / "offline" / "weights.pth").as_uri())
        with pytest.raises(InceptionWeightsNotFoundError) as error:
            resolve_inception_weights()
        message = str(error.value)
        assert "Downloading" in message and "feature_extractor_weights_path" in message
        assert INCEPTION_WEIGHTS_ENV in message and INCEPTION_WEIGHTS_URL in message

    def test_an_explicit_missing_path_is_never_downloaded(self, tmp_path, monkeypatch):
        source = tmp_path / "mirror.pth"
        source.write_bytes(b"x")
        monkeypatch.setenv(extractors.INCEPTION_URL_ENV, source.as_uri())
        with pytest.raises(InceptionWeightsNotFoundError, match="missing.pth"):
            resolve_inception_weights(tmp_path / "missing.pth")
        assert not (tmp_path / "missing.pth").exists()

    def test_env_var_is_used(self, tmp_path, monkeypatch):
        weights = tmp_path / "inception.pth"
        weights.write_bytes(b"")
        monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(weights))
        assert resolve_inception_weights() == weights

    def test_loads_a_local_file_and_handles_grey_images(self, tmp_path, monkeypatch):
        from torch_fidelity import feature_extractor_inceptionv3 as tf_inception

        # a weights file of the right layout (random values): build the network without loading anything
        monkeypatch.setattr(tf_inception.torch, "load", lambda *args, **kwargs: {})
        monkeypatch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda *args: None)
        skeleton = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], "unused")
        monkeypatch.undo()
        weights = tmp_path / "inception.pth"
        torch.save(skeleton.state_dict(), weights)

        extractor = InceptionV3Compat(weights)
        assert extractor_fingerprint(extractor).startswith("inception-v3-compat-")
        assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())

        # what reaches torch-fidelity's network (running the 299x299 network is too slow for a unit test)
        received = []

        def network_stub(images):
            received.append(images)
            return torch.zeros(images.shape[0], 2048), torch.zeros(images.shape[0], 1008)

        extractor.network.forward = network_stub
        grey = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 2, 2)
        features, logits = extract_features(extractor, grey)
        assert features.shape == (1, 2048) and logits.shape == (1, 1008)
        assert received[0].dtype == torch.uint8 and received[0].shape == (1, 3, 2, 2)
        assert received[0][0, :, 0].tolist() == [[0, 128]] * 3  # round((x + 1) * 127.5)
        assert received[0][0, :, 1].tolist() == [[255, 255]] * 3  # clamped to [-1, 1]


class TestCache:
    def test_custom_extractor_fingerprint_depends_on_weights(self):
        torch.manual_seed(0)
        first = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        torch.manual_seed(0)
        same = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        other = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
        assert extractor_fingerprint(first) == extractor_fingerprint(same) != extractor_fingerprint(other)

    def test_dataset_fingerprint_changes_with_content(self):
        data = torch.zeros(30, 1, 4, 4)
        changed = data.clone()
        changed[29] = 1.0
        assert dataset_fingerprint(data) == dataset_fingerprint(data.clone()) != dataset_fingerprint(changed)

    def test_round_trip_and_key_mismatch(self, tmp_path):
        cache = RealStatisticsCache(tmp_path)
        stats = statistics_of(torch.randn(10, 3), keep_features=True)
        key = cache.make_key("data", "extractor", (1, 8, 8), None)
        cache.save(key, stats)
        loaded = cache.load(key, need_features=True)
        torch.testing.assert_close(loaded.sigma, stats.sigma)
        torch.testing.assert_close(loaded.features, stats.features)
        assert cache.load(cache.make_key("data", "extractor", (1, 16, 16), None), need_features=False) is None

    def test_entry_without_features_is_not_used_when_features_are_needed(self, tmp_path):
        cache = RealStatisticsCache(tmp_path)
        key = cache.make_key("data", "extractor", (1, 8, 8), 10)
        cache.save(key, statistics_of(torch.randn(10, 3), keep_features=False))
        assert cache.load(key, need_features=False) is not None
        assert cache.load(key, need_features=True) is None
