"""AdaptiveAugmentation: the controller arithmetic, the native path, the zero-code-change foreign path,
checkpoint/resume. The DDP test lives in ``test_callback_ada_ddp.py`` (it runs in a subprocess)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import Chain, DiffAugment
from lightning_genaug.augment.protocol import SignAccumulator
from lightning_genaug.callbacks import FixedAugmentation
from lightning_genaug.callbacks import ada as ada_callback
from lightning_genaug.callbacks.ada import AdaptiveAugmentation, next_p
from lightning_genaug.callbacks.augmentation_strength import measured_rv, window_means, windowed_scores

IMAGE_SHAPE = (1, 8, 8)
BATCH = 4


# --------------------------------------------------------------------------- helpers


class MarkingPipe(SignAccumulator):
    """A protocol pipe whose augmentation is recognisable: it adds 10 to every pixel while ``p > 0``."""

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return images + 10.0 * (self.p > 0).to(images.dtype)


class NoisePipe(SignAccumulator):
    """A protocol pipe with an honest, mild augmentation: Gaussian noise of standard deviation ``p / 2``."""

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return images + 0.5 * self.p * torch.randn(images.shape, generator=generator)


def make_images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def loader(n: int = 16, labels: bool = True, as_dict: bool = False, repeat: int = 1) -> DataLoader:
    """Batches of 4 from ``n`` random images (the same images ``repeat`` times in one epoch)."""
    images = make_images(n).repeat(repeat, 1, 1, 1)
    targets = torch.arange(n * repeat) % 10
    if as_dict:
        return DataLoader([{"pixels": image} for image in images], batch_size=BATCH)
    dataset = TensorDataset(images, targets) if labels else TensorDataset(images)
    return DataLoader(dataset, batch_size=BATCH)


def make_trainer(tmp_path: Path, callbacks: list, **kwargs) -> pl.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    options.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **options)


class Trajectory(pl.Callback):
    """Records ``(p, rt)`` of an AdaptiveAugmentation after every batch (list it after that callback)."""

    def __init__(self, ada: AdaptiveAugmentation) -> None:
        self.ada = ada
        self.points: list[tuple[float, float | None]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.points.append((self.ada.p, self.ada.rt))


def expected_p(interval_stats: list[tuple[float, float, float]], p: float = 0.0, **controller) -> float:
    for sign_sum, count, images in interval_stats:
        p = next_p(p, sign_sum / count, images, **controller)
    return p


# ---- a GAN written the way Lightning's GAN template writes one (manual optimisation), nothing of ours


class Generator(nn.Module):
    def __init__(self, latent_dim: int = 8) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Linear(latent_dim, 32), nn.LeakyReLU(0.2), nn.Linear(32, 64), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z).view(z.shape[0], *IMAGE_SHAPE)


class Discriminator(nn.Module):
    """Ends with a sigmoid like the template's D; records every input (the probe)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1), nn.Sigmoid()
        )
        self.seen: list[tuple[bool, torch.Tensor]] = []

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, img.detach().clone()))
        return self.model(img)


class TemplateGAN(pl.LightningModule):
    def __init__(self, latent_dim: int = 8, lr: float = 2e-3, d_steps: int = 1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.lr = lr
        self.d_steps = d_steps
        self.generator = Generator(latent_dim)
        self.discriminator = Discriminator()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)

    def training_step(self, batch, batch_idx):
        imgs, _ = batch
        opt_g, opt_d = self.optimizers()
        z = torch.randn(imgs.shape[0], self.latent_dim).type_as(imgs)
        valid = torch.ones(imgs.size(0), 1).type_as(imgs)
        fake = torch.zeros(imgs.size(0), 1).type_as(imgs)

        self.toggle_optimizer(opt_g)
        g_loss = F.binary_cross_entropy(self.discriminator(self(z)), valid)
        self.manual_backward(g_loss)
        opt_g.step()
        opt_g.zero_grad()
        self.untoggle_optimizer(opt_g)

        self.toggle_optimizer(opt_d)
        for _ in range(self.d_steps):
            real_loss = F.binary_cross_entropy(self.discriminator(imgs), valid)
            fake_loss = F.binary_cross_entropy(self.discriminator(self(z).detach()), fake)
            d_loss = (real_loss + fake_loss) / 2
            self.manual_backward(d_loss)
            opt_d.step()
            opt_d.zero_grad()
        self.untoggle_optimizer(opt_d)
        self.log_dict({"g_loss": g_loss, "d_loss": d_loss})

    def validation_step(self, batch, batch_idx):
        imgs, _ = batch
        self.log("val_real_score", self.discriminator(imgs).mean())

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr, betas=(0.5, 0.999))
        return [opt_g, opt_d], []


# ---- a conditional GAN with automatic optimisation and D(images, labels), nothing of ours


class LabelDiscriminator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LeakyReLU(0.2))
        self.embed = nn.Embedding(10, 16)
        self.out = nn.Linear(16, 1)
        self.seen: list[tuple[bool, torch.Tensor, torch.Tensor]] = []

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, images.detach().clone(), labels.clone()))
        features = self.body(images)
        return self.out(features).squeeze(1) + (features * self.embed(labels)).sum(1)


