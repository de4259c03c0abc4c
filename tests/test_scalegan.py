"""Scale-GAN: the variance-based regulariser (pure functions) and the ScaleGAN Lightning module."""

from __future__ import annotations

import pytest
import torch

from lightning_genaug.models.scalegan.regularizers import output_variance, variance_penalty
from lightning_genaug.models.stylegan2.losses import r1_penalty


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear_discriminator(weight: torch.Tensor):
    def discriminator(images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return (images * weight).sum(dim=(1, 2, 3), keepdim=True) + 0.3  # (B, 1)

    return discriminator


@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0])
def test_output_variance_of_a_linear_discriminator_is_sigma_squared_w_squared(sigma: float) -> None:
    weight = torch.randn(1, 3, 4, 4, generator=_generator(1), dtype=torch.float64)
    images = torch.randn(20_000, 3, 4, 4, generator=_generator(2), dtype=torch.float64)
    variance = output_variance(_linear_discriminator(weight), images, sigma=sigma, generator=_generator(3))
    assert variance.shape == (20_000,)
    assert variance.mean().item() == pytest.approx(sigma**2 * weight.square().sum().item(), rel=0.05)


def test_more_pairs_lower_the_spread_of_the_estimate() -> None:
    weight = torch.randn(1, 1, 4, 4, generator=_generator(1))
    images = torch.zeros(4000, 1, 4, 4)
    discriminator = _linear_discriminator(weight)
    one, many = (
        output_variance(discriminator, images, sigma=0.1, num_pairs=pairs, generator=_generator(pairs))
        for pairs in (1, 8)
    )
    assert many.std() < 0.5 * one.std()
    assert many.mean().item() == pytest.approx(one.mean().item(), rel=0.1)


def test_variance_penalty_matches_r1_for_a_linear_discriminator() -> None:
    weight = torch.randn(1, 3, 4, 4, generator=_generator(1), dtype=torch.float64)
    images = torch.randn(20_000, 3, 4, 4, generator=_generator(2), dtype=torch.float64, requires_grad=True)
    discriminator = _linear_discriminator(weight)
    r1 = r1_penalty(images, discriminator(images, None))
    penalty = variance_penalty(discriminator, images.detach(), sigma=0.5, generator=_generator(3))
    assert torch.allclose(r1, weight.square().sum())
    assert penalty.mean().item() == pytest.approx(r1.mean().item(), rel=0.05)


def test_variance_penalty_approximates_r1_for_a_smooth_discriminator() -> None:
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)
    ).double()

    def discriminator(images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return network(images)

    images = torch.randn(8, 3, 2, 2, generator=_generator(2), dtype=torch.float64).repeat(1000, 1, 1, 1)
    r1 = r1_penalty(images.requires_grad_(), discriminator(images, None)).mean()
    penalty = variance_penalty(discriminator, images.detach(), sigma=1e-3, generator=_generator(3)).mean()
    assert penalty.item() == pytest.approx(r1.item(), rel=0.1)


def test_minimising_the_penalty_shrinks_the_discriminator_gradient() -> None:
    weight = torch.randn(1, 1, 4, 4, generator=_generator(1), dtype=torch.float64, requires_grad=True)
    images = torch.zeros(20_000, 1, 4, 4, dtype=torch.float64)
    penalty = variance_penalty(_linear_discriminator(weight), images, sigma=0.1, generator=_generator(3))
    (gradient,) = torch.autograd.grad(penalty.mean(), weight)
    # d|w|^2/dw = 2w: gradient descent on the penalty shrinks D's input gradient.
    expected = 2 * weight.detach().flatten()
    assert torch.nn.functional.cosine_similarity(gradient.flatten(), expected, dim=0) > 0.98


def test_labels_reach_the_discriminator() -> None:
    seen: list[torch.Tensor | None] = []

    def discriminator(images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        seen.append(labels)
        return images.mean(dim=(1, 2, 3))

    labels = torch.tensor([3, 1])
    output_variance(discriminator, torch.zeros(2, 1, 4, 4), labels, sigma=0.1, num_pairs=2)
    assert len(seen) == 4 and all(item is labels for item in seen)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"sigma": 0.0}, "sigma"), ({"sigma": 0.1, "num_pairs": 0}, "num_pairs")]
)
def test_invalid_regularizer_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        output_variance(lambda x, c: x.mean(dim=(1, 2, 3)), torch.zeros(2, 1, 2, 2), **kwargs)
