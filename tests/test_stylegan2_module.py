"""StyleGAN2ADA: the training loop's schedule, regularisers, EMA, checkpoints, transfer, NaN guard, I/O."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import AugmentPipe
from lightning_genaug.data import DigitsDataModule
from lightning_genaug.models import PredictOptions
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.models.stylegan2.ema import ema_beta
from lightning_genaug.regularizers import R1, BalancedConsistency

BATCH = 8


def tiny(**overrides) -> StyleGAN2ADA:
    """An unconditional 8x8 grey model of the ``tiny`` config (``AugmentPipe("bgc")`` at p = 0, R1)."""
    args = dict(config="tiny", resolution=8, channels=1, num_classes=0)
    return StyleGAN2ADA(**{**args, **overrides})


def random_loader(batches: int = 2) -> DataLoader:
    """Unlabelled 8x8 grey images in [-1, 1], the same for every call, in a fixed order."""
    images = torch.rand(batches * BATCH, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(images), batch_size=BATCH, shuffle=False)


def trainer(tmp_path: Path, batches: int | None = None, epochs: int = 1, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_train_batches=batches,
        logger=False,
        enable_checkpointing=kwargs.pop("enable_checkpointing", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {name for name, value in module.state_dict().items() if not torch.equal(before[name], value)}


class PhaseRecorder(StyleGAN2ADA):
    """Records which batches ran the regularisation phases."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: dict[str, list[int]] = {"Greg": [], "Dreg": []}

    @property
    def loss(self):
        loss, batch = super().loss, int(self.num_batches)
        for phase, name in (
            ("Greg", "generator_regularization_loss"),
            ("Dreg", "discriminator_regularization_loss"),
        ):
            compute = getattr(loss, name)

            def recorded(*args, phase=phase, compute=compute):
                self.calls[phase].append(batch)
                return compute(*args)

            setattr(loss, name, recorded)
        return loss


# ---------------------------------------------------------------------------------------- training


def test_one_training_step_updates_g_d_and_ema(tmp_path):
    model = tiny()
    g, d, ema = snapshot(model.G), snapshot(model.D), snapshot(model.G_ema)
    trainer(tmp_path, batches=1).fit(model, train_dataloaders=random_loader(1))
    assert {name.split(".")[0] for name in changed(g, model.G)} == {"mapping", "synthesis"}
    assert len(changed(d, model.D)) > 0.9 * len(d)
    assert changed(ema, model.G_ema)  # the first update copies G (ramp-up) or moves towards it
    assert int(model.cur_nimg) == BATCH and int(model.num_batches) == 1


def test_default_schedule_regularises_g_every_4_and_d_every_16_batches():
    model = StyleGAN2ADA("tiny", resolution=8, channels=1, num_classes=0)
    assert (model.train_config.r1_interval, model.train_config.pl_interval) == (16, 4)  # reference defaults
    schedule = {batch: model.phases(batch) for batch in range(40)}
    assert [batch for batch, phases in schedule.items() if "Dreg" in phases] == [0, 16, 32]
    assert [batch for batch, phases in schedule.items() if "Greg" in phases] == list(range(0, 40, 4))
    assert all(phases[0] == "Gmain" and "Dmain" in phases for phases in schedule.values())
    cifar = StyleGAN2ADA(
        "cifar", resolution=8, channels=1, num_classes=0, config_overrides={"channel_max": 8}
    )
    assert cifar.phases(0) == ["Gmain", "Dmain", "Dreg"]  # path length is off in cifar
    assert tiny(regularizer=R1(gamma=0.0)).phases(0)[-1] == "Dmain"
    assert tiny(regularizer=None).phases(0)[-1] == "Dmain"