class ConditionalGAN(pl.LightningModule):
    """One optimiser; even batches train D, odd batches train G (automatic optimisation)."""

    def __init__(self) -> None:
        super().__init__()
        self.netG = Generator()
        self.netD = LabelDiscriminator()
        self.batch_labels: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        images, labels = batch
        self.batch_labels.append(labels.clone())
        train_d = batch_idx % 2 == 0
        self.netD.requires_grad_(train_d)
        self.netG.requires_grad_(not train_d)
        fakes = self.netG(torch.randn(images.shape[0], 8))
        if train_d:
            real_loss = F.softplus(-self.netD(images, labels)).mean()
            return real_loss + F.softplus(self.netD(fakes, labels)).mean()
        return F.softplus(-self.netD(fakes, labels)).mean()

    def validation_step(self, batch, batch_idx):
        images, labels = batch
        self.netD(images, labels)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


# ---- a native module: owns augment_pipe and observes scripted logits


class ScriptedNative(pl.LightningModule):
    """Observes ``sign_pattern(global_step)`` logits per batch; has a D the callback must never run."""

    def __init__(self, sign_pattern, observe: bool = True) -> None:
        super().__init__()
        self.augment_pipe = MarkingPipe()
        self.discriminator = nn.Linear(64, 1)
        self.sign_pattern = sign_pattern
        self.observe = observe
        self.d_calls = 0

    def training_step(self, batch, batch_idx):
        images, _ = batch
        self.d_calls += 1
        loss = self.discriminator(self.augment_pipe(images).flatten(1)).mean()
        if self.observe:
            self.augment_pipe.observe(torch.tensor(self.sign_pattern(self.global_step), dtype=torch.float32))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def four_signs(step: int) -> list[float]:
    """Scripted logits of one batch: r_t = 1 for batches 0-11, then 0.5 (below a 0.6 target)."""
    return [1.0, 1.0, 1.0, 1.0] if step < 12 else [1.0, 1.0, 1.0, -1.0]


# --------------------------------------------------------------------------- controller arithmetic


def test_step_is_images_over_speed_in_the_sign_of_rt_minus_target() -> None:
    controller = dict(target=0.6, speed_kimg=2.0, max_p=1.0)
    assert next_p(0.25, 0.75, images_seen=64, **controller) == pytest.approx(0.25 + 64 / 2000)
    assert next_p(0.25, 0.25, images_seen=64, **controller) == pytest.approx(0.25 - 64 / 2000)


def test_p_is_clamped_to_zero_and_max_p() -> None:
    assert next_p(0.01, -1.0, 1000, target=0.6, speed_kimg=1.0, max_p=0.8) == 0.0
    assert next_p(0.79, 1.0, 1000, target=0.6, speed_kimg=1.0, max_p=0.8) == 0.8


def test_up_then_down_through_a_float32_buffer_returns_exactly_zero() -> None:
    controller = dict(target=0.6, speed_kimg=1.0, max_p=1.0)  # float32(0.064) > 0.064
    p_buffer = torch.zeros((), dtype=torch.float32)
    for rt in (1.0, -1.0):  # one step up, one step down, p stored in float32 between
        p = next_p(float(p_buffer), rt, 64, **controller)
        p_buffer.fill_(p)
    assert p_buffer.item() == 0.0  # pipes keep their exact p == 0 fast path


def test_rt_at_target_or_no_observation_leaves_p_unchanged() -> None:
    assert next_p(0.3, 0.6, 64, target=0.6, speed_kimg=1.0, max_p=1.0) == 0.3
    assert next_p(0.3, math.nan, 64, target=0.6, speed_kimg=1.0, max_p=1.0) == 0.3


