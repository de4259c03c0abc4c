"""PairedAugment: one geometric draw for a (condition, image) pair, colour where it keeps the pairing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_genaug.augment import AugmentPipe, PairedAugment
from lightning_genaug.augment.ada_pipe import GROUPS

GEOMETRIC = (*GROUPS["blit"], *GROUPS["geom"])


def images(batch: int = 4, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=generator, dtype=torch.float64) * 2 - 1


@pytest.mark.parametrize("transform", GEOMETRIC)
def test_every_geometric_transform_moves_condition_and_image_together(transform: str) -> None:
    """The condition is a copy of the image's first channel: after one paired draw it still is."""
    paired = PairedAugment(AugmentPipe(None, p=1.0, **{transform: 1.0}), condition_channels=1)
    image = images(batch=8)
    out = paired(torch.cat([image[:, :1], image], dim=1), generator=torch.Generator().manual_seed(3))
    assert not torch.equal(out[:, 1:], image)  # the transform happened
    assert torch.equal(out[:, :1], out[:, 1:2])  # and moved the condition's pixels exactly as the image's


@pytest.mark.parametrize("transform", GEOMETRIC)
def test_a_marked_pixel_lands_on_the_same_spot_in_both_parts(transform: str) -> None:
    """Condition and image differ (a one-hot marker vs. a marker on noise): the marker's position agrees."""
    paired = PairedAugment(AugmentPipe(None, p=1.0, **{transform: 1.0}), condition_channels=1)
    condition = torch.zeros(4, 1, 16, 16, dtype=torch.float64)
    image = 0.1 * images()
    for sample, (row, col) in enumerate([(5, 6), (8, 8), (6, 10), (9, 7)]):
        condition[sample, 0, row, col] = 1.0
        image[sample, :, row, col] = 3.0
    out_image, out_condition = paired(image, condition, generator=torch.Generator().manual_seed(5))
    image_peak = out_image.mean(1).flatten(1).argmax(1)
    condition_peak = out_condition[:, 0].flatten(1).argmax(1)
    assert torch.equal(image_peak, condition_peak)


def test_colour_and_corruptions_change_the_image_only_unless_condition_color() -> None:
    image = images()
    pipe = AugmentPipe("color", p=1.0, imgfilter=1.0, noise=1.0, cutout=1.0)
    out_image, out_condition = PairedAugment(pipe)(image, image.clone())
    assert not torch.equal(out_image, image)
    assert torch.equal(out_condition, image)
    colour_only = AugmentPipe("color", p=1.0)
    out_image, out_condition = PairedAugment(colour_only, condition_color=True)(image, image.clone())
    assert not torch.equal(out_image, image)
    assert torch.equal(out_condition, out_image)  # the same colour matrix on both


def test_a_lower_resolution_condition_gets_the_translation_rescaled() -> None:
    """Super-resolution: a 2x smaller condition is shifted by half the pixels, flipped and turned alike."""
    pipe = AugmentPipe("blit", p=1.0)
    paired = PairedAugment(pipe, condition_channels=3)
    image = images(batch=2)
    condition = F.avg_pool2d(image, 2)
    params = {
        "xflip": torch.tensor([1.0, 0.0]),
        "rotate90": torch.tensor([1.0, 3.0]),
        "xint": torch.tensor([[4.0, -2.0], [-2.0, 4.0]]),
    }
    out_image, out_condition = paired(image, condition, params=params)
    half_params = {**params, "xint": params["xint"] / 2}
    assert torch.allclose(out_condition, pipe.apply_params(condition, half_params))
    # Blits of even pixel counts commute with 2x2 average pooling, except where reflection wraps a border
    # (up to 4 image pixels = 2 condition pixels here).
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert torch.allclose(F.avg_pool2d(out_image, 2)[inner], out_condition[inner])


def test_gradients_reach_the_image_and_the_condition() -> None:
    pipe = AugmentPipe("bgc", p=1.0)
    paired = PairedAugment(pipe, condition_channels=1, condition_color=True)
    pair = images(batch=1, channels=2, size=8, seed=2).requires_grad_(True)  # grey condition, grey image
    params = pipe.sample_params((1, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda x: paired(x, params=params), (pair,), fast_mode=True)
    paired(pair, params=params).square().sum().backward()
    assert pair.grad[:, :1].abs().sum() > 0 and pair.grad[:, 1:].abs().sum() > 0


def test_strength_zero_returns_the_input_and_the_protocol_is_the_pipes() -> None:
    pipe = AugmentPipe("bgc", p=0.0)
    paired = PairedAugment(pipe, condition_channels=1)
    pair = images(channels=4)
    assert paired(pair) is pair
    assert paired.p is pipe.p
    paired.observe(torch.tensor([1.0, -1.0, 1.0]))
    assert [float(v) for v in paired.pop_stats()] == [1.0, 3.0]


def test_bad_pairs_are_errors_naming_the_fix() -> None:
    with pytest.raises(ValueError, match="condition_channels"):
        PairedAugment(condition_channels=3)(images(channels=3))
    with pytest.raises(ValueError, match="aspect ratio"):
        PairedAugment(AugmentPipe("bgc", p=0.5))(images(), images(size=16)[..., :8])
    with pytest.raises(ValueError, match="condition_color=False"):
        PairedAugment(AugmentPipe("bgc", p=0.5), condition_color=True)(images(), images(channels=5))
    with pytest.raises(TypeError, match="AugmentPipe"):
        PairedAugment(torch.nn.Identity())
    with pytest.raises(ValueError, match="condition_channels"):
        PairedAugment(condition_channels=0)