def test_network_and_training_fields_have_one_home():
    """Preset fields come from `config_overrides`; R1's weight and interval from the regulariser only."""
    overrides = {"lr": 0.001, "pl_decay": 0.02}
    model = tiny(config_overrides=overrides, regularizer=R1(gamma=0.5, every_n_batches=8))
    assert (model.train_config.lr, model.train_config.pl_decay) == (0.001, 0.02)
    assert (model.regularizer.gamma, model.regularizer.every_n_batches) == (0.5, 8)
    assert [batch for batch in range(20) if "Dreg" in model.phases(batch)] == [0, 8, 16]
    default = tiny()  # R1() takes the tiny preset's values where it was given none
    assert (default.regularizer.gamma, default.regularizer.every_n_batches) == (0.05, 16)
    half = tiny(regularizer=R1(gamma=0.5))
    assert (half.regularizer.gamma, half.regularizer.every_n_batches) == (0.5, 16)
    with pytest.raises(ValueError, match="belong to the D regulariser"):
        tiny(config_overrides={"gamma": 1.0})
    with pytest.raises(ValueError, match="Unknown StyleGAN2Config field"):
        tiny(config_overrides={"gama": 1.0})
    with pytest.raises(ValueError, match="lr"):  # checked at construction, before any shape is known
        StyleGAN2ADA("tiny", config_overrides={"lr": -1.0})


def test_training_runs_the_regularisers_on_schedule(tmp_path):
    model = PhaseRecorder(
        config="tiny",
        resolution=8,
        channels=1,
        num_classes=0,
        regularizer=R1(every_n_batches=3),
        config_overrides={"pl_interval": 2},
    )
    trainer(tmp_path, batches=4).fit(model, train_dataloaders=random_loader(4))
    assert model.calls == {"Greg": [0, 2], "Dreg": [0, 3]}


def test_max_kimg_stops_training(tmp_path):
    model = tiny(max_kimg=0.016)  # 16 images = 2 batches of 8
    trainer(tmp_path, batches=5).fit(model, train_dataloaders=random_loader(5))
    assert int(model.num_batches) == 2


def test_adam_is_corrected_for_lazy_regularisation():
    model = tiny(config_overrides={"lr": 0.002, "betas": (0.0, 0.99)})
    opt_g, opt_d = model.configure_optimizers()
    assert opt_d.param_groups[0]["lr"] == pytest.approx(0.002 * 16 / 17)
    assert opt_d.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (16 / 17))
    assert opt_g.param_groups[0]["lr"] == pytest.approx(0.002 * 4 / 5)


def test_r1_is_taken_on_unaugmented_reals_through_the_augment_pipe():
    model = tiny(augment=AugmentPipe(p=1.0), regularizer=R1(gamma=2.0))
    real = torch.rand(BATCH, 1, 8, 8) * 2 - 1
    c = torch.zeros(BATCH, 0)
    torch.manual_seed(0)
    loss = model.loss.discriminator_regularization_loss(real, c)

    torch.manual_seed(0)  # replay the same augmentation draw
    leaf = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.D(model.augment_pipe(leaf), c).sum(), leaf)
    assert loss.item() == pytest.approx(grad.square().sum((1, 2, 3)).mean().item() * 2.0 / 2, rel=1e-5)

    model.augment_pipe.set_p(0.0)
    loss_without_pipe = model.loss.discriminator_regularization_loss(real, c)
    assert not math.isclose(loss.item(), loss_without_pipe.item(), rel_tol=1e-3)
    loss.backward()  # the penalty back-propagates into D (double backward through the pipe)
    assert model.D.discriminator_blocks()[0].conv0.weight.grad.abs().sum() > 0


def test_discriminator_sees_augmented_images_and_feeds_the_ada_statistics(tmp_path):
    model = tiny(augment=AugmentPipe(p=0.5))
    seen = []
    model.D.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    trainer(tmp_path, batches=1).fit(model, train_dataloaders=random_loader(1))
    _, count = model.augment_pipe.pop_stats()
    assert count.item() == BATCH  # observe() got D's logits for the batch of reals
    real = random_loader(1).dataset.tensors[0]
    assert all(not torch.equal(images, real) for images in seen)


def test_score_reals_is_d_on_the_clean_images_and_drives_the_clean_heuristic(tmp_path):
    from lightning_genaug.callbacks import AdaptiveAugmentation

    model = tiny(augment=AugmentPipe(p=0.5))
    callback = AdaptiveAugmentation(heuristic="rt_clean", every_n_batches=2, speed_kimg=0.1)
    trainer(tmp_path, batches=2, callbacks=[callback]).fit(model, train_dataloaders=random_loader(2))
    last_batch = random_loader(2).dataset.tensors[0][BATCH:]
    logits = model.score_reals(last_batch)
    assert logits.shape == (BATCH, 1) and not logits.requires_grad
    torch.testing.assert_close(logits, model.D(last_batch, torch.zeros(BATCH, 0)), rtol=0, atol=0)
    assert callback.rt_clean is not None and -1.0 <= callback.rt_clean <= 1.0
    assert callback.p == pytest.approx(0.5 + math.copysign(0.16, callback.rt_clean - 0.6))