def test_synthetic_trajectory_rises_saturates_then_falls_to_zero() -> None:
    """A synthetic r_t signal: 30 intervals above target, then 40 below (each interval 100 images)."""
    controller = dict(target=0.6, speed_kimg=2.0, max_p=0.5)
    p, trajectory = 0.0, []
    for rt in [0.9] * 30 + [0.2] * 40:
        p = next_p(p, rt, images_seen=100, **controller)
        trajectory.append(p)
    assert trajectory[9] == pytest.approx(0.5)  # 10 steps of 0.05 reach max_p ...
    assert trajectory[29] == 0.5  # ... and stay clamped there
    assert trajectory[39] == pytest.approx(0.0, abs=1e-12)  # 10 steps back down
    assert trajectory[-1] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"target": 1.0}, ValueError, "target"),
        ({"target": "0.6"}, TypeError, "target"),
        ({"every_n_batches": 0}, ValueError, "every_n_batches"),
        ({"every_n_batches": 2.5}, TypeError, "every_n_batches"),
        ({"speed_kimg": 0}, ValueError, "speed_kimg"),
        ({"max_p": 0.0}, ValueError, "max_p"),
        ({"heuristic": "r_v"}, ValueError, "heuristic"),
        ({"preset": "bogus"}, ValueError, "preset"),
        ({"pipe": nn.Identity()}, TypeError, "pipe"),
        ({"discriminator_attr": ""}, TypeError, "discriminator_attr"),
        ({"image_key": 3}, TypeError, "image_key"),
    ],
)
def test_every_argument_is_checked_at_construction(kwargs: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        AdaptiveAugmentation(**kwargs)


def test_state_key_differs_per_discriminator_and_pipe() -> None:
    keys = {
        AdaptiveAugmentation(pipe=MarkingPipe()).state_key,
        AdaptiveAugmentation(discriminator_attr="D_local").state_key,
        AdaptiveAugmentation(discriminator_attr="D_global").state_key,
        AdaptiveAugmentation(preset="bgcfnc").state_key,
    }
    assert len(keys) == 4


# --------------------------------------------------------------------------- native path


def test_native_path_adapts_the_modules_pipe_from_its_observations(tmp_path: Path) -> None:
    module = ScriptedNative(four_signs)
    callback = AdaptiveAugmentation(every_n_batches=4, speed_kimg=0.1)
    make_trainer(tmp_path, [callback], max_epochs=5).fit(module, loader(16))  # 20 batches, 5 updates
    # batches 0-11: r_t = 1 (three rises of 16/100); 12-19: r_t = 0.5 (two falls)
    stats = [(16.0, 16.0, 16.0)] * 3 + [(8.0, 16.0, 16.0)] * 2
    assert callback.p == pytest.approx(expected_p(stats, target=0.6, speed_kimg=0.1, max_p=1.0))
    assert callback.p == pytest.approx(0.16)
    assert float(module.augment_pipe.p) == pytest.approx(callback.p)
    assert callback.rt == 0.5
    assert not module.discriminator._forward_pre_hooks and module.d_calls == 20  # D never run nor hooked


def test_fixed_augmentation_holds_the_pipes_p_but_rt_is_still_measured(tmp_path: Path) -> None:
    module = ScriptedNative(four_signs)
    module.augment_pipe.set_p(0.3)
    callback = FixedAugmentation(every_n_batches=4)
    make_trainer(tmp_path, [callback], max_epochs=2).fit(module, loader(16))
    assert callback.p == pytest.approx(0.3)
    assert float(module.augment_pipe.p) == pytest.approx(0.3)
    assert callback.rt == 1.0


def test_a_module_that_never_observes_gets_a_warning_and_p_stays(tmp_path: Path) -> None:
    module = ScriptedNative(four_signs, observe=False)
    module.augment_pipe.set_p(0.2)
    callback = AdaptiveAugmentation(every_n_batches=2)
    with pytest.warns(UserWarning, match="observe"):
        make_trainer(tmp_path, [callback]).fit(module, loader(16))
    assert callback.p == pytest.approx(0.2)


def test_native_module_and_a_second_pipe_is_an_error(tmp_path: Path) -> None:
    callback = AdaptiveAugmentation(pipe=MarkingPipe())
    with pytest.raises(ValueError, match="augment_pipe"):
        make_trainer(tmp_path, [callback]).fit(ScriptedNative(four_signs), loader(16))


def test_a_module_with_augmentation_switched_off_is_not_hooked(tmp_path: Path) -> None:
    module = ScriptedNative(four_signs)
    module.augment_pipe = None
    with pytest.raises(ValueError, match="augment_pipe` is None"):
        make_trainer(tmp_path, [AdaptiveAugmentation(pipe=MarkingPipe())]).fit(module, loader(8))
    assert not module.discriminator._forward_pre_hooks


# --------------------------------------------------------------------------- foreign path


def test_foreign_manual_gan_sees_augmented_inputs_in_training_only(tmp_path: Path) -> None:
    module = TemplateGAN()
    callback = AdaptiveAugmentation(pipe=MarkingPipe(p=0.5), every_n_batches=2)
    trainer = make_trainer(tmp_path, [callback], max_epochs=1, num_sanity_val_steps=1)
    trainer.fit(module, loader(16), loader(8))

    seen = module.discriminator.seen
    training_inputs = [images for training, images in seen if training]
    eval_inputs = [images for training, images in seen if not training]
    # per batch: G step (fakes), D step (reals, fakes) + the measurement every 2nd batch (reals)
    assert len(training_inputs) == 4 * 3 + 2
    assert all(images.min() > 5 for images in training_inputs)  # every D input was augmented
    assert len(eval_inputs) == 1 + 2 and all(images.abs().max() <= 1 for images in eval_inputs)
    assert "ada/p" in trainer.callback_metrics and "ada/rt" in trainer.callback_metrics
    assert not module.discriminator._forward_pre_hooks  # the hook is gone after fit
    module.train()
    module.discriminator(make_images(2))
    assert module.discriminator.seen[-1][1].abs().max() <= 1  # and D is back to un-augmented


def test_foreign_automatic_gan_with_labels_passes_labels_through(tmp_path: Path) -> None:
    module = ConditionalGAN()
    callback = FixedAugmentation(pipe=MarkingPipe(p=0.5), every_n_batches=2)
    make_trainer(tmp_path, [callback], num_sanity_val_steps=1).fit(module, loader(16), loader(8))
    training_calls = [(images, labels) for training, images, labels in module.netD.seen if training]
    assert len(training_calls) == 2 + (1 + 1) + 2 + (1 + 1)  # D, G + measurement, D, G + measurement
    assert all(images.min() > 5 for images, _ in training_calls)
    batch_labels = {tuple(labels.tolist()) for labels in module.batch_labels}
    assert all(tuple(labels.tolist()) in batch_labels for _, labels in training_calls)
    assert all(images.abs().max() <= 1 for training, images, _ in module.netD.seen if not training)
    assert not module.netD._forward_pre_hooks
    assert -1 <= callback.rt <= 1  # measured on the labelled batches


def test_foreign_path_logs_p_to_any_logger(tmp_path: Path) -> None:
    callback = AdaptiveAugmentation(pipe=MarkingPipe(), every_n_batches=1, speed_kimg=0.01)
    logger = CSVLogger(tmp_path, name="ada")
    make_trainer(tmp_path, [callback], logger=logger, log_every_n_steps=1).fit(TemplateGAN(), loader(16))
    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("ada/p")]
    assert len(rows) == 4
    assert all(row["ada/rt"] for row in rows)
    assert [float(row["ada/p"]) for row in rows][-1] == pytest.approx(callback.p)


