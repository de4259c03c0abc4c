"""The classifier feature extractor used for FID/KID where Inception weights are unavailable."""

from __future__ import annotations

import pytest
import torch

from lightning_genaug.data import DigitsDataModule
from lightning_genaug.metrics.trained_extractor import (
    ClassifierFeatures,
    classifier_accuracy,
    train_classifier_features,
)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    dm = DigitsDataModule(resolution=8, max_images=600, val_fraction=0.25)
    dm.setup()
    train, val = dm.train_dataset, dm.val_dataset
    return train.images.float() / 127.5 - 1, train.labels, val.images.float() / 127.5 - 1, val.labels


def test_trained_features_classify_held_out_digits(digits):
    train_x, train_y, val_x, val_y = digits
    extractor = train_classifier_features(train_x, train_y, steps=60, batch_size=64, width=8, seed=0)
    assert classifier_accuracy(extractor, val_x, val_y) > 0.5  # chance is 0.1
    features = extractor(val_x[:5])
    assert features.shape == (5, 128) and not features.requires_grad
    assert not extractor.training


def test_training_is_reproducible_for_a_seed(digits):
    train_x, train_y, val_x, _ = digits
    first = train_classifier_features(train_x[:128], train_y[:128], steps=4, batch_size=64, width=4, seed=3)
    second = train_classifier_features(train_x[:128], train_y[:128], steps=4, batch_size=64, width=4, seed=3)
    torch.testing.assert_close(first(val_x[:8]), second(val_x[:8]))


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="labels"):
        train_classifier_features(torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=torch.int64))


def test_features_for_rgb_non_square_images():
    model = ClassifierFeatures(in_channels=3, num_classes=2, width=4, feature_dim=16).eval()
    assert model(torch.zeros(2, 3, 8, 12)).shape == (2, 16)
