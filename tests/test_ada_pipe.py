"""Behaviour of the StyleGAN2-ADA ``AugmentPipe``: each transform, gating by ``p``, gradients, dtypes."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_genaug.augment import DataScaling, DiffAugment, resampling
from lightning_genaug.augment.ada_pipe import GROUPS, AugmentPipe
from lightning_genaug.augment.resampling import band_filter_bank


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth_images(
    batch: int, channels: int = 3, height: int = 16, width: int = 16, seed: int = 0
) -> torch.Tensor:
    low = torch.rand(batch, channels, 4, 4, generator=seeded(seed)) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)


def blob(center_x: float, center_y: float, size: int = 32) -> torch.Tensor:
    """A Gaussian spot, ``(1, 1, size, size)``, for measuring where geometry moves content."""
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return torch.exp(-((xs - center_x) ** 2 + (ys - center_y) ** 2) / 4).view(1, 1, size, size)


def centroid(image: torch.Tensor) -> tuple[float, float]:
    ys, xs = torch.meshgrid(*(torch.arange(s).float() for s in image.shape[-2:]), indexing="ij")
    weight = image[0, 0]
    return float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())


# ---------------------------------------------------------------- identity, determinism, replay


def test_p_zero_returns_the_input_itself():
    images = smooth_images(4)
    pipe = AugmentPipe("bgcfnc", p=0.0)
    assert pipe(images) is images
    assert pipe(images, generator=seeded()) is images


def test_identity_draw_leaves_values_exact():
    images = smooth_images(3)
    pipe = AugmentPipe("bgcfnc", p=0.0)
    params = pipe.sample_params(images.shape)
    assert torch.equal(pipe.apply_params(images, params), images)


def test_fixed_generator_is_deterministic_and_seeds_differ():
    images = smooth_images(8)
    pipe = AugmentPipe("bgcfnc", p=0.7)
    first = pipe(images, generator=seeded(5))
    assert torch.equal(first, pipe(images, generator=seeded(5)))
    assert not torch.equal(first, pipe(images, generator=seeded(6)))


def test_params_replay_gives_the_same_output():
    images = smooth_images(6)
    pipe = AugmentPipe("bgcfnc", p=0.8)
    params = pipe.sample_params(images.shape, generator=seeded(1))
    assert torch.equal(pipe(images, params=params), pipe.apply_params(images, params))
    assert torch.equal(pipe(images, params=params), pipe(images, generator=seeded(1)))


# ---------------------------------------------------------------- each transform alone


def test_xflip_mirrors_exactly_where_drawn():
    images = torch.randn(32, 3, 8, 6, generator=seeded())
    pipe = AugmentPipe(None, p=1.0, xflip=1)
    params = pipe.sample_params(images.shape, generator=seeded(2))
    out = pipe.apply_params(images, params)
    flipped = params["xflip"] == 1
    assert 0 < int(flipped.sum()) < 32
    assert torch.equal(out[flipped], images[flipped].flip(3))
    assert torch.equal(out[~flipped], images[~flipped])


def test_rotate90_matches_rot90_and_four_turns_are_the_identity():
    images = torch.randn(4, 3, 6, 6, generator=seeded())
    pipe = AugmentPipe(None, p=1.0, rotate90=1)
    turns = torch.tensor([0.0, 1.0, 2.0, 3.0])
    out = pipe.apply_params(images, {"rotate90": turns})
    for i, k in enumerate(turns.long().tolist()):
        assert torch.equal(out[i], torch.rot90(images[i], k, dims=(1, 2)))
    quarter = {"rotate90": torch.ones(4)}
    spun = images
    for _ in range(4):
        spun = pipe.apply_params(spun, quarter)
    assert torch.equal(spun, images)


def test_integer_translation_moves_a_marker_by_the_drawn_pixels():
    images = torch.zeros(16, 1, 32, 32)
    images[:, :, 16, 10] = 1.0
    pipe = AugmentPipe(None, p=1.0, xint=1)
    params = pipe.sample_params(images.shape, generator=seeded(3))
    shift = params["xint"].long()
    assert shift.abs().max() <= 4 and shift.abs().sum() > 0
    out = pipe.apply_params(images, params)
    for i in range(16):
        ys, xs = torch.nonzero(out[i, 0] == 1.0, as_tuple=True)
        assert (int(xs), int(ys)) == (10 + int(shift[i, 0]), 16 + int(shift[i, 1]))
    assert torch.equal(out.sum(dim=(1, 2, 3)), images.sum(dim=(1, 2, 3)))  # pixels copied, not blended


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"xfrac": torch.tensor([[2.5, -1.5]])}, (21.5 + 2.5, 15.5 - 1.5)),
        ({"scale": torch.tensor([1.5])}, (15.5 + 6 * 1.5, 15.5)),
        ({"rotate_pre": torch.tensor([math.pi / 2])}, (15.5, 15.5 - 6)),
        ({"aniso": torch.tensor([1.25])}, (15.5 + 6 * 1.25, 15.5)),
    ],
    ids=["fractional-translation", "isotropic-scale", "rotation", "anisotropic-scale"],
)
def test_general_geometry_moves_content_where_the_matrix_says(params, expected):
    spot = blob(21.5, 15.5)  # 6 pixels right of the centre of a 32x32 image
    out = AugmentPipe(None, p=1.0).apply_params(spot, params)
    assert centroid(out) == pytest.approx(expected, abs=0.05)


def test_resampling_path_agrees_with_exact_blit_on_integer_shifts():
    """A lattice map through pad/upsample/grid_sample/downsample equals the exact pixel copy."""
    images = torch.randn(2, 3, 12, 10, dtype=torch.float64, generator=seeded())
    pipe = AugmentPipe("bg", p=1.0)
    shift = torch.tensor([[3.0, -2.0], [-1.0, 4.0]], dtype=torch.float64)
    exact = pipe.apply_params(images, {"xint": shift})
    resampled = pipe.apply_params(images, {"xint": shift, "scale": torch.tensor([1 + 1e-5, 1 - 1e-5])})
    assert torch.allclose(resampled, exact, atol=1e-3)


def test_casting_the_module_to_bfloat16_does_not_round_the_filters():
    images = torch.randn(2, 3, 12, 10, generator=seeded())
    shift = {"xint": torch.tensor([[3.0, -2.0], [-1.0, 4.0]]), "scale": torch.tensor([1 + 1e-5, 1 - 1e-5])}
    pipe = AugmentPipe("bg", p=1.0).to(torch.bfloat16)  # what a "bf16-true" trainer does to a model
    exact = pipe.apply_params(images, {"xint": shift["xint"]})
    assert torch.allclose(pipe.apply_params(images, shift), exact, atol=1e-3)


def test_blockwise_resampling_of_long_axes_equals_the_dense_matrices(monkeypatch):
    images = torch.randn(3, 3, 24, 20, dtype=torch.float64, generator=seeded())
    pipe = AugmentPipe("bg", p=1.0)
    params = pipe.sample_params(images.shape, generator=seeded(17))
    dense = pipe.apply_params(images, params)
    monkeypatch.setattr(resampling, "_DENSE_AXIS_LIMIT", 0)  # every axis takes the windowed path
    assert torch.allclose(pipe.apply_params(images, params), dense, atol=1e-10)
    small = images[:1, :, :8, :8].clone().requires_grad_(True)
    small_params = pipe.sample_params(small.shape, generator=seeded(18))
    assert torch.autograd.gradgradcheck(
        lambda x: pipe.apply_params(x, small_params), (small,), fast_mode=True
    )


def test_brightness_shifts_every_pixel_by_the_drawn_offset():
    images = smooth_images(8)
    pipe = AugmentPipe(None, p=1.0, brightness=1)
    params = pipe.sample_params(images.shape, generator=seeded(4))
    out = pipe.apply_params(images, params)
    offset = params["brightness"].view(-1, 1, 1, 1)
    assert torch.allclose(out - images, offset.expand_as(images), atol=1e-6)


def test_contrast_scales_and_luma_flip_negates_grey():
    grey = smooth_images(2, channels=1).expand(2, 3, 16, 16)
    pipe = AugmentPipe(None, p=1.0)
    scaled = pipe.apply_params(grey, {"contrast": torch.tensor([2.0, 0.5])})
    assert torch.allclose(scaled, grey * torch.tensor([2.0, 0.5]).view(2, 1, 1, 1), atol=1e-6)
    flipped = pipe.apply_params(grey, {"lumaflip": torch.tensor([1.0, 0.0])})
    assert torch.allclose(flipped[0], -grey[0], atol=1e-6)
    assert torch.equal(flipped[1], grey[1])


def test_hue_rotation_keeps_luma_and_saturation_keeps_grey():
    images = smooth_images(8)
    pipe = AugmentPipe(None, p=1.0, hue=1)
    out = pipe(images, generator=seeded(5))
    assert not torch.allclose(out, images, atol=1e-3)
    assert torch.allclose(out.mean(dim=1), images.mean(dim=1), atol=1e-5)
    grey = images.mean(dim=1, keepdim=True).expand(8, 3, 16, 16)
    saturated = pipe.apply_params(grey, {"saturation": torch.full((8,), 3.0)})
    assert torch.allclose(saturated, grey, atol=1e-5)


def test_band_filters_split_a_signal_into_four_bands():
    bank = band_filter_bank()
    delta = torch.zeros(bank.shape[1], dtype=torch.float64)
    delta[bank.shape[1] // 2] = 1.0
    assert torch.allclose(bank.sum(dim=0), delta, atol=1e-12)  # all gains 1 = identity
    assert torch.allclose(bank.flip(1), bank)  # zero phase
    response = torch.fft.rfft(bank, n=512).abs()  # (4, 257) over [0, pi]
    band_edges = [0, 32, 64, 128, 257]  # pi/8, pi/4, pi/2 at 512 points
    for band in range(4):
        centre = (band_edges[band] + band_edges[band + 1]) // 2
        assert int(response[:, centre].argmax()) == band


def test_image_filter_amplifies_the_chosen_band():
    images = torch.randn(2, 3, 32, 32, generator=seeded())
    pipe = AugmentPipe(None, p=1.0, imgfilter=1)
    gains = torch.tensor([[1.0, 1.0, 1.0, 4.0], [1.0, 1.0, 1.0, 0.25]])
    out = pipe.apply_params(images, {"imgfilter": gains})
    high_before = (images[..., 1:] - images[..., :-1]).square().mean(dim=(1, 2, 3))
    high_after = (out[..., 1:] - out[..., :-1]).square().mean(dim=(1, 2, 3))
    assert high_after[0] > 4 * high_before[0] and high_after[1] < high_before[1] / 4


def test_noise_adds_gaussian_noise_of_the_drawn_sigma():
    images = torch.zeros(64, 3, 32, 32)
    pipe = AugmentPipe(None, p=1.0, noise=1)
    params = pipe.sample_params(images.shape, generator=seeded(6))
    out = pipe.apply_params(images, params)
    assert torch.allclose(out.std(dim=(1, 2, 3)), params["noise"], rtol=0.1, atol=1e-3)


def test_cutout_zeroes_the_expected_area_fraction():
    """Centre ~ U(0, 1)^2, side 1/2: per axis E[covered] = 1/2 - 2 * (1/4)^2 / 2 = 7/16."""
    images = torch.ones(2000, 1, 16, 16)
    pipe = AugmentPipe("cutout", p=1.0)
    out = pipe(images, generator=seeded(7))
    zeroed = (out == 0).float().mean(dim=(1, 2, 3))
    assert float(zeroed.mean()) == pytest.approx((7 / 16) ** 2, abs=0.01)
    assert float(zeroed.max()) == pytest.approx(0.25)  # a rectangle fully inside: (1/2)^2
    assert set(out.unique().tolist()) == {0.0, 1.0}


# ---------------------------------------------------------------- gating by p


@pytest.mark.parametrize(
    ("key", "touched_per_gate"),
    [
        ("xflip", 0.5), ("rotate90", 0.75), ("xint", None), ("scale", 1.0), ("aniso", 1.0), ("xfrac", 1.0),
        ("brightness", 1.0), ("contrast", 1.0), ("lumaflip", 0.5), ("hue", 1.0), ("saturation", 1.0),
        ("noise", 1.0), ("cutout", 1.0),
    ],
)  # fmt: skip
def test_fraction_of_touched_samples_matches_p(key, touched_per_gate):
    p, batch = 0.3, 6000
    pipe = AugmentPipe("bgcfnc", p=p)
    params = pipe.sample_params((batch, 3, 32, 32), generator=seeded(8))
    identity = {"scale": 1.0, "aniso": 1.0, "contrast": 1.0, "saturation": 1.0}.get(key, 0.0)
    values = params[key].view(batch, -1)
    touched = ((values - identity).abs().amax(dim=1) > 0).float().mean()
    if touched_per_gate is None:  # integer shift: rounding to 0 on both axes leaves it untouched
        zero_axis = 1 / 8  # U(-4, 4) px at 32 px rounds to 0 on one axis with probability 1/8
        touched_per_gate = 1 - zero_axis**2
    expected = p * touched_per_gate
    assert float(touched) == pytest.approx(
        expected, abs=4 * math.sqrt(expected * (1 - expected) / batch) + 0.01
    )


def test_rotation_and_filter_probabilities_compose_to_p():
    p, batch = 0.3, 6000
    params = AugmentPipe("bgcfnc", p=p).sample_params((batch, 3, 32, 32), generator=seeded(9))
    rotated = ((params["rotate_pre"] != 0) | (params["rotate_post"] != 0)).float().mean()
    assert float(rotated) == pytest.approx(p, abs=0.03)  # pre or post, each with 1 - sqrt(1 - p)
    filtered = ((params["imgfilter"] - 1).abs().amax(dim=1) > 0).float().mean()
    assert float(filtered) == pytest.approx(1 - (1 - p) ** 4, abs=0.03)  # 4 bands, each with p


def test_leak_check_flip_statistics_stay_invertible_below_p_one():
    """Non-leaking (Sec. 2.2, App. C): the augmented distribution must determine the clean one.

    Take two datasets that differ only in how often a marker sits in the left half (20% vs 80%).
    With x-flip at strength p the left fraction becomes q (1 - p/2) + (1 - q) p/2, a map of q with
    slope 1 - p: for p < 1 the two datasets stay distinguishable after augmentation (D can tell
    them apart, so G is pushed to the clean one); at p = 1 both collapse to 1/2 -- the leak.
    """

    def left_fraction(q: float, p: float) -> float:
        images = torch.zeros(4000, 1, 4, 4)
        left = torch.rand(4000, generator=seeded(10)) < q
        images[left, 0, 1, 0] = 1.0
        images[~left, 0, 1, 3] = 1.0
        out = AugmentPipe(None, p=p, xflip=1)(images, generator=seeded(11))
        return float(out[:, 0, :, :2].sum(dim=(1, 2)).mean())

    for p in (0.3, 0.8):
        gap = left_fraction(0.8, p) - left_fraction(0.2, p)
        assert gap == pytest.approx(0.6 * (1 - p), abs=0.05)
    assert left_fraction(0.8, 1.0) - left_fraction(0.2, 1.0) == pytest.approx(0.0, abs=0.05)


# ---------------------------------------------------------------- gradients


def test_gradcheck_and_gradgradcheck_through_the_whole_bgcfnc_pipe():
    pipe = AugmentPipe("bgcfnc", p=1.0)
    images = torch.randn(1, 3, 8, 8, dtype=torch.float64, generator=seeded(), requires_grad=True)
    params = pipe.sample_params(images.shape, generator=seeded(3))
    assert params["scale"].item() != 1.0 and params["hue"].item() != 0.0 and params["cutout"].item() > 0

    def augment(x: torch.Tensor) -> torch.Tensor:
        return pipe(x, params=params)

    assert torch.autograd.gradcheck(augment, (images,), fast_mode=True)
    assert torch.autograd.gradgradcheck(augment, (images,), fast_mode=True)


def test_r1_style_double_backward_runs_through_a_sub_batch():
    pipe = AugmentPipe("bgcfnc", p=0.5)
    disc = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Softplus(), torch.nn.Flatten(), torch.nn.LazyLinear(1)
    )
    images = smooth_images(6).requires_grad_(True)
    (grad,) = torch.autograd.grad(disc(pipe(images, generator=seeded(12))).sum(), images, create_graph=True)
    grad.square().sum().backward()
    weight_grad = disc[0].weight.grad  # R1 depends on D's weights through d D / d x
    assert weight_grad is not None and torch.isfinite(weight_grad).all() and weight_grad.abs().sum() > 0


# ---------------------------------------------------------------- dtypes, layouts, shapes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_keeps_dtype_and_matches_float32(dtype):
    images = smooth_images(4)
    pipe = AugmentPipe("bgcfnc", p=0.9)
    params = pipe.sample_params(images.shape, generator=seeded(13))
    out = pipe.apply_params(images.to(dtype), params)
    reference = pipe.apply_params(images.to(dtype).float(), params)
    assert out.dtype == dtype
    assert torch.allclose(out.float(), reference, atol=0.05)


def test_an_outer_bf16_autocast_does_not_degrade_the_resampling():
    images = smooth_images(4, height=32, width=32)
    pipe = AugmentPipe("geom", p=1.0)
    params = pipe.sample_params(images.shape, generator=seeded(15))
    reference = pipe.apply_params(images, params)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as in a bf16 training step around D
        out = pipe.apply_params(images, params)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference)


def test_channels_last_input_gives_channels_last_output_with_equal_values():
    images = smooth_images(4)
    pipe = AugmentPipe("bgcfnc", p=0.9)
    params = pipe.sample_params(images.shape, generator=seeded(14))
    out = pipe.apply_params(images.contiguous(memory_format=torch.channels_last), params)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, pipe.apply_params(images, params), atol=1e-6)


def test_one_channel_images_get_brightness_contrast_lumaflip_only():
    images = smooth_images(16, channels=1)
    pipe = AugmentPipe("bgcfnc", p=1.0)
    params = pipe.sample_params(images.shape, generator=seeded(15))
    assert {"brightness", "contrast", "lumaflip"} <= params.keys()
    assert "hue" not in params and "saturation" not in params
    out = pipe.apply_params(images, params)
    assert out.shape == images.shape and torch.isfinite(out).all()
    color_only = {key: params[key] for key in ("brightness", "contrast", "lumaflip")}
    sign = 1 - 2 * params["lumaflip"]
    expected = images * (params["contrast"] * sign).view(-1, 1, 1, 1) + (
        params["brightness"] * params["contrast"] * sign
    ).view(-1, 1, 1, 1)
    assert torch.allclose(pipe.apply_params(images, color_only), expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (3, 3, 12, 20), (2, 3, 7, 8), (2, 1, 9, 5), (2, 4, 8, 8)])
def test_any_batch_and_size_runs(shape):
    preset = "bgcfnc" if shape[1] in (1, 3) else "bg"
    images = torch.rand(shape, generator=seeded()) * 2 - 1
    out = AugmentPipe(preset, p=1.0)(images, generator=seeded(16))
    assert out.shape == images.shape and out.dtype == images.dtype and torch.isfinite(out).all()
    assert not torch.equal(out, images)


def test_non_square_rotate90_goes_through_resampling_when_off_lattice():
    images = torch.randn(1, 1, 7, 8, generator=seeded())
    pipe = AugmentPipe(None, p=1.0, rotate90=1)
    out = pipe.apply_params(images, {"rotate90": torch.tensor([1.0])})
    assert out.shape == images.shape and torch.isfinite(out).all()


# ---------------------------------------------------------------- errors and state


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (torch.rand(3, 8, 8), ValueError, "4-D"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.rand(1, 2, 8, 8), ValueError, "channels"),
        ([[1.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_is_a_clear_error(images, error, match):
    with pytest.raises(error, match=match):
        AugmentPipe("bgc", p=0.5)(images)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"preset": "bgcx"}, "valid values are: blit, geom"),
        ({"rotate_max": -1.0}, "`rotate_max` must be in"),
        ({"scale": -1.0}, "`scale` must be in"),
        ({"cutout_size": 2.0}, "`cutout_size` must be in"),
        ({"imgfilter_bands": [1, 1]}, "4 multipliers"),
        ({"p": 1.5}, "`p` must be in"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AugmentPipe(**kwargs)


def test_presets_enable_their_groups_and_strengths_override():
    assert {n for n, s in AugmentPipe("bgc").strengths.items() if s > 0} == set(
        GROUPS["blit"] + GROUPS["geom"] + GROUPS["color"]
    )
    assert all(s > 0 for s in AugmentPipe("bgcfnc").strengths.values())
    pipe = AugmentPipe("blit", hue=0.5, xflip=0.0)
    assert pipe.strengths["hue"] == 0.5 and pipe.strengths["xflip"] == 0.0 and pipe.strengths["xint"] == 1.0
    assert all(s == 0 for s in AugmentPipe(None).strengths.values())


def test_p_is_a_buffer_that_moves_and_is_checkpointed():
    pipe = AugmentPipe("bgc", p=0.25)
    assert set(pipe.state_dict()) == {"p", "sign_sum", "count"}
    restored = AugmentPipe("bgc")
    restored.load_state_dict(pipe.state_dict())
    assert float(restored.p) == 0.25
    assert pipe.to("meta").p.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
@pytest.mark.parametrize("kind", [AugmentPipe, DiffAugment, DataScaling])
def test_a_generator_on_another_device_draws_the_same_augmentation(kind: type) -> None:
    """One random-draw style: a CPU generator seeds an augmentation of CUDA images, and the reverse."""
    pipe = kind(p=0.9)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    on_cpu = pipe(images, generator=torch.Generator().manual_seed(5))
    on_cuda = pipe.cuda()(images.cuda(), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, atol=1e-4, rtol=1e-4)
    cuda_generator = torch.Generator(device="cuda").manual_seed(5)
    assert pipe.cpu()(images, generator=cuda_generator).device.type == "cpu"