def test_memorising_discriminator_drives_rt_to_one_and_p_up(tmp_path: Path) -> None:
    """Closed loop: D trained hard on 8 images learns them (r_t -> 1) and p climbs."""
    torch.manual_seed(0)
    module = TemplateGAN(lr=1e-2, d_steps=3)
    callback = AdaptiveAugmentation(pipe=NoisePipe(), every_n_batches=1, speed_kimg=0.04)
    trajectory = Trajectory(callback)
    make_trainer(tmp_path, [callback, trajectory]).fit(module, loader(8, repeat=5))  # 10 updates of 4 / 40
    rts = [rt for _, rt in trajectory.points]
    assert sum(rt == 1.0 for rt in rts) >= 8  # D tells every real apart ...
    assert callback.p >= 0.6  # ... so p climbs: at least 8 of the 10 updates went up
    assert float(callback.pipe.p) == pytest.approx(callback.p)


def test_discriminator_rejecting_reals_drives_p_down_to_zero(tmp_path: Path) -> None:
    """Closed loop the other way: a frozen D scoring every real 0.3 (a probability) gives r_t = -1."""
    module = TemplateGAN(lr=0.0)
    with torch.no_grad():
        module.discriminator.model[3].weight.zero_()
        module.discriminator.model[3].bias.fill_(math.log(0.3 / 0.7))
    callback = AdaptiveAugmentation(pipe=MarkingPipe(p=0.9), every_n_batches=1, speed_kimg=0.01)
    make_trainer(tmp_path, [callback]).fit(module, loader(12))  # 3 updates of -0.4
    assert callback.rt == -1.0  # sigmoid output read as a probability: 0.3 < 0.5 means "fake"
    assert callback.p == 0.0


def test_missing_discriminator_fails_at_setup_naming_discriminator_attr(tmp_path: Path) -> None:
    module = TemplateGAN()
    module.critic_net = module.discriminator
    del module.discriminator
    with pytest.raises(ValueError, match="discriminator_attr"):
        make_trainer(tmp_path, [AdaptiveAugmentation(pipe=MarkingPipe())]).fit(module, loader(8))
    with pytest.raises(ValueError, match="discriminator_attr='netD'"):
        make_trainer(tmp_path, [AdaptiveAugmentation(pipe=MarkingPipe(), discriminator_attr="netD")]).fit(
            TemplateGAN(), loader(8)
        )


def test_missing_images_fail_before_the_first_training_step_naming_image_key(tmp_path: Path) -> None:
    module = TemplateGAN()
    module.training_step = lambda batch, batch_idx: pytest.fail("training_step ran")
    trainer = make_trainer(tmp_path, [AdaptiveAugmentation(pipe=MarkingPipe())])
    with pytest.raises(ValueError, match="image_key"):
        trainer.fit(module, loader(8, as_dict=True))
    assert not module.discriminator._forward_pre_hooks  # removed on the exception too


def test_dict_batches_are_read_with_image_key(tmp_path: Path) -> None:
    class DictGAN(TemplateGAN):
        def training_step(self, batch, batch_idx):
            return super().training_step((batch["pixels"], None), batch_idx)

    callback = AdaptiveAugmentation(pipe=MarkingPipe(), image_key="pixels", every_n_batches=1, speed_kimg=1.0)
    make_trainer(tmp_path, [callback]).fit(DictGAN(), loader(8, as_dict=True))
    assert callback.rt is not None and not math.isnan(callback.rt)


def test_measurement_leaves_discriminator_buffers_untouched(tmp_path: Path) -> None:
    class BatchNormGAN(TemplateGAN):
        def __init__(self) -> None:
            super().__init__(lr=0.0)
            self.discriminator.model.insert(1, nn.BatchNorm1d(64))

    module = BatchNormGAN()
    # p held at 0 with every_n_batches=1: measures r_t every batch
    callback = FixedAugmentation(pipe=MarkingPipe(), every_n_batches=1)
    reference = BatchNormGAN()
    reference.load_state_dict(module.state_dict())
    torch.manual_seed(1)
    make_trainer(tmp_path, [callback]).fit(module, loader(8))
    torch.manual_seed(1)
    no_measurement = FixedAugmentation(pipe=MarkingPipe(), every_n_batches=100)
    make_trainer(tmp_path, [no_measurement]).fit(reference, loader(8))
    assert callback.rt is not None  # the measurement ran after every batch
    running_mean = module.discriminator.model[1].running_mean
    assert torch.equal(running_mean, reference.discriminator.model[1].running_mean)


