"""The foreign path of AdaptiveAugmentation on discriminators other than one logit per image.

Patch logits ``(B, 1, h, w)``, multi-scale lists, tuples with features, probabilities; D found in a
taming-transformers layout (``self.loss.discriminator``) or by a dotted path; a pix2pix-style paired D
whose real pair is recognised in the batch.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from test_callback_ada import make_trainer  # one epoch, no logger or checkpoints
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import AugmentPipe, PairedAugment, SignAccumulator
from lightning_genaug.callbacks.ada import AdaptiveAugmentation
from lightning_genaug.callbacks.foreign_discriminator import find_discriminator, logit_maps

BATCH = 4


def images_loader(n: int = 16, channels: int = 1, size: int = 8) -> DataLoader:
    images = torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return DataLoader(TensorDataset(images), batch_size=BATCH)


class KnownLogits(nn.Module):
    """A D whose output is fixed: ``output_fn(batch_size)``; its one weight keeps the optimiser busy."""

    def __init__(self, output_fn) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.output_fn = output_fn

    def forward(self, images: torch.Tensor):
        return self.output_fn(images.shape[0], self.weight)


class HoldsD(pl.LightningModule):
    """Automatic optimisation; D's output goes into the loss through ``logit_maps`` (any structure)."""

    def __init__(self, discriminator: nn.Module, attr: str = "discriminator") -> None:
        super().__init__()
        setattr(self, attr, discriminator)
        self.attr = attr

    def training_step(self, batch, batch_idx):
        output = getattr(self, self.attr)(batch[0])
        scales = logit_maps(output)
        return sum(scale.mean() for scale in (scales if isinstance(scales, list) else [scales]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def patch_map(signs: list[list[float]]):
    """``(B, 1, h, w)`` logits with the given sign pattern in every image (magnitude 2)."""
    pattern = 2.0 * torch.tensor(signs)
    return lambda batch, weight: pattern.expand(batch, 1, *pattern.shape) + weight


@pytest.mark.parametrize(
    ("output_fn", "expected_rt"),
    [
        # one PatchGAN map: every patch logit counts once: 3 of 4 positive -> (3 - 1) / 4
        (patch_map([[1, 1], [1, -1]]), 0.5),
        # non-saturating or hinge D with one logit per image, (B, 1)
        (lambda b, w: torch.full((b, 1), -0.3) + w, -1.0),
        # multi-scale: a 4x4 map all real and a 1x1 map all fake weigh the same -> 0 (counting logits: 15/17)
        (lambda b, w: [torch.ones(b, 1, 4, 4) + w, -torch.ones(b, 1, 1, 1) + w], 0.0),
        # pix2pixHD with intermediate features: each scale is [features..., logits]
        (
            lambda b, w: [
                [torch.randn(b, 8, 4, 4), torch.ones(b, 1, 4, 4) + w],
                [-torch.ones(b, 1, 2, 2) + w],
            ],
            0.0,
        ),
        # (logits, features) tuple: the first item
        (lambda b, w: (patch_map([[1, -1], [-1, -1]])(b, w), torch.ones(b, 16)), -0.5),
    ],
    ids=["patch-map", "per-image", "multi-scale", "multi-scale-features", "tuple"],
)
def test_rt_is_the_mean_sign_of_a_known_discriminator(tmp_path: Path, output_fn, expected_rt: float) -> None:
    callback = AdaptiveAugmentation(every_n_batches=2, speed_kimg=1.0)
    make_trainer(tmp_path, [callback]).fit(HoldsD(KnownLogits(output_fn)), images_loader())
    assert callback.rt == pytest.approx(expected_rt)


def test_a_patch_discriminator_ending_in_a_sigmoid_is_read_as_probabilities(tmp_path: Path) -> None:
    class ProbabilityPatches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.logits = KnownLogits(patch_map([[0.5, 0.5], [-0.5, -0.5]]))
            self.sigmoid = nn.Sigmoid()

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.sigmoid(self.logits(images))

    callback = AdaptiveAugmentation(every_n_batches=2)
    make_trainer(tmp_path, [callback]).fit(HoldsD(ProbabilityPatches()), images_loader())
    assert callback.rt == 0.0  # probabilities 0.73 and 0.27: two "real" patches, two "fake"


def test_observe_weighs_each_scale_equally_and_batches_by_size() -> None:
    accumulator = SignAccumulator()
    accumulator.observe([torch.ones(2, 1, 4, 4), -torch.ones(2, 1, 1, 1)])  # batch of 2: mean 0
    accumulator.observe([torch.ones(6, 1, 4, 4), torch.ones(6, 1, 1, 1)])  # batch of 6: mean 1
    sign_sum, count = accumulator.pop_stats()
    assert (float(sign_sum), float(count)) == (6.0, 8.0)
    with pytest.raises(TypeError, match="list of tensors"):
        accumulator.observe([])
    with pytest.raises(TypeError, match="logits"):
        logit_maps({"logits": torch.ones(2)})


# ---- the autoencoder layout of taming-transformers: the patch D is held by the loss module


class PatchD(nn.Module):
    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 1, 3, 1, 1)
        )  # (B, 1, H / 2, W / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class AdversarialLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.discriminator = PatchD()