def test_score_fakes_is_d_on_the_training_generator_and_drives_rv(tmp_path):
    from lightning_genaug.callbacks import AdaptiveAugmentation

    model = tiny(num_classes=None, augment=AugmentPipe(p=0.2))
    data = DigitsDataModule(resolution=8, batch_size=BATCH, max_images=80, val_fraction=0.5, use_labels=False)
    callback = AdaptiveAugmentation(heuristic="rv", every_n_batches=2, speed_kimg=0.1)
    trainer(tmp_path, batches=2, callbacks=[callback], limit_val_batches=0).fit(model, datamodule=data)
    w_avg = model.G.mapping.w_avg.clone()
    logits = model.score_fakes(4)
    assert logits.shape == (4, 1) and not logits.requires_grad
    assert torch.equal(model.G.mapping.w_avg, w_avg)  # the truncation average is training's alone
    assert callback.rv is not None and math.isfinite(callback.rv)
    assert callback.p == pytest.approx(0.2 + math.copysign(0.16, callback.rv - 0.6))


def test_labels_for_an_unconditional_network_are_refused_not_ignored():
    with pytest.raises(ValueError, match=r"unconditional \(num_classes=0\).*drop `labels`"):
        tiny().sample(2, labels=torch.tensor([0, 1]))


def test_conditional_training_reads_classes_from_the_datamodule(tmp_path):
    data = DigitsDataModule(resolution=8, batch_size=BATCH, max_images=32)
    model = StyleGAN2ADA("tiny", augment=None)
    trainer(tmp_path, batches=1).fit(model, datamodule=data)
    assert (model.hparams.resolution, model.hparams.channels, model.hparams.num_classes) == (8, 1, 10)
    assert model.G.c_dim == 10 and model.D.c_dim == 10
    assert model.sample(4, labels=torch.tensor([0, 1, 2, 3])).shape == (4, 1, 8, 8)


def test_explicit_shapes_win_over_the_datamodule(tmp_path):
    data = DigitsDataModule(resolution=8, batch_size=BATCH, max_images=16)
    model = StyleGAN2ADA("tiny", num_classes=0, augment=None)
    trainer(tmp_path, batches=1).fit(model, datamodule=data)
    assert model.G.c_dim == 0


def test_conditional_model_without_labels_fails_clearly(tmp_path):
    model = tiny(num_classes=10)
    with pytest.raises(ValueError, match="class-conditional"):
        trainer(tmp_path, batches=1).fit(model, train_dataloaders=random_loader(1))


def test_bcr_adds_a_consistency_loss(tmp_path):
    model = tiny(augment=None, consistency=BalancedConsistency(weight_real=10.0, weight_fake=10.0))
    assert float(model.consistency.transform.p) == 1.0  # bCR's T: x-flip + integer translation at p = 1
    real = torch.rand(BATCH, 1, 8, 8) * 2 - 1
    c = torch.zeros(BATCH, 0)
    torch.manual_seed(0)
    with_bcr = model.loss.discriminator_main_loss(real, c, c)
    model.consistency = None
    torch.manual_seed(0)
    without = model.loss.discriminator_main_loss(real, c, c)
    assert with_bcr.item() > without.item()


# ---------------------------------------------------------------------------------------- EMA


def test_ema_beta_formula_and_rampup():
    assert ema_beta(batch_size=64, cur_nimg=10**9, ema_kimg=10, ema_rampup=None) == 0.5 ** (64 / 10_000)
    assert ema_beta(batch_size=64, cur_nimg=1000, ema_kimg=500, ema_rampup=0.05) == 0.5 ** (64 / 50)
    assert ema_beta(batch_size=64, cur_nimg=0, ema_kimg=500, ema_rampup=0.05) == 0.0