def test_default_pipe_is_a_real_augment_pipe(tmp_path: Path) -> None:
    ada = pytest.importorskip("lightning_genaug.augment.ada_pipe")
    module = TemplateGAN()
    callback = FixedAugmentation(every_n_batches=2)

    class FullStrength(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            callback.pipe.set_p(1.0)  # the pipe the callback built: p's one home

    make_trainer(tmp_path, [callback, FullStrength()]).fit(module, loader(8))
    assert isinstance(callback.pipe, ada.AugmentPipe) and float(callback.pipe.p) == 1.0
    raw_batches = make_images(8).split(BATCH)
    training_inputs = [images for training, images in module.discriminator.seen if training]
    assert len(training_inputs) == 2 * 3 + 1
    assert not any(torch.allclose(images, raw) for images in training_inputs for raw in raw_batches)


@pytest.mark.parametrize("pipe_path", ["diffaug.DiffAugment", "scaling.DataScaling"])
def test_drives_other_protocol_pipes(tmp_path: Path, pipe_path: str) -> None:
    module_name, class_name = pipe_path.split(".")
    pipe_class = getattr(pytest.importorskip(f"lightning_genaug.augment.{module_name}"), class_name)
    pipe = pipe_class()
    callback = AdaptiveAugmentation(pipe=pipe, every_n_batches=1, speed_kimg=0.01)
    module = TemplateGAN(lr=1e-2, d_steps=3)
    make_trainer(tmp_path, [callback], max_epochs=2).fit(module, loader(8))
    assert callback.pipe is pipe
    assert float(pipe.p) == pytest.approx(callback.p)
    assert callback.rt is not None and not math.isnan(callback.rt)


# --------------------------------------------------------------------------- checkpoint / resume


def _fit_and_resume(tmp_path: Path, make_module, make_callback, loaders) -> tuple[float, float, float]:
    """p after 12 batches uninterrupted, after 6 batches (checkpoint), and after resuming to 12."""
    uninterrupted = make_callback()
    torch.manual_seed(0)
    make_trainer(tmp_path, [uninterrupted], max_epochs=2, limit_train_batches=6).fit(make_module(), loaders())

    first = make_callback()
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, [first], max_epochs=1, limit_train_batches=6)
    trainer.fit(make_module(), loaders())
    checkpoint = tmp_path / "stop.ckpt"
    trainer.save_checkpoint(checkpoint)

    resumed = make_callback()
    module = make_module()
    trainer = make_trainer(tmp_path, [resumed], max_epochs=2, limit_train_batches=6)
    trainer.fit(module, loaders(), ckpt_path=checkpoint)
    return uninterrupted.p, first.p, resumed.p


def test_native_resume_continues_p_and_the_interval_exactly(tmp_path: Path) -> None:
    def scripted(step: int) -> list[float]:
        return [1.0, 1.0, 1.0, 1.0] if step < 6 else [1.0, 1.0, 1.0, -1.0]

    def make_callback() -> AdaptiveAugmentation:
        return AdaptiveAugmentation(every_n_batches=4, speed_kimg=0.04)

    uninterrupted, at_stop, resumed = _fit_and_resume(
        tmp_path, lambda: ScriptedNative(scripted), make_callback, lambda: loader(24)
    )
    # Updates at batches 4, 8 and 12, 16 images each. The interval of batches 5-8 straddles the
    # checkpoint: its r_t = (4 + 4 + 2 + 2) / 16 = 0.75 rises only if the signs observed before the
    # stop (module buffers), the batch counter and the image counter (callback state) all survive.
    stats = [(16.0, 16.0, 16.0), (12.0, 16.0, 16.0), (8.0, 16.0, 16.0)]
    assert at_stop == pytest.approx(0.4)
    expected = expected_p(stats, target=0.6, speed_kimg=0.04, max_p=1.0)
    assert resumed == uninterrupted == pytest.approx(expected)
    assert resumed == pytest.approx(0.4)  # 0.4 -> 0.8 -> 0.4


def test_foreign_resume_restores_the_callbacks_own_pipe(tmp_path: Path) -> None:
    def frozen_confident_gan() -> TemplateGAN:
        module = TemplateGAN(lr=0.0)
        with torch.no_grad():
            module.discriminator.model[3].bias.fill_(10.0)  # every real scored ~1: r_t = 1
        return module

    def make_callback() -> AdaptiveAugmentation:
        return AdaptiveAugmentation(pipe=MarkingPipe(), every_n_batches=4, speed_kimg=0.1)

    uninterrupted, at_stop, resumed = _fit_and_resume(
        tmp_path, frozen_confident_gan, make_callback, lambda: loader(24)
    )
    assert at_stop == pytest.approx(0.16)  # one update (batch 4) of 16 / 100
    assert resumed == uninterrupted == pytest.approx(0.48)  # updates at 4, 8, 12: not at 6 + 4


def test_a_fresh_run_starts_from_the_pipes_own_p(tmp_path: Path) -> None:
    pipe = MarkingPipe(p=0.25)
    callback = AdaptiveAugmentation(pipe=pipe)
    seen_p: list[float] = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen_p.append(float(pl_module.discriminator_pipe.p))

    module = TemplateGAN(lr=0.0)
    module.discriminator_pipe = pipe
    make_trainer(tmp_path, [callback, Probe()], limit_train_batches=1).fit(module, loader(8))
    assert seen_p == [0.25]


def test_callback_added_on_resume_continues_from_the_modules_own_p(tmp_path: Path) -> None:
    module = ScriptedNative(four_signs)
    trainer = make_trainer(tmp_path, [], limit_train_batches=2)
    trainer.fit(module, loader(8))
    module.augment_pipe.set_p(0.3)  # e.g. adapted by a previous controller the checkpoint has no state of
    trainer.save_checkpoint(tmp_path / "no_callback.ckpt")

    callback = AdaptiveAugmentation(every_n_batches=100)
    make_trainer(tmp_path, [callback], max_epochs=2, limit_train_batches=2).fit(
        ScriptedNative(four_signs), loader(8), ckpt_path=tmp_path / "no_callback.ckpt"
    )
    assert callback.p == pytest.approx(0.3)


# --------------------------------------------------------------------------- heuristic="rt_clean"


