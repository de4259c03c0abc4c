"""KorniaAugment: kornia ops under the ADA protocol, driven by AdaptiveAugmentation on both paths."""

from __future__ import annotations

import warnings
from pathlib import Path

import kornia.augmentation as K
import pytest
import torch
from test_callback_ada import (
    ScriptedNative,
    TemplateGAN,
    expected_p,
    four_signs,
    loader,
    make_images,
    make_trainer,
)

from lightning_genaug.augment.kornia import INVOLUTION, UNIFORM_RANGE, KorniaAugment, leak_threshold
from lightning_genaug.augment.protocol import AugmentationStrength
from lightning_genaug.callbacks.ada import AdaptiveAugmentation


def touched(pipe: KorniaAugment, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Which samples the pipe changed, ``(B,)`` bool."""
    with torch.no_grad():
        out = pipe(images, generator=torch.Generator().manual_seed(seed))
    return (out - images).abs().flatten(1).amax(1) > 1e-6


def noise() -> K.RandomGaussianNoise:
    return K.RandomGaussianNoise(std=0.1)


def test_implements_the_ada_protocol_and_p_zero_is_the_free_identity():
    pipe = KorniaAugment([noise()])
    assert isinstance(pipe, AugmentationStrength) and pipe.p.ndim == 0
    images = make_images(4)
    assert pipe(images) is images
    pipe.observe(torch.tensor([1.0, -1.0, 1.0]))
    assert [float(v) for v in pipe.pop_stats()] == [1.0, 3.0]


@pytest.mark.parametrize(("p", "strength"), [(0.5, 1.0), (0.8, 0.5), (1.0, 1.0)])
def test_each_sample_is_augmented_with_probability_p_times_strength(p, strength):
    pipe = KorniaAugment([noise()], p=p, strengths=[strength])
    fraction = float(touched(pipe, torch.zeros(2000, 3, 4, 4)).float().mean())
    assert fraction == pytest.approx(p * strength, abs=0.035)  # > 3 binomial standard deviations


def test_a_seeded_generator_reproduces_the_output_and_leaves_the_global_rng_alone():
    pipe = KorniaAugment([K.RandomAffine(degrees=20.0, padding_mode="reflection"), noise()], p=0.7, max_p=0.8)
    images = make_images(8).expand(-1, 3, -1, -1)
    state = torch.get_rng_state()
    first = pipe(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(pipe(images, generator=torch.Generator().manual_seed(3)), first)
    assert not torch.equal(pipe(images, generator=torch.Generator().manual_seed(4)), first)


def test_gradients_reach_the_input_through_augmented_and_skipped_samples():
    pipe = KorniaAugment([K.RandomAffine(degrees=30.0, padding_mode="reflection")], p=0.5, max_p=0.5)
    images = make_images(16).expand(-1, 3, -1, -1).double().requires_grad_(True)
    changed = touched(pipe, images.detach(), seed=1)
    assert 0 < int(changed.sum()) < 16
    out = pipe(images, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(out.square().sum(), images)
    skipped = ~changed
    torch.testing.assert_close(grad[skipped], 2 * images[skipped].detach())  # identity rows
    assert grad[changed].abs().sum() > 0
    single = KorniaAugment([K.RandomAffine(degrees=30.0, padding_mode="reflection")], p=0.5, max_p=0.5)
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: single(t, generator=torch.Generator().manual_seed(0)), (x,))


def test_leak_thresholds_follow_the_ops_parameter_laws():
    assert leak_threshold(K.RandomHorizontalFlip()) == INVOLUTION
    assert leak_threshold(K.RandomRotation(degrees=15.0)) == pytest.approx(0.8216, abs=1e-4) == UNIFORM_RANGE
    assert leak_threshold(K.RandomGrayscale()) == 1.0
    assert leak_threshold(K.RandomGaussianNoise()) == float("inf")
    assert leak_threshold(K.RandomRotation90(times=(1, 1))) == INVOLUTION  # a deterministic quarter turn
    assert leak_threshold(K.RandomRotation90(times=(0, 3))) == 1.0
    assert leak_threshold(K.RandomSolarize()) is None


def test_ops_leaking_below_max_p_are_refused_unless_allowed():
    with pytest.raises(ValueError, match=r"RandomHorizontalFlip.*max_p"):
        KorniaAugment([K.RandomHorizontalFlip()])
    with pytest.raises(ValueError, match="RandomAffine"):
        KorniaAugment([K.RandomAffine(degrees=10.0)], max_p=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        KorniaAugment([K.RandomHorizontalFlip()], max_p=0.45)
        KorniaAugment([K.RandomHorizontalFlip()], strengths=[0.5], max_p=0.99)  # ADA's x-flip
        KorniaAugment([K.RandomAffine(degrees=10.0), noise()], max_p=0.8)
    with pytest.warns(UserWarning, match=r"RandomHorizontalFlip \(leaks at p = 1\)"):
        KorniaAugment([K.RandomHorizontalFlip()], strengths=[0.5])  # flips half the images at p = 1
    with pytest.warns(UserWarning, match="RandomHorizontalFlip"):
        KorniaAugment([K.RandomHorizontalFlip()], allow_leaking=True)


def test_ops_leaking_only_at_p_one_or_unclassified_are_warned_about():
    with pytest.warns(UserWarning, match="RandomGrayscale"):
        KorniaAugment([K.RandomGrayscale()])
    with pytest.warns(UserWarning, match="not classified"):
        KorniaAugment([K.RandomSolarize()], max_p=0.5)
    pipe = KorniaAugment([noise()], max_p=0.8)
    pipe.set_p(0.8)  # float32(0.8) > 0.8: p clamped to max_p by the controller is not beyond it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe(make_images(2))
    pipe.set_p(0.9)
    with pytest.warns(UserWarning, match="exceeds the declared max_p"):
        pipe(make_images(2))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ops": []}, ValueError, "at least one"),
        ({"ops": [torch.nn.Identity()]}, TypeError, "kornia 2-D augmentations"),
        ({"ops": [noise()], "strengths": [1.0, 1.0]}, ValueError, "one value per op"),
        ({"ops": [noise()], "strengths": [1.5]}, ValueError, "strengths"),
        ({"ops": [noise()], "max_p": 0.0}, ValueError, "max_p"),
    ],
)
def test_arguments_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        KorniaAugment(**kwargs)


def test_shape_changing_ops_are_refused_at_the_first_call():
    pipe = KorniaAugment([K.RandomCrop((4, 4))], p=1.0, allow_leaking=True)
    with pytest.raises(ValueError, match="RandomCrop changed the image shape"):
        pipe(make_images(2))


def test_adaptive_augmentation_drives_a_modules_kornia_pipe(tmp_path: Path):
    module = ScriptedNative(four_signs)
    module.augment_pipe = KorniaAugment([noise()])
    callback = AdaptiveAugmentation(speed_kimg=0.1)  # every 4 batches
    make_trainer(tmp_path, [callback], max_epochs=5).fit(module, loader(16))
    stats = [(16.0, 16.0, 16.0)] * 3 + [(8.0, 16.0, 16.0)] * 2
    assert callback.p == pytest.approx(expected_p(stats, target=0.6, speed_kimg=0.1, max_p=1.0))
    assert float(module.augment_pipe.p) == pytest.approx(callback.p)


def test_adaptive_augmentation_installs_a_kornia_pipe_on_a_foreign_gan(tmp_path: Path):
    torch.manual_seed(0)
    module = TemplateGAN()
    pipe = KorniaAugment(
        [K.RandomAffine(degrees=0.0, translate=(0.25, 0.25), padding_mode="zeros"), noise()], max_p=0.8
    )
    pipe.set_p(0.5)
    callback = AdaptiveAugmentation(pipe=pipe, speed_kimg=0.1, max_p=0.8)  # every 4 batches
    make_trainer(tmp_path, [callback]).fit(module, loader(16))
    training_inputs = [images for training, images in module.discriminator.seen if training]
    # per batch: G step (fakes), D step (reals, fakes); after the 4th batch the measurement (reals)
    assert len(training_inputs) == 4 * 3 + 1
    d_step_reals = [training_inputs[index] for index in (1, 4, 7, 10)]
    changed = sum(
        int(((seen - real).abs().flatten(1).amax(1) > 1e-6).sum())
        for seen, real in zip(d_step_reals, make_images(16).split(4), strict=True)
    )
    assert 0 < changed < 16  # at p = 0.5 some reals were augmented, some not
    assert callback.pipe is pipe and float(pipe.p) == pytest.approx(callback.p) and callback.p != 0.5