def test_ema_halves_its_distance_to_g_after_one_half_life():
    # half-life 32 images = 4 batches of 8
    model = tiny(config_overrides={"ema_kimg": 0.032, "ema_rampup": None})
    model.cur_nimg.fill_(10**6)
    with torch.no_grad():
        for ema_param in model.G_ema.parameters():
            ema_param.zero_()
    for _ in range(4):
        model.update_ema(BATCH)
    for ema_param, param in zip(model.G_ema.parameters(), model.G.parameters(), strict=True):
        torch.testing.assert_close(ema_param, 0.5 * param)


# ---------------------------------------------------------------------------------------- checkpoints


class SeedPerStep(pl.Callback):
    """Seeds every batch from the global step and records the losses of the batch."""

    def __init__(self) -> None:
        self.losses: dict[int, tuple[float, float]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.manual_seed(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        metrics = trainer.callback_metrics
        self.losses[int(pl_module.num_batches)] = (metrics["loss/G"].item(), metrics["loss/D"].item())


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    def settings() -> dict:
        overrides = {"pl_interval": 2, "style_mixing_prob": 0.5}
        return dict(augment=AugmentPipe(p=0.5), regularizer=R1(every_n_batches=3), config_overrides=overrides)

    loader = random_loader(3)

    torch.manual_seed(0)
    straight, straight_log = tiny(**settings()), SeedPerStep()
    trainer(tmp_path / "a", epochs=2, callbacks=[straight_log]).fit(straight, train_dataloaders=loader)

    torch.manual_seed(0)
    first, first_log = tiny(**settings()), SeedPerStep()
    first_trainer = trainer(tmp_path / "b", epochs=1, callbacks=[first_log])
    first_trainer.fit(first, train_dataloaders=loader)
    first_trainer.save_checkpoint(tmp_path / "b" / "epoch1.ckpt")

    resumed, resumed_log = tiny(**settings()), SeedPerStep()
    trainer(tmp_path / "b", epochs=2, callbacks=[resumed_log]).fit(
        resumed, train_dataloaders=loader, ckpt_path=tmp_path / "b" / "epoch1.ckpt"
    )
    assert sorted(resumed_log.losses) == [4, 5, 6]
    for batch, losses_after in resumed_log.losses.items():
        assert losses_after == pytest.approx(straight_log.losses[batch], rel=1e-6)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, msg=name)


# ---------------------------------------------------------------------------------------- transfer


def test_freeze_d_leaves_the_first_blocks_unchanged(tmp_path):
    model = tiny(freeze_d=1)
    frozen, rest = model.D.discriminator_blocks()[0], model.D.discriminator_blocks()[1]
    frozen_before, rest_before = snapshot(frozen), snapshot(rest)
    trainer(tmp_path, batches=2).fit(model, train_dataloaders=random_loader(2))
    assert not changed(frozen_before, frozen)
    assert changed(rest_before, rest)
    assert not any(frozen_param.requires_grad for frozen_param in frozen.parameters())


def test_freeze_d_beyond_the_number_of_blocks_is_an_error():
    with pytest.raises(ValueError, match="freeze_d"):
        tiny(freeze_d=10)


def test_init_from_loads_the_networks_of_a_checkpoint(tmp_path):
    source = tiny()
    source_trainer = trainer(tmp_path, batches=1)
    source_trainer.fit(source, train_dataloaders=random_loader(1))
    source_trainer.save_checkpoint(tmp_path / "source.ckpt")

    target = tiny(init_from=str(tmp_path / "source.ckpt"), freeze_d=1)
    trainer(tmp_path, max_steps=0).fit(target, train_dataloaders=random_loader(1))
    for name in ("G", "D", "G_ema"):
        for key, value in getattr(source, name).state_dict().items():
            torch.testing.assert_close(getattr(target, name).state_dict()[key], value, msg=f"{name}.{key}")
    assert int(target.cur_nimg) == 0  # counters are not transferred


def test_a_model_loaded_from_its_checkpoint_keeps_its_weights_over_init_from(tmp_path):
    """A fine-tuned model's checkpoint records ``init_from``; loading it and fitting on (or predicting)
    must not put the starting point's weights back over the trained ones."""
    source = tiny()
    source_trainer = trainer(tmp_path, batches=1)
    source_trainer.fit(source, train_dataloaders=random_loader(1))
    source_trainer.save_checkpoint(tmp_path / "start.ckpt")

    tuned = tiny(init_from=str(tmp_path / "start.ckpt"))
    tuned_trainer = trainer(tmp_path, batches=2)
    tuned_trainer.fit(tuned, train_dataloaders=random_loader(2))
    tuned_trainer.save_checkpoint(tmp_path / "tuned.ckpt")
    assert changed(snapshot(source.G_ema), tuned.G_ema)

    loaded = StyleGAN2ADA.load_from_checkpoint(tmp_path / "tuned.ckpt")
    assert loaded.hparams.init_from == str(tmp_path / "start.ckpt")
    trainer(tmp_path, max_steps=0).fit(loaded, train_dataloaders=random_loader(1))
    for name in ("G", "D", "G_ema"):
        for key, value in getattr(tuned, name).state_dict().items():
            torch.testing.assert_close(getattr(loaded, name).state_dict()[key], value, msg=f"{name}.{key}")


def test_init_from_a_missing_file_names_the_argument(tmp_path):
    model = tiny(init_from=str(tmp_path / "missing.ckpt"))
    with pytest.raises(FileNotFoundError, match="init_from"):
        trainer(tmp_path, batches=1).fit(model, train_dataloaders=random_loader(1))


def test_init_from_a_checkpoint_of_other_channels_says_that_channels_differ(tmp_path):
    source = tiny(channels=1)  # built at construction: every size is given
    torch.save(
        {"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, tmp_path / "grey.ckpt"
    )

    target = tiny(channels=3, init_from=str(tmp_path / "grey.ckpt"))
    with pytest.raises(
        ValueError, match=r"channels is 1 there but 3 here; set them to the checkpoint's values"
    ):
        target.load_weights_from(tmp_path / "grey.ckpt")


# ---------------------------------------------------------------------------------------- NaN guard


@pytest.mark.parametrize(
    ("phase", "method"),
    [
        ("Gmain", "generator_main_loss"),
        ("Greg", "generator_regularization_loss"),
        ("Dmain", "discriminator_main_loss"),
        ("Dreg", "discriminator_regularization_loss"),
    ],
)
def test_nan_loss_stops_before_the_step_and_the_last_checkpoint_stays_good(tmp_path, phase, method):
    class Poisoned(StyleGAN2ADA):
        @property
        def loss(self):
            loss, batch = super().loss, int(self.num_batches)
            compute = getattr(loss, method)
            setattr(loss, method, lambda *args: compute(*args) * (float("nan") if batch == 2 else 1.0))
            return loss

    model = Poisoned(
        config="tiny",
        resolution=8,
        channels=1,
        num_classes=0,
        regularizer=R1(every_n_batches=2),
        config_overrides={"pl_interval": 2},
    )
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=1)
    before_bad_batch = {}

    class Snapshot(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            before_bad_batch.update({name: p.detach().clone() for name, p in pl_module.named_parameters()})

    run = trainer(tmp_path, batches=4, enable_checkpointing=True, callbacks=[checkpoints, Snapshot()])
    with pytest.raises(FloatingPointError, match=rf"phase {phase} at batch 2"):
        run.fit(model, train_dataloaders=random_loader(4))
    if phase.endswith("main"):  # the network of the bad phase kept its weights of the batch's start
        network = phase[0]
        assert all(
            torch.equal(before_bad_batch[name], p)
            for name, p in model.named_parameters()
            if name.startswith(f"{network}.")
        )
    assert all(torch.isfinite(p).all() for p in model.parameters())

    restored = StyleGAN2ADA.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert int(restored.num_batches) == 2
    assert all(
        torch.isfinite(value).all() for value in restored.state_dict().values() if value.is_floating_point()
    )


# ---------------------------------------------------------------------------------------- generation


def test_sample_follows_the_generator_protocol():
    model = tiny()
    model.train()
    images = model.sample(5, generator=torch.Generator().manual_seed(1))
    again = model.sample(5, generator=torch.Generator().manual_seed(1))
    assert images.shape == (5, 1, 8, 8) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    torch.testing.assert_close(images, again)
    assert model.G_ema.training  # the caller's mode is restored
    assert model.sample(3, truncation_psi=0.0).std(0).max() < 1e-5  # psi = 0: every image is the average


def test_predict_writes_pngs_and_a_grid_with_a_datamodule_lacking_predict_data(tmp_path):
    data = DigitsDataModule(resolution=8, batch_size=BATCH, max_images=16)
    options = PredictOptions(
        num_images=6, batch_size=4, output_dir=str(tmp_path / "out"), sample_kwargs={"truncation_psi": 0.7}
    )
    model = StyleGAN2ADA("tiny", predict=options)
    predictions = trainer(tmp_path).predict(model, datamodule=data)
    assert [batch.shape[0] for batch in predictions] == [4, 2]
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == ["grid.png"] + [f"seed{seed:06d}.png" for seed in range(6)]

    from PIL import Image

    # 8 px digits upscaled x8 to 64 px cells, 2 px gaps around and between: 3 columns, 2 rows
    assert Image.open(tmp_path / "out" / "grid.png").size == (3 * 66 + 2, 2 * 66 + 2)
    again = trainer(tmp_path).predict(model, datamodule=data)  # seeds fix the images
    torch.testing.assert_close(torch.cat(again), torch.cat(predictions))


def test_predict_gives_every_item_of_a_loader_its_own_seed_with_a_short_last_batch(tmp_path):
    """5 items in batches of 2: seeds 0-4, five PNGs (seed + batch_idx * len(batch) repeated seed 4)."""
    images = torch.zeros(5, 1, 8, 8)
    model = tiny(predict=PredictOptions(output_dir=str(tmp_path / "out")))
    loader = DataLoader(TensorDataset(images), batch_size=2)
    predicted = torch.cat(trainer(tmp_path).predict(model, dataloaders=loader))
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == ["grid.png"] + [f"seed{seed:06d}.png" for seed in range(5)]
    torch.testing.assert_close(predicted, model.sample_seeds(range(5)))  # the images of seeds 0-4


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="config"):
        StyleGAN2ADA("nope", resolution=8, channels=1, num_classes=0)
    with pytest.raises(TypeError, match="augment"):
        tiny(augment="bgc")  # 0.1's string presets are objects now
    with pytest.raises(ValueError, match="resolution"):
        tiny(resolution=12)


# ---------------------------------------------------------------------------------------- the main job

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"


def shrunk_main_job(tmp_path: Path) -> Path:
    """examples/configs/ada.yaml with the data, the run and the metric shrunk to a few seconds."""
    import yaml

    config = yaml.safe_load((CONFIGS / "ada.yaml").read_text())
    config["data"]["init_args"].update(resolution=8, batch_size=8, max_images=48)
    config["trainer"].update(max_epochs=2, limit_train_batches=3, log_every_n_steps=1)
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"] == "GenerativeMetrics":
            kid = {"class_path": "KID", "init_args": {"subset_size": 16}}
            callback["init_args"].update(num_gen=32, metrics=[kid], every_n_batches=3)
        if callback["class_path"] == "SampleGrid":
            callback["init_args"].update(every_n_batches=2)
    path = tmp_path / "ada-small.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_two_main_job_runs_in_a_row_keep_both_and_default_root_dir_moves_everything(tmp_path, monkeypatch):
    from lightning_genaug.cli import main

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setattr("sys.argv", ["lightning-genaug"])
    config = shrunk_main_job(tmp_path)
    root = tmp_path / "elsewhere"
    for _ in range(2):
        main(
            [
                "fit",
                "--config",
                str(config),
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.default_root_dir",
                str(root),
            ]
        )
    assert list(workdir.iterdir()) == []  # nothing in runs/ada: the root dir moved every output
    runs = sorted((root / "lightning_logs").iterdir())
    assert [run.name for run in runs] == ["version_0", "version_1"]
    for run in runs:
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert (run / "config.yaml").is_file()
        assert list((run / "samples").glob("*.png"))
        logged = (run / "metrics.csv").read_text().splitlines()[0].split(",")
        expected = {"ada/p", "loss/G", "loss/D", "loss/r1", "loss/pl", "kimg", "scores/real", "metrics/kid"}
        assert expected <= set(logged)
    first_rows = (runs[0] / "metrics.csv").read_text().splitlines()
    assert len(first_rows) > 2  # the first run's log survived the second run

    main(
        [
            "predict",
            "--config",
            str(config),
            "--ckpt_path",
            str(runs[0] / "checkpoints" / "last.ckpt"),
            "--model.predict.num_images",
            "12",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.default_root_dir",
            str(root),
        ]
    )
    predict_run = root / "lightning_logs" / "version_2"
    predictions = sorted(path.name for path in (predict_run / "predictions").iterdir())
    assert predictions == ["grid.png"] + [f"seed{seed:06d}.png" for seed in range(12)]


def test_compile_keeps_the_checkpoint_layout():
    eager, compiled = tiny(), tiny(compile=True)
    assert set(compiled.state_dict()) == set(eager.state_dict())
    assert set(compiled._compiled) == {"synthesis", "D"}


# ---------------------------------------------------------------------------------------- evaluation


def test_validate_and_test_log_ds_response_to_held_out_reals(tmp_path: Path):
    from lightning_genaug.callbacks import GenerativeMetrics
    from lightning_genaug.metrics import RealData
    from lightning_genaug.metrics.trained_extractor import ClassifierFeatures

    model = tiny()
    torch.manual_seed(0)
    extractor = ClassifierFeatures(in_channels=1, num_classes=2, width=4, feature_dim=8).eval()
    reals = torch.rand(13, 1, 8, 8) * 2 - 1
    metrics = GenerativeMetrics(
        metrics=("fid",), num_gen=16, feature_extractor=extractor, real=RealData(reals), progress_bar=False
    )
    evaluation = trainer(tmp_path, callbacks=[metrics])
    loader = DataLoader(TensorDataset(reals), batch_size=BATCH)  # a partial last batch of 5
    (result,) = evaluation.test(model, dataloaders=loader, verbose=False)
    assert set(result) >= {"test/scores_real", "test/sign_real", "metrics/fid"}
    assert -1.0 <= result["test/sign_real"] <= 1.0
    with torch.no_grad():  # D's mean logit on un-augmented reals, batch by batch (minibatch std), 8 + 4 used
        logits = [model.D(images[: len(images) - len(images) % 4], torch.zeros(0)) for (images,) in loader]
        expected = torch.cat(logits).mean()
    assert result["test/scores_real"] == pytest.approx(float(expected), rel=1e-4)
    (validated,) = trainer(tmp_path).validate(model, dataloaders=loader, verbose=False)
    assert validated["val/sign_real"] == pytest.approx(result["test/sign_real"])


def test_a_batch_other_than_the_presets_is_named_at_the_first_batch(tmp_path):
    """tiny sizes gamma and ema_kimg for a global batch of 8; training at 4 says so, once."""
    half_batch = DataLoader(random_loader(1).dataset, batch_size=4)
    expected = r"gamma = 0.05, ema_kimg = 0.01 for a global batch of 8.*batch of 4"
    with pytest.warns(UserWarning, match=expected):
        trainer(tmp_path, batches=2).fit(tiny(), train_dataloaders=half_batch)
    own_values = tiny(regularizer=R1(gamma=0.1), config_overrides={"ema_kimg": 0.005})
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*preset sets.*")
        trainer(tmp_path, batches=2).fit(own_values, train_dataloaders=half_batch)
        trainer(tmp_path, batches=1).fit(tiny(), train_dataloaders=random_loader(1))  # the preset's batch


def test_values_set_explicitly_are_never_called_the_presets_even_when_equal(tmp_path):
    """`R1(gamma=0.05)` and `ema_kimg: 0.01` under `tiny` (whose values they equal) are the user's choice."""
    half_batch = DataLoader(random_loader(1).dataset, batch_size=4)
    equal_values = tiny(regularizer=R1(gamma=0.05), config_overrides={"ema_kimg": 0.01})
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*preset sets.*")
        trainer(tmp_path, batches=1).fit(equal_values, train_dataloaders=half_batch)
    only_gamma = tiny(regularizer=R1(gamma=0.05))  # ema_kimg still the preset's: named alone
    with pytest.warns(UserWarning, match=r"preset sets ema_kimg = 0.01 for a global batch of 8") as record:
        trainer(tmp_path, batches=1).fit(only_gamma, train_dataloaders=half_batch)
    assert not any("gamma = 0.05" in str(warning.message) for warning in record)
