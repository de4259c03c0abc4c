"""Scale-GAN: the variance-based regulariser (pure functions) and the ScaleGAN Lightning module."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from lightning_genaug.models.scalegan.regularizers import output_variance, variance_penalty
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment.ada import AugmentPipe
from lightning_genaug.augment.scaling import DataScaling
from lightning_genaug.callbacks.ada import AdaptiveAugmentation
from lightning_genaug.models.scalegan import ScaleGAN
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


def test_without_ada_the_scaling_is_the_augment_pipe() -> None:
    model = ScaleGAN(scaling="fixed", scaling_p=1.0, scaling_kwargs={"scale": 0.5}, **TINY)
    assert isinstance(model.scaling, DataScaling) and model.augment_pipe is model.scaling
    images = torch.rand(4, 1, 8, 8)
    assert torch.allclose(model.augment_for_discriminator(images), 0.5 * images)


def test_with_ada_d_sees_the_scaled_augmentation() -> None:
    model = ScaleGAN(scaling="fixed", scaling_p=1.0, scaling_kwargs={"scale": 0.25}, augment="bgc", **TINY)
    assert isinstance(model.augment_pipe, AugmentPipe) and model.augment_pipe is not model.scaling
    images = torch.rand(4, 1, 8, 8)
    assert torch.allclose(model.augment_for_discriminator(images), 0.25 * images)  # ADA at p = 0
    model.augment_pipe.forward = lambda x, *args, **kwargs: x + 1.0  # a visible stand-in for ADA
    assert torch.allclose(model.augment_for_discriminator(images), 0.25 * (images + 1.0))


def test_without_scaling_d_sees_the_images() -> None:
    model = ScaleGAN(scaling=None, **TINY)
    assert model.scaling is None and model.augment_pipe is None
    images = torch.rand(2, 1, 8, 8)
    assert torch.equal(model.augment_for_discriminator(images), images)


@pytest.mark.parametrize(("regularizer", "logged"), [("variance", "loss/variance"), ("r1", "loss/r1")])
def test_training_steps_run_change_weights_and_use_the_chosen_regularizer(
    tmp_path, regularizer: str, logged: str
) -> None:
    model = ScaleGAN(regularizer=regularizer, r1_interval=1, gamma=1.0, **TINY)
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
    model = ScaleGAN(regularizer="none", **TINY)
    assert model.train_config.gamma == 0.0
    with pytest.raises(ValueError, match="gamma"):
        ScaleGAN(regularizer="none", gamma=1.0, **TINY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"regularizer": "wgan-gp"}, "regularizer"),
        ({"variance_sigma": 0.0}, "variance_sigma"),
        ({"scaling": "cosine"}, "schedule"),
        ({"scaling_p": 1.5}, "p"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScaleGAN(**kwargs, **TINY)


def test_controller_adapts_the_scaling_and_checkpoints_resume_it(tmp_path) -> None:
    controller = AdaptiveAugmentation(interval=1, speed_kimg=0.05)
    model = ScaleGAN(scaling="diffusion", scaling_p=0.0, **TINY)
    trainer = _trainer(tmp_path, batches=2, callbacks=[controller])
    trainer.fit(model, _loader())
    trained_p = float(model.scaling.p)
    assert controller.pipe is model.scaling
    assert trained_p == pytest.approx(controller.p) and trained_p != 0.0
    checkpoint = tmp_path / "scalegan.ckpt"
    trainer.save_checkpoint(checkpoint)

    restored = ScaleGAN.load_from_checkpoint(checkpoint)
    assert restored.hparams.scaling == "diffusion"
    assert float(restored.scaling.p) == pytest.approx(trained_p)

    p_at_start: list[float] = []

    class RecordP(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            p_at_start.append(float(pl_module.scaling.p))

    resumed_controller = AdaptiveAugmentation(interval=1, speed_kimg=0.05)
    resumed = ScaleGAN(scaling="diffusion", scaling_p=0.0, **TINY)
    _trainer(tmp_path, batches=2, callbacks=[resumed_controller, RecordP()], epochs=2).fit(
        resumed, _loader(), ckpt_path=checkpoint
    )
    assert p_at_start == [pytest.approx(trained_p)]
    assert int(resumed.num_batches) == 4


@pytest.mark.parametrize(
    ("name", "regularizer", "scaling", "driven_by_callback"),
    [
        ("scalegan", "variance", "uniform", True),
        ("scalegan-scaling-only", "r1", "uniform", True),
        ("scalegan-regularizer-only", "variance", None, False),
    ],
)
def test_example_configs_build_the_ablations(
    tmp_path, monkeypatch, name: str, regularizer: str, scaling: str | None, driven_by_callback: bool
) -> None:
    from pathlib import Path

    from lightning_genaug.cli import GenAugCLI

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).parents[1] / "examples" / "configs" / f"{name}.yaml"
    cli = GenAugCLI(args=["--config", str(config)], run=False)
    assert isinstance(cli.model, ScaleGAN)
    assert cli.model.hparams.regularizer == regularizer and cli.model.hparams.scaling == scaling
    controllers = [c for c in cli.trainer.callbacks if isinstance(c, AdaptiveAugmentation)]
    assert bool(controllers) == driven_by_callback
