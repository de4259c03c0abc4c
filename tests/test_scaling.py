"""DataScaling: identity cases, the distribution of the drawn factors, noise, replay, gradients, state."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from lightning_genaug.augment.protocol import AugmentationStrength
from lightning_genaug.augment.scaling import DataScaling, diffusion_alphas_bar

N = 20_000  # draws for the statistical checks; binomial std of a fraction is <= 0.0036


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "scaling",
    [
        DataScaling("fixed", p=1.0, scale=1.0, noise_std=0.0),
        DataScaling("uniform", p=1.0, min_scale=1.0, noise_std=0.0),
        DataScaling("uniform", p=0.0, min_scale=0.1, noise_std=0.3),
        DataScaling("diffusion", p=1.0, apply_prob=0.0, noise_std=0.05),
    ],
    ids=["fixed-scale-1", "uniform-min-1", "p-0", "apply-prob-0"],
)
def test_scale_one_without_noise_is_the_identity(scaling: DataScaling) -> None:
    images = torch.randn(8, 3, 8, 8)
    assert torch.equal(scaling(images, _generator()), images)


def test_fixed_schedule_scales_a_fraction_p_by_scale() -> None:
    scaling = DataScaling("fixed", p=0.3, scale=0.25)
    params = scaling.sample_params((N, 1, 1, 1), generator=_generator())
    scaled = params["scale"] != 1.0
    assert params["scale"][scaled].unique().tolist() == [0.25]
    assert scaled.float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert torch.all(params["sigma"] == 0)


def test_uniform_schedule_draws_factors_uniform_between_min_scale_and_one() -> None:
    scaling = DataScaling("uniform", p=0.5, min_scale=0.25)
    scale = scaling.sample_params((N, 1, 1, 1), generator=_generator())["scale"]
    scaled = scale[scale != 1.0]
    assert scaled.numel() / N == pytest.approx(0.5, abs=0.015)
    assert scaled.min() >= 0.25
    assert stats.kstest(scaled.numpy(), stats.uniform(loc=0.25, scale=0.75).cdf).pvalue > 1e-3


def test_forward_applies_the_drawn_factors_per_sample() -> None:
    scaling = DataScaling("uniform", p=0.7, min_scale=0.1)
    params = scaling.sample_params((16, 3, 4, 4), generator=_generator())
    out = scaling(torch.ones(16, 3, 4, 4), params=params)
    assert torch.allclose(out, params["scale"].view(-1, 1, 1, 1).expand(16, 3, 4, 4))


def test_diffusion_schedule_follows_the_chain_length_set_by_p() -> None:
    scaling = DataScaling("diffusion", p=0.25, apply_prob=0.5, noise_std=0.05, t_min=10, t_max=1000)
    chain = 10 + round(0.25 * 990)
    assert int(scaling.chain_length()) == chain
    params = scaling.sample_params((N, 1, 1, 1), generator=_generator())
    t = params["t"]
    diffused = t > 0
    assert diffused.float().mean().item() == pytest.approx(0.5, abs=0.015)
    assert t[diffused].min() == 1 and t[diffused].max() == chain
    assert t[diffused].float().mean().item() == pytest.approx((chain + 1) / 2, rel=0.03)
    alphas_bar = diffusion_alphas_bar(1000).float()[t]
    assert torch.allclose(params["scale"], alphas_bar.sqrt())
    assert torch.allclose(params["sigma"], (1 - alphas_bar).sqrt() * 0.05)


def test_diffusion_strength_lengthens_the_chain() -> None:
    weak, strong = (DataScaling("diffusion", p=p, apply_prob=1.0) for p in (0.0, 1.0))
    assert int(weak.chain_length()) == 10 and int(strong.chain_length()) == 1000
    assert weak.sample_params((512, 1, 1, 1), generator=_generator())["scale"].min() > 0.99
    assert strong.sample_params((512, 1, 1, 1), generator=_generator())["scale"].min() < 0.1


def test_noise_has_the_configured_standard_deviation_on_scaled_samples_only() -> None:
    scaling = DataScaling("fixed", p=0.5, scale=0.5, noise_std=0.2)
    params = scaling.sample_params((64, 3, 16, 16), generator=_generator())
    out = scaling(torch.zeros(64, 3, 16, 16), _generator(1), params=params)
    scaled = params["scale"] != 1.0
    assert out[scaled].std().item() == pytest.approx(0.2, rel=0.05)
    assert torch.all(out[~scaled] == 0)


def test_same_generator_seed_replays_the_same_output() -> None:
    scaling = DataScaling("diffusion", p=0.5, noise_std=0.05)
    images = torch.randn(8, 3, 8, 8)
    assert torch.equal(scaling(images, _generator(3)), scaling(images, _generator(3)))
    assert not torch.equal(scaling(images, _generator(3)), scaling(images, _generator(4)))


def test_scaling_is_twice_differentiable() -> None:
    scaling = DataScaling("uniform", p=1.0, min_scale=0.2, noise_std=0.1).double()
    params = scaling.sample_params((2, 1, 3, 3), generator=_generator())
    images = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)

    def function(x: torch.Tensor) -> torch.Tensor:
        return scaling(x, _generator(5), params=params)

    assert torch.autograd.gradcheck(function, (images,))
    assert torch.autograd.gradgradcheck(function, (images,))


def test_strength_follows_the_ada_protocol_and_is_checkpointed() -> None:
    scaling = DataScaling("diffusion", p=0.1)
    assert isinstance(scaling, AugmentationStrength)
    scaling.observe(torch.tensor([1.0, -2.0, 3.0]))
    scaling.set_p(0.6)
    state = scaling.state_dict()
    assert "alphas_bar" not in state
    restored = DataScaling("diffusion", p=0.0)
    restored.load_state_dict(state)
    assert restored.p.item() == pytest.approx(0.6)
    assert [float(v) for v in restored.pop_stats()] == [1.0, 3.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schedule": "cosine"}, "schedule"),
        ({"scale": 0.0}, "scale"),
        ({"min_scale": 1.5}, "min_scale"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"apply_prob": 2.0}, "apply_prob"),
        ({"t_min": 20, "t_max": 10}, "t_min"),
        ({"p": 1.5}, "p"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataScaling(**kwargs)


def test_mismatched_params_raise_a_clear_error() -> None:
    scaling = DataScaling("fixed", p=1.0)
    with pytest.raises(ValueError, match="sample_params"):
        scaling(torch.zeros(4, 1, 2, 2), params=scaling.sample_params((3, 1, 2, 2)))


@pytest.mark.parametrize(
    ("real_logit", "direction"), [(1.0, 1), (-1.0, -1)], ids=["overfitting", "underfitting"]
)
def test_controller_moves_the_scaling_strength_with_rt(real_logit: float, direction: int) -> None:
    """r_t above the target (D confident on reals) strengthens the scaling; below it weakens it."""
    from lightning_genaug.callbacks.ada import next_p

    scaling = DataScaling("diffusion", p=0.5, apply_prob=0.5)
    chain_before = int(scaling.chain_length())
    scaling.observe(torch.full((64,), real_logit))
    sign_sum, count = scaling.pop_stats()
    rt = float(sign_sum) / float(count)
    new_p = next_p(float(scaling.p), rt, 64 * 4, target=0.6, speed_kimg=1.0, max_p=1.0)
    scaling.set_p(new_p)
    assert rt == real_logit
    assert float(scaling.p) == pytest.approx(0.5 + direction * 0.256)
    assert (int(scaling.chain_length()) - chain_before) * direction > 0
    assert float(scaling.pop_stats()[1]) == 0.0
