"""Scale-GAN: the variance-based regulariser (pure functions) and its parts on StyleGAN2ADA (ScaleGAN)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import AugmentPipe, Chain, DataScaling
from lightning_genaug.callbacks import AdaptiveAugmentation
from lightning_genaug.models import ScaleGAN, StyleGAN2ADA
from lightning_genaug.regularizers import (
    R1,
    VarianceRegularizer,
    output_variance,
    r1_penalty,
    variance_penalty,
)


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


# ---------------------------------------------------------------------------- the ScaleGAN module

TINY = {"config": "tiny", "resolution": 8, "channels": 1, "num_classes": 0}


def _loader(batches: int = 4, batch_size: int = 8) -> DataLoader:
    images = torch.rand(batches * batch_size, 1, 8, 8, generator=_generator(7)) * 2 - 1
    return DataLoader(TensorDataset(images), batch_size=batch_size)


def _trainer(tmp_path, batches: int, callbacks: list | None = None, epochs: int = 1) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=batches,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=callbacks,
        default_root_dir=tmp_path,
    )


def test_scalegan_is_stylegan2ada_with_scalegans_parts() -> None:
    model = ScaleGAN(**TINY)
    assert isinstance(model, StyleGAN2ADA)
    assert isinstance(model.augment_pipe, DataScaling) and model.augment_pipe.schedule == "uniform"
    assert float(model.augment_pipe.p) == 0.5
    assert isinstance(model.regularizer, VarianceRegularizer) and model.regularizer.sigma == 0.01
    parts = StyleGAN2ADA(augment=DataScaling(), regularizer=VarianceRegularizer(), **TINY)
    assert set(parts.state_dict()) == set(model.state_dict())


def test_d_sees_the_scaled_images() -> None:
    model = StyleGAN2ADA(augment=DataScaling("fixed", p=1.0, scale=0.5), **TINY)
    images = torch.rand(4, 1, 8, 8)
    assert torch.allclose(model.loss.augment_images(images), 0.5 * images)


def test_a_chain_puts_ada_before_the_scaling_and_exposes_adas_p() -> None:
    ada = AugmentPipe(p=0.0)
    model = StyleGAN2ADA(augment=Chain([ada, DataScaling("fixed", p=1.0, scale=0.25)]), **TINY)
    images = torch.rand(4, 1, 8, 8)
    assert torch.allclose(model.loss.augment_images(images), 0.25 * images)  # ADA at p = 0
    assert model.augment_pipe.p is ada.p  # the strength a controller adapts is ADA's
    ada.forward = lambda x, *args, **kwargs: x + 1.0  # a visible stand-in for ADA
    assert torch.allclose(model.loss.augment_images(images), 0.25 * (images + 1.0))


def test_without_augmentation_d_sees_the_images() -> None:
    model = ScaleGAN(augment=None, **TINY)
    assert model.augment_pipe is None
    images = torch.rand(2, 1, 8, 8)
    assert torch.equal(model.loss.augment_images(images), images)


@pytest.mark.parametrize(("regularizer", "logged"), [(VarianceRegularizer, "loss/variance"), (R1, "loss/r1")])
def test_training_steps_run_change_weights_and_use_the_chosen_regularizer(
    tmp_path, regularizer: type, logged: str
) -> None:
    model = ScaleGAN(regularizer=regularizer(gamma=1.0, every_n_batches=1), **TINY)
    networks = ("G.", "D.")
    before = {name: value.clone() for name, value in model.state_dict().items() if name.startswith(networks)}
    trainer = _trainer(tmp_path, batches=1)
    trainer.fit(model, _loader())
    after = model.state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before if name.startswith("G."))
    assert any(not torch.equal(before[name], after[name]) for name in before if name.startswith("D."))
    assert logged in trainer.callback_metrics
    assert {"loss/variance", "loss/r1"} - {logged} & set(trainer.callback_metrics) == set()


def test_regularizer_none_turns_d_regularization_off() -> None:
    model = ScaleGAN(regularizer=None, **TINY)
    assert model.regularizer is None and "Dreg" not in model.phases(0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: VarianceRegularizer(sigma=0.0), "sigma"),
        (lambda: VarianceRegularizer(num_pairs=0), "num_pairs"),
        (lambda: DataScaling("cosine"), "schedule"),
        (lambda: DataScaling(p=1.5), "p"),
    ],
)
def test_invalid_part_arguments_name_the_argument(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_controller_adapts_the_scaling_and_checkpoints_resume_it(tmp_path) -> None:
    controller = AdaptiveAugmentation(every_n_batches=1, speed_kimg=0.05)
    model = ScaleGAN(augment=DataScaling("diffusion", p=0.0), **TINY)
    trainer = _trainer(tmp_path, batches=2, callbacks=[controller])
    trainer.fit(model, _loader())
    trained_p = float(model.augment_pipe.p)
    assert controller.pipe is model.augment_pipe
    assert trained_p == pytest.approx(controller.p) and trained_p != 0.0
    checkpoint = tmp_path / "scalegan.ckpt"
    trainer.save_checkpoint(checkpoint)

    # Parts built in Python are not hyperparameters: pass them again, their state comes from the file.
    restored = ScaleGAN.load_from_checkpoint(checkpoint, augment=DataScaling("diffusion", p=0.0))
    assert float(restored.augment_pipe.p) == pytest.approx(trained_p)

    p_at_start: list[float] = []

    class RecordP(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            p_at_start.append(float(pl_module.augment_pipe.p))

    resumed_controller = AdaptiveAugmentation(every_n_batches=1, speed_kimg=0.05)
    resumed = ScaleGAN(augment=DataScaling("diffusion", p=0.0), **TINY)
    _trainer(tmp_path, batches=2, callbacks=[resumed_controller, RecordP()], epochs=2).fit(
        resumed, _loader(), ckpt_path=checkpoint
    )
    assert p_at_start == [pytest.approx(trained_p)]
    assert int(resumed.num_batches) == 4


def test_the_controller_adapts_a_chains_first_augmentation_only(tmp_path) -> None:
    ada, scaling = AugmentPipe(p=0.0), DataScaling("uniform", p=0.5)
    model = StyleGAN2ADA(augment=Chain([ada, scaling]), **TINY)
    controller = AdaptiveAugmentation(target=0.0, every_n_batches=1, speed_kimg=0.05)  # r_t > 0: p rises
    _trainer(tmp_path, batches=2, callbacks=[controller]).fit(model, _loader())
    assert controller.pipe is model.augment_pipe
    assert float(ada.p) > 0.0 and controller.p == pytest.approx(float(ada.p))
    assert float(scaling.p) == 0.5


def test_a_chain_hands_its_generator_to_every_augmentation() -> None:
    """A seeded chain is the seeded augmentations applied in turn, drawing from one generator."""
    ada, scaling = AugmentPipe(p=0.8), DataScaling("uniform", p=0.8)
    images = torch.rand(6, 3, 8, 8) * 2 - 1
    chained = Chain([ada, scaling])(images, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    by_hand = scaling(ada(images, generator=generator), generator=generator)
    torch.testing.assert_close(chained, by_hand)
    again = Chain([ada, scaling])(images, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(chained, again)