class TamingAutoencoder(pl.LightningModule):
    """Manual optimisation; D is called on ``x`` and on ``decoder(encoder(x))``."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.encoder = nn.Conv2d(1, 4, 3, 2, 1)
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 1, 3, 1, 1), nn.Tanh())
        self.loss = AdversarialLoss()

    def training_step(self, batch, batch_idx):
        x = batch[0]
        opt_ae, opt_d = self.optimizers()
        xrec = self.decoder(self.encoder(x))
        ae_loss = (x - xrec).abs().mean() - 0.1 * self.loss.discriminator(xrec).mean()
        opt_ae.zero_grad()
        self.manual_backward(ae_loss)
        opt_ae.step()
        d_loss = (
            F.relu(1 - self.loss.discriminator(x)).mean()
            + F.relu(1 + self.loss.discriminator(xrec.detach())).mean()
        )
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

    def configure_optimizers(self):
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        return [
            torch.optim.Adam(autoencoder, 1e-3),
            torch.optim.Adam(self.loss.discriminator.parameters(), 1e-3),
        ]


def test_the_patch_discriminator_of_an_autoencoders_loss_module_is_found_and_augmented(
    tmp_path: Path,
) -> None:
    module = TamingAutoencoder()
    discriminator = module.loss.discriminator
    raw, seen = [], []
    discriminator.register_forward_pre_hook(lambda _, args: raw.append(args[0].detach().clone()))
    discriminator.main[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    callback = AdaptiveAugmentation(pipe=AugmentPipe("bgc", p=0.8), every_n_batches=2, speed_kimg=1.0)
    make_trainer(tmp_path, [callback]).fit(module, images_loader())
    assert callback.is_foreign and -1 <= callback.rt <= 1
    assert len(raw) == len(seen) == 4 * 3 + 2  # 3 D calls per batch + the probe every 2nd batch
    assert sum(not torch.equal(before, after) for before, after in zip(raw, seen, strict=True)) >= 10
    assert callback.p != 0.8  # p moved


def test_a_dotted_discriminator_attr_reaches_a_nested_discriminator() -> None:
    module = TamingAutoencoder()
    assert find_discriminator(module, "loss.discriminator") is module.loss.discriminator
    with pytest.raises(
        ValueError, match=r"`TamingAutoencoder.loss` has no attribute `disc`.*discriminator_attr"
    ):
        find_discriminator(module, "loss.disc")
    with pytest.raises(TypeError, match="not an nn.Module"):
        find_discriminator(module, "loss.training")


def test_two_nested_discriminators_are_an_error_naming_both_and_the_option() -> None:
    module = TamingAutoencoder()
    module.second = AdversarialLoss()
    with pytest.raises(ValueError, match=r"loss.discriminator, second.discriminator.*discriminator_attr="):
        find_discriminator(module, None)
    module = TamingAutoencoder()
    module.loss.discriminator.D = nn.Identity()  # D's own part named D is not a second discriminator
    assert find_discriminator(module, None) is module.loss.discriminator


def test_nothing_found_names_the_option_and_a_dotted_example() -> None:
    module = TamingAutoencoder()
    module.loss.critic_net = module.loss.discriminator
    del module.loss.discriminator
    with pytest.raises(ValueError, match=r"discriminator_attr='loss.discriminator'"):
        find_discriminator(module, None)


# ---- pix2pix: D(cat(condition, output)); the batch is (condition, target)


class Pix2Pix(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.netG = nn.Sequential(nn.Conv2d(1, 3, 3, 1, 1), nn.Tanh())
        self.netD = PatchD(channels=1 + 3)

    def training_step(self, batch, batch_idx):
        condition, target = batch
        opt_g, opt_d = self.optimizers()
        output = self.netG(condition)
        g_loss = -self.netD(torch.cat([condition, output], 1)).mean() + (output - target).abs().mean()
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        real = self.netD(torch.cat([condition, target], 1))
        fake = self.netD(torch.cat([condition, output.detach()], 1))
        d_loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

    def configure_optimizers(self):
        return [
            torch.optim.Adam(self.netG.parameters(), 1e-3),
            torch.optim.Adam(self.netD.parameters(), 1e-3),
        ]


def pairs_loader(n: int = 16) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(n, 3, 8, 8, generator=generator) * 2 - 1
    return DataLoader(TensorDataset(target.mean(1, keepdim=True), target), batch_size=BATCH)


def test_a_paired_discriminator_is_augmented_pairwise_and_probed_on_its_real_pair(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = Pix2Pix()
    seen = []
    module.netD.main[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    pipe = PairedAugment(AugmentPipe("blit", p=0.9), condition_channels=1)
    # One interval over the 4 batches: p moves by one step whichever side of the target r_t falls
    # (with two, an up and a down step can cancel).
    callback = AdaptiveAugmentation(pipe=pipe, every_n_batches=4, speed_kimg=1.0)
    make_trainer(tmp_path, [callback]).fit(module, pairs_loader())
    assert callback.rt is not None and callback.p != pytest.approx(0.9)
    assert len(seen) == 4 * 3 + 1
    # Blits moved the pairs, and a real pair's grey condition still matches its colour image pixel for
    # pixel (the condition is the mean of the target's channels).
    real_pairs = [x for x in seen if torch.allclose(x[:, :1], x[:, 1:].mean(1, keepdim=True), atol=1e-6)]
    assert len(real_pairs) >= 4 + 1  # the D step's real pair in every batch and the probe's


def test_a_paired_discriminator_never_given_a_batch_target_is_an_error(tmp_path: Path) -> None:
    class Rescaled(Pix2Pix):
        def training_step(self, batch, batch_idx):
            condition, target = batch
            return super().training_step((condition, target * 0.5), batch_idx)

    callback = AdaptiveAugmentation(pipe=PairedAugment(condition_channels=1), every_n_batches=1)
    with pytest.raises(ValueError, match="saw no real pair.*native path"):
        make_trainer(tmp_path, [callback]).fit(Rescaled(), pairs_loader())
