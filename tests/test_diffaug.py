"""DiffAugment: p = 0 identity, what each transform does, gating, gradients, arguments."""

from __future__ import annotations

import pytest
import torch

from lightning_genaug.augment.diffaug import DiffAugment, adjust_color, cutout, translate
from lightning_genaug.augment.protocol import AugmentationStrength


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_p_zero_is_the_identity(policy: str) -> None:
    images = torch.randn(4, 3, 8, 8)
    assert torch.equal(DiffAugment(policy, p=0.0)(images, _generator()), images)


def test_p_one_changes_every_sample() -> None:
    images = torch.randn(16, 3, 16, 16)
    out = DiffAugment(p=1.0)(images, _generator())
    assert out.shape == images.shape
    assert torch.all((out - images).flatten(1).abs().amax(dim=1) > 0)


def test_translation_moves_content_and_pads_with_zeros() -> None:
    images = torch.zeros(2, 1, 8, 8)
    images[:, :, 3, 4] = 1.0
    out = translate(images, torch.tensor([[2, -1], [-3, 0]]))
    assert out[0, 0, 5, 3] == 1.0 and out[1, 0, 0, 4] == 1.0
    assert out.sum() == 2.0
    full = translate(torch.ones(1, 1, 8, 8), torch.tensor([[1, 2]]))
    assert full[0, 0, 0].sum() == 0 and full[0, 0, :, :2].sum() == 0 and full[0, 0, 1:, 2:].eq(1).all()


def test_translation_shifts_stay_within_an_eighth_of_the_size() -> None:
    params = DiffAugment("translation", p=1.0).sample_params((4000, 3, 16, 24), generator=_generator())
    shift = params["translation"]
    assert shift[:, 0].abs().max() == 2 and shift[:, 1].abs().max() == 3
    assert set(shift[:, 0].tolist()) == {-2, -1, 0, 1, 2}


def test_cutout_zeroes_a_half_size_hole() -> None:
    augment = DiffAugment("cutout", p=1.0)
    params = augment.sample_params((1, 3, 8, 8), generator=_generator())
    params["cutout_center"] = torch.tensor([[4, 4]])
    out = augment(torch.ones(1, 3, 8, 8), params=params)
    assert out[0, :, 2:6, 2:6].eq(0).all()
    assert out.eq(0).sum() == 3 * 16
    clipped = cutout(torch.ones(1, 1, 8, 8), torch.tensor([True]), torch.tensor([[0, 7]]), (4, 4))
    assert clipped.eq(0).sum() == 2 * 3


def test_color_transforms_do_what_their_factors_say() -> None:
    images = torch.rand(2, 3, 4, 4)
    one, zero = torch.ones(2), torch.zeros(2)
    brighter = adjust_color(images, torch.full((2,), 0.25), one, one)
    assert torch.allclose(brighter, images + 0.25)
    grey = adjust_color(images, zero, zero, one)
    assert torch.allclose(grey, images.mean(dim=1, keepdim=True).expand_as(images))
    flat = adjust_color(images, zero, one, zero)
    assert torch.allclose(flat, images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images))


def test_color_factors_are_drawn_from_the_paper_ranges() -> None:
    params = DiffAugment("color", p=1.0).sample_params((4000, 3, 8, 8), generator=_generator())
    assert params["brightness"].min() >= -0.5 and params["brightness"].max() < 0.5
    assert params["saturation"].min() >= 0.0 and params["saturation"].max() < 2.0
    assert params["contrast"].min() >= 0.5 and params["contrast"].max() < 1.5


def test_each_transform_is_gated_per_sample_with_probability_p() -> None:
    params = DiffAugment(p=0.3).sample_params((20_000, 3, 8, 8), generator=_generator())
    assert params["cutout"].float().mean().item() == pytest.approx(0.3, abs=0.015)
    assert (params["brightness"] != 0).float().mean().item() == pytest.approx(0.3, abs=0.015)
    both = params["cutout"] & (params["brightness"] != 0)
    assert both.float().mean().item() == pytest.approx(0.09, abs=0.01)


def test_augmentation_is_differentiable() -> None:
    augment = DiffAugment(p=1.0).double()
    params = augment.sample_params((2, 3, 4, 4), generator=_generator())
    images = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: augment(x, params=params), (images,))
    assert torch.autograd.gradgradcheck(lambda x: augment(x, params=params), (images,))


def test_same_seed_same_augmentation() -> None:
    augment, images = DiffAugment(p=0.5), torch.randn(8, 3, 8, 8)
    assert torch.equal(augment(images, _generator(1)), augment(images, _generator(1)))


def test_follows_the_ada_protocol() -> None:
    augment = DiffAugment(p=0.2)
    assert isinstance(augment, AugmentationStrength)
    augment.set_p(0.7)
    restored = DiffAugment(p=0.0)
    restored.load_state_dict(augment.state_dict())
    assert restored.p.item() == pytest.approx(0.7)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"policy": "color,flip"}, "policy"), ({"p": -0.1}, "p"), ({"cutout_ratio": 2.0}, "cutout_ratio")],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DiffAugment(**kwargs)