class SplitVerdictD(nn.Module):
    """Calls every clean image real (+1) and every marked, i.e. augmented, image fake (-1)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # for the template's optimiser and backward
        self.probability = nn.Sigmoid()  # the template's loss takes probabilities

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        verdict = torch.where(img.flatten(1).amax(dim=1, keepdim=True) <= 1.0, 1.0, -1.0)
        return self.probability(10.0 * verdict + 0.0 * (img.flatten(1).mean(1, keepdim=True) + self.unused))


class SplitVerdictGAN(TemplateGAN):
    def __init__(self) -> None:
        super().__init__(lr=0.0)
        self.discriminator = SplitVerdictD()


@pytest.mark.parametrize(
    ("heuristic", "reading", "direction"),
    [("rt", -1.0, -1), ("rt_clean", 1.0, 1)],
    ids=["augmented-reals-read-fake", "clean-reals-read-real"],
)
def test_each_heuristic_reads_its_own_reals_and_moves_p_its_way(
    tmp_path: Path, heuristic: str, reading: float, direction: int
) -> None:
    """D memorised the clean pixels and rejects every augmented image: the two readings disagree."""
    callback = AdaptiveAugmentation(
        pipe=MarkingPipe(p=0.5), heuristic=heuristic, every_n_batches=2, speed_kimg=0.08
    )
    make_trainer(tmp_path, [callback]).fit(SplitVerdictGAN(), loader(16))  # 4 batches: 2 steps of 8 images
    assert callback.p == pytest.approx(0.5 + direction * 2 * 8 / 80)
    assert callback.rt == -1.0
    assert (callback.rt_clean == reading) if heuristic == "rt_clean" else callback.rt_clean is None


class CleanScoredNative(ScriptedNative):
    """A native module whose ``score_reals`` answers ``clean_sign`` for every image, and counts its calls."""

    def __init__(self, clean_sign: float) -> None:
        super().__init__(lambda step: [-1.0, -1.0, -1.0, -1.0])  # augmented reals: all read fake
        self.clean_sign = clean_sign
        self.scored: list[torch.Tensor] = []

    def score_reals(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.scored.append(images)
        return torch.full((images.shape[0], 1), self.clean_sign)


def test_native_clean_reading_scores_the_last_batch_of_each_interval_once(tmp_path: Path) -> None:
    module = CleanScoredNative(clean_sign=1.0)
    callback = AdaptiveAugmentation(heuristic="rt_clean", every_n_batches=4, speed_kimg=0.1)
    make_trainer(tmp_path, [callback], max_epochs=2).fit(module, loader(16))  # 8 batches: 2 steps
    assert len(module.scored) == 2 and all(images.shape[0] == BATCH for images in module.scored)
    assert torch.equal(module.scored[0], make_images(16)[12:16])  # the 4th batch, un-augmented
    assert callback.rt_clean == 1.0 and callback.rt == -1.0
    assert callback.p == pytest.approx(2 * 16 / 100)  # up twice, whatever the augmented reals said


def test_clean_reading_on_a_native_module_without_score_reals_fails_at_setup(tmp_path: Path) -> None:
    callback = AdaptiveAugmentation(heuristic="rt_clean")
    with pytest.raises(ValueError, match=r"score_reals.*heuristic='rt'"):
        make_trainer(tmp_path, [callback]).fit(ScriptedNative(four_signs), loader(8))


def test_an_unknown_heuristic_names_the_accepted_ones() -> None:
    accepted = r"heuristic. 'rtv'; valid values are: auto, rt, rt_clean, rv, gap\."
    with pytest.raises(ValueError, match=accepted) as error:
        AdaptiveAugmentation(heuristic="rtv")
    assert "\n" not in str(error.value)


def test_every_step_sums_its_readings_over_ranks_in_one_reduction(tmp_path: Path) -> None:
    reductions: list[torch.Tensor] = []

    class CountingReduce(pl.Callback):
        def setup(self, trainer, pl_module, stage):
            reduce = trainer.strategy.reduce

            def counted(tensor, *args, **kwargs):
                if tensor.dtype == torch.float64:  # the callback's (Lightning reduces its own counts too)
                    reductions.append(tensor.clone())
                return reduce(tensor, *args, **kwargs)

            trainer.strategy.reduce = counted

    callback = AdaptiveAugmentation(heuristic="rt_clean", every_n_batches=2, speed_kimg=0.1)
    make_trainer(tmp_path, [CountingReduce(), callback]).fit(CleanScoredNative(-1.0), loader(16))
    assert len(reductions) == 2  # 4 batches, 2 steps, one reduction each
    # augmented sign sum and count, clean sign sum and count: every reading the step decides on
    assert reductions[0].tolist() == [-8.0, 8.0, -4.0, 4.0] + [0.0] * 6  # r_v's sums: not read here


def test_native_resume_continues_the_clean_reading_exactly(tmp_path: Path) -> None:
    def make_callback() -> AdaptiveAugmentation:
        return AdaptiveAugmentation(heuristic="rt_clean", every_n_batches=4, speed_kimg=0.04)

    uninterrupted, at_stop, resumed = _fit_and_resume(
        tmp_path, lambda: CleanScoredNative(1.0), make_callback, lambda: loader(24)
    )
    assert at_stop == pytest.approx(0.4)  # one step up at batch 4
    assert resumed == uninterrupted == pytest.approx(1.0)  # steps at 4, 8, 12, clamped at max_p


# --------------------------------------------------------------------------- heuristic="rv"


class HeldOutData(pl.LightningDataModule):
    """16 training reals in [-1, 1] and ``heldout`` held-out reals in (2, 3) (told apart by value)."""

    def __init__(self, heldout: int = 32) -> None:
        super().__init__()
        self.heldout = heldout
        self.has_validation_data = heldout > 0

    def train_dataloader(self) -> DataLoader:
        return loader(16)

    def val_dataloader(self) -> DataLoader:
        images = 2.0 + torch.rand(self.heldout, *IMAGE_SHAPE, generator=torch.Generator().manual_seed(1))
        return DataLoader(
            TensorDataset(images, torch.zeros(self.heldout, dtype=torch.long)), batch_size=BATCH
        )


class ScoredNative(ScriptedNative):
    """D's raw outputs: 2 on training reals, 0 on held-out reals, -2 on generated images: r_v = 0.5."""

    def __init__(self) -> None:
        super().__init__(four_signs)
        self.heldout_seen: list[torch.Tensor] = []
        self.fakes_scored = 0

    def score_reals(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        heldout = images.amin() > 1.5
        if heldout:
            self.heldout_seen.append(images)
        return torch.full((images.shape[0], 1), 0.0 if heldout else 2.0)

    def score_fakes(self, n: int, real_labels: torch.Tensor | None = None) -> torch.Tensor:
        self.fakes_scored += n
        return torch.full((n, 1), -2.0)


@pytest.mark.parametrize(
    ("heuristic", "target", "direction"), [("rv", 0.6, -1), ("rv", 0.4, 1), ("gap", 2.5, -1), ("gap", 1.5, 1)]
)
def test_held_out_readings_read_train_heldout_and_fake_scores_and_move_p_their_way(
    tmp_path: Path, heuristic: str, target: float, direction: int
) -> None:
    module = ScoredNative()
    module.augment_pipe.set_p(0.5)
    callback = AdaptiveAugmentation(heuristic=heuristic, target=target, every_n_batches=2, speed_kimg=0.08)
    make_trainer(tmp_path, [callback], limit_val_batches=0).fit(module, datamodule=HeldOutData())
    assert callback.gap == pytest.approx(2.0)  # 2 - 0, in D's units (gap's target may exceed 1)
    if heuristic == "rv":
        assert callback.rv == pytest.approx(0.5)  # (2 - 0) / (2 - (-2))
        assert module.fakes_scored == 2 * BATCH
    else:  # the gap needs no generator
        assert callback.rv is None and module.fakes_scored == 0
    assert callback.p == pytest.approx(0.5 + direction * 2 * 8 / 80)  # 4 batches: 2 steps of 8 images
    assert len(module.heldout_seen) == 2 and all(images.shape[0] == BATCH for images in module.heldout_seen)


@pytest.mark.parametrize(
    ("module", "data", "message"),
    [
        (ScoredNative, HeldOutData(heldout=0), r"holds 0 images .*`data.val_fraction: 0.1`"),
        (ScoredNative, HeldOutData(heldout=8), r"holds 8 images \(at least 32\)"),
        (
            lambda: ScriptedNative(four_signs),
            HeldOutData(),
            r"needs `ScriptedNative.score_reals` and `score_fakes`",
        ),
        (TemplateGAN, HeldOutData(), r"foreign GAN\): choose `heuristic='rt'`"),
    ],
    ids=["no-heldout", "too-few", "no-score-methods", "foreign"],
)
def test_rv_without_what_it_reads_fails_at_setup_in_one_line(tmp_path: Path, module, data, message) -> None:
    callback = AdaptiveAugmentation(heuristic="rv")
    with pytest.raises(ValueError, match=message) as error:
        make_trainer(tmp_path, [callback], limit_val_batches=0).fit(module(), datamodule=data)
    assert "\n" not in str(error.value)


def test_rv_is_read_over_a_window_of_intervals_not_one_batch() -> None:
    """One held-out batch that D suddenly scores like a fake moves r_v by a fraction, not to 1."""
    like_training = torch.tensor([64.0, 32, 64, 32, -64, 32], dtype=torch.float64)  # r_v = 0
    like_fakes = torch.tensor([64.0, 32, -64, 32, -64, 32], dtype=torch.float64)  # r_v = 1 alone
    window = torch.zeros(6, dtype=torch.float64)
    for _ in range(40):
        window = windowed_scores(window, like_training)
    assert measured_rv(*window_means(window)) == pytest.approx(0.0)
    window = windowed_scores(window, like_fakes)
    assert 0.0 < measured_rv(*window_means(window)) < 0.1
    for _ in range(100):  # long after the change the window reads only the new scores
        window = windowed_scores(window, like_fakes)
    assert measured_rv(*window_means(window)) == pytest.approx(1.0, abs=1e-2)


# --------------------------------------------------------------------------- heuristic="gap"


def test_gap_target_is_in_d_units_while_the_sign_readings_stay_below_1() -> None:
    assert AdaptiveAugmentation(heuristic="gap", target=2.0).target == 2.0
    with pytest.raises(ValueError, match=r"`target` must be in \(0.0, inf\], got 0.0"):
        AdaptiveAugmentation(heuristic="gap", target=0.0)
    with pytest.raises(ValueError, match=r"`target` must be in \[0.0, 1.0\), got 2.0"):
        AdaptiveAugmentation(heuristic="rt", target=2.0)


@pytest.mark.parametrize(
    ("module", "data", "message"),
    [
        (ScoredNative, HeldOutData(heldout=8), r"holds 8 images \(at least 32\)"),
        (lambda: ScriptedNative(four_signs), HeldOutData(), r"needs `ScriptedNative.score_reals` \(D's"),
        (TemplateGAN, HeldOutData(), r"foreign GAN\): choose `heuristic='rt'`"),
    ],
    ids=["too-few", "no-score-reals", "foreign"],
)
def test_gap_without_what_it_reads_fails_at_setup_in_one_line(tmp_path: Path, module, data, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        make_trainer(tmp_path, [AdaptiveAugmentation(heuristic="gap")], limit_val_batches=0).fit(
            module(), datamodule=data
        )
    assert "\n" not in str(error.value)


def test_gap_reading_survives_a_checkpoint(tmp_path: Path) -> None:
    callback = AdaptiveAugmentation(heuristic="gap", target=1.0, every_n_batches=2, speed_kimg=0.08)
    make_trainer(tmp_path, [callback], limit_val_batches=0).fit(ScoredNative(), datamodule=HeldOutData())
    restored = AdaptiveAugmentation(heuristic="gap", target=1.0)
    restored.load_state_dict(callback.state_dict())
    assert restored.gap == callback.gap == pytest.approx(2.0)
    assert restored.state_dict() == callback.state_dict()


def test_rv_window_survives_a_checkpoint(tmp_path: Path) -> None:
    module = ScoredNative()
    callback = AdaptiveAugmentation(heuristic="rv", target=0.5, every_n_batches=2, speed_kimg=0.08)
    make_trainer(tmp_path, [callback], limit_val_batches=0).fit(module, datamodule=HeldOutData())
    restored = AdaptiveAugmentation(heuristic="rv")
    restored.load_state_dict(callback.state_dict())
    assert restored.state_dict() == callback.state_dict()
    assert sum(restored.state_dict()["rv_window"]) != 0


# --------------------------------------------------------------------------- heuristic="auto" (the default)


def chained(module: pl.LightningModule) -> pl.LightningModule:
    """``module`` with DiffAugment chained after its pipe: the recipe the held-out gap was measured with."""
    module.augment_pipe = Chain([module.augment_pipe, DiffAugment("translation")])
    return module


@pytest.fixture
def auto_lines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The lines ``heuristic="auto"`` logs at setup."""
    lines: list[str] = []
    monkeypatch.setattr(ada_callback, "rank_zero_info", lines.append)
    return lines


def test_auto_holds_d_gap_at_half_a_logit_where_diffaugment_is_chained_and_reals_held_out(
    tmp_path: Path, auto_lines: list[str]
) -> None:
    module = chained(ScoredNative())  # D: 2 on training reals, 0 on held-out ones: a gap of 2 > 0.5
    callback = AdaptiveAugmentation(every_n_batches=2, speed_kimg=0.08)
    make_trainer(tmp_path, [callback], limit_val_batches=0).fit(module, datamodule=HeldOutData())
    assert (callback.heuristic, callback.reading, callback.target) == ("auto", "gap", 0.5)
    assert callback.gap == pytest.approx(2.0)
    assert callback.p == pytest.approx(2 * 8 / 80)  # up: 2 steps of 8 images at speed 0.08 kimg
    assert auto_lines == [
        "AdaptiveAugmentation: heuristic='auto' holds 'gap' at 0.5: the module's pipe chains DiffAugment "
        "and the datamodule holds out 32 images."
    ]


@pytest.mark.parametrize(
    ("module", "data", "reason"),
    [
        (ScoredNative, HeldOutData(), "the module's pipe (MarkingPipe) chains no DiffAugment after it"),
        (
            lambda: chained(ScoredNative()),
            HeldOutData(heldout=8),
            "the datamodule holds out 8 images and D's held-out gap needs at least 32",
        ),
        (lambda: chained(ScriptedNative(four_signs)), HeldOutData(), "has no `score_reals(images, labels)`"),
        (TemplateGAN, HeldOutData(), "a GAN without `augment_pipe`, whose D the callback reads by its signs"),
    ],
    ids=["adas-pipe-alone", "too-few-held-out", "no-score-reals", "foreign"],
)
def test_auto_holds_the_papers_rt_at_0_6_otherwise_and_says_why(
    tmp_path: Path, auto_lines: list[str], module, data, reason: str
) -> None:
    callback = AdaptiveAugmentation(every_n_batches=2, speed_kimg=0.08)
    make_trainer(tmp_path, [callback], limit_val_batches=0).fit(module(), datamodule=data)
    assert (callback.reading, callback.target) == ("rt", 0.6)
    assert callback.gap is None and callback.rt is not None
    assert len(auto_lines) == 1 and auto_lines[0].startswith(
        "AdaptiveAugmentation: heuristic='auto' holds 'rt'"
    )
    assert reason in auto_lines[0]


def test_auto_keeps_a_given_target_and_refuses_one_that_rt_cannot_hold(tmp_path: Path) -> None:
    callback = AdaptiveAugmentation(target=0.7, every_n_batches=2, speed_kimg=0.08)
    make_trainer(tmp_path, [callback]).fit(ScriptedNative(four_signs), loader(8))
    assert (callback.reading, callback.target) == ("rt", 0.7)
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\) with heuristic='auto'.*heuristic='gap'") as error:
        AdaptiveAugmentation(target=1.5)
    assert "\n" not in str(error.value)


def test_a_resumed_run_must_hold_the_reading_its_checkpoint_held(tmp_path: Path) -> None:
    callback = AdaptiveAugmentation(every_n_batches=2, speed_kimg=0.08)
    make_trainer(tmp_path, [callback], limit_val_batches=0).fit(
        chained(ScoredNative()), datamodule=HeldOutData()
    )
    assert callback.state_dict()["reading"] == "gap"
    AdaptiveAugmentation(heuristic="gap").load_state_dict(callback.state_dict())
    with pytest.raises(ValueError, match=r"held 'gap', and this run's holds 'rt'.*`heuristic='gap'`"):
        AdaptiveAugmentation(heuristic="rt").load_state_dict(callback.state_dict())
