"""Add ADA to an autoencoder trained with a PatchGAN discriminator: ONE line in the Trainer.

The autoencoder below is written the way latent-diffusion's first stage (taming-transformers' VQGAN,
the KL autoencoder) is written, shrunk: an encoder and a decoder, an L1 reconstruction loss plus a
hinge adversarial loss from a PatchGAN discriminator that returns one logit per patch ``(B, 1, h, w)``,
and the discriminator held by the *loss module* (``self.loss.discriminator``), trained with manual
optimisation in its own ``training_step``. Nothing in the model imports lightning-genaug.

The only addition is the ``AdaptiveAugmentation`` callback in the Trainer (marked ``# <- ADA``): it finds
``loss.discriminator``, augments every image the discriminator sees while training (the reals ``x``
and the reconstructions ``decoder(encoder(x))``, in both optimiser steps), and adapts the augmentation
probability ``p`` so that ``r_t = E[sign(D(real))]`` over all patch logits stays at 0.6.

Data: the 1,797 8x8 handwritten digits bundled with scikit-learn (no download), upsampled to 32x32.

Run:  python examples/autoencoder_gan.py [--max-steps 300]
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug import AdaptiveAugmentation


class DigitImages(L.LightningDataModule):
    """scikit-learn's digits as ``(images,)`` batches of ``(B, 1, size, size)`` in [-1, 1]."""

    def __init__(self, batch_size: int = 32, image_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.image_size = image_size

    def setup(self, stage: str) -> None:
        digits = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
        images = F.interpolate(digits, size=self.image_size, mode="bilinear", align_corners=False)
        self.train_set = TensorDataset(images.clamp(0, 1) * 2 - 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.GroupNorm(8, out_channels), nn.SiLU()
    )


class Encoder(nn.Module):
    """``(B, C, H, W)`` -> latent ``(B, z_channels, H / 4, W / 4)``."""

    def __init__(self, in_channels: int, channels: int, z_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            conv_block(in_channels, channels),
            nn.Conv2d(channels, channels, 4, stride=2, padding=1),  # H / 2
            conv_block(channels, 2 * channels),
            nn.Conv2d(2 * channels, 2 * channels, 4, stride=2, padding=1),  # H / 4
            conv_block(2 * channels, 2 * channels),
            nn.Conv2d(2 * channels, z_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Latent ``(B, z_channels, H / 4, W / 4)`` -> ``(B, C, H, W)`` in [-1, 1]."""

    def __init__(self, out_channels: int, channels: int, z_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(z_channels, 2 * channels, 1),
            conv_block(2 * channels, 2 * channels),
            nn.Upsample(scale_factor=2, mode="nearest"),  # H / 2
            conv_block(2 * channels, channels),
            nn.Upsample(scale_factor=2, mode="nearest"),  # H
            conv_block(channels, channels),
            nn.Conv2d(channels, out_channels, 3, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class NLayerDiscriminator(nn.Module):
    """PatchGAN (pix2pix): ``(B, C, H, W)`` -> one logit per overlapping patch, ``(B, 1, h, w)``."""

    def __init__(self, in_channels: int, channels: int = 32, n_layers: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = channels
        for layer in range(1, n_layers + 1):
            stride = 2 if layer < n_layers else 1
            layers += [
                nn.Conv2d(width, channels * 2**layer, 4, stride, 1, bias=False),
                nn.BatchNorm2d(channels * 2**layer),
                nn.LeakyReLU(0.2, True),
            ]
            width = channels * 2**layer
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class ReconstructionGANLoss(nn.Module):
    """L1 reconstruction plus a hinge PatchGAN loss, the discriminator living here (taming's layout)."""

    def __init__(self, in_channels: int, disc_weight: float = 0.1, disc_start: int = 0) -> None:
        super().__init__()
        self.discriminator = NLayerDiscriminator(in_channels)
        self.disc_weight = disc_weight
        self.disc_start = disc_start

    def autoencoder_loss(self, x: torch.Tensor, xrec: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        rec_loss = (x - xrec).abs().mean()
        g_loss = -self.discriminator(xrec).mean()
        weight = self.disc_weight if step >= self.disc_start else 0.0
        return {"loss": rec_loss + weight * g_loss, "rec_loss": rec_loss, "g_loss": g_loss}

    def discriminator_loss(self, x: torch.Tensor, xrec: torch.Tensor) -> torch.Tensor:
        logits_real = self.discriminator(x)
        logits_fake = self.discriminator(xrec.detach())
        return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


class AutoencoderGAN(L.LightningModule):
    def __init__(
        self,
        channels: int = 1,
        width: int = 32,
        z_channels: int = 4,
        lr: float = 2e-4,
        disc_weight: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = Encoder(channels, width, z_channels)
        self.decoder = Decoder(channels, width, z_channels)
        self.loss = ReconstructionGANLoss(channels, disc_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def training_step(self, batch: list[torch.Tensor]) -> None:
        x = batch[0]
        opt_ae, opt_disc = self.optimizers()
        xrec = self(x)

        self.toggle_optimizer(opt_ae)
        losses = self.loss.autoencoder_loss(x, xrec, self.global_step)
        opt_ae.zero_grad()
        self.manual_backward(losses["loss"])
        opt_ae.step()
        self.untoggle_optimizer(opt_ae)

        self.toggle_optimizer(opt_disc)
        d_loss = self.loss.discriminator_loss(x, xrec)
        opt_disc.zero_grad()
        self.manual_backward(d_loss)
        opt_disc.step()
        self.untoggle_optimizer(opt_disc)

        self.log_dict(
            {"rec_loss": losses["rec_loss"], "g_loss": losses["g_loss"], "d_loss": d_loss}, prog_bar=True
        )

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr = self.hparams.lr
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        opt_ae = torch.optim.Adam(autoencoder, lr=lr, betas=(0.5, 0.9))
        opt_disc = torch.optim.Adam(self.loss.discriminator.parameters(), lr=lr, betas=(0.5, 0.9))
        return [opt_ae, opt_disc]


def fit(
    model: AutoencoderGAN,
    max_steps: int,
    log_dir: str = "lightning_logs",
    ada: AdaptiveAugmentation | None = None,
) -> L.Trainer:
    """Train ``model`` on the digits for ``max_steps`` optimiser steps (two per batch), with ADA added.

    ``ada`` replaces the default controller (the tests start it at ``p = 0.5`` so that ``p`` moves at once).
    """
    ada = ada or AdaptiveAugmentation(target=0.6, every_n_batches=4, speed_kimg=5)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=CSVLogger(log_dir, name="autoencoder_gan"),
        log_every_n_steps=4,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[ada],  # <- ADA: added (the only change to an ordinary Trainer)
    )
    trainer.fit(model, DigitImages())
    return trainer


def optimiser_steps(text: str) -> int:
    """``--max-steps``: at least 2, one batch (an autoencoder step and a discriminator step)."""
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of optimiser steps >= 2 (each batch takes 2: autoencoder, then D)"
        )
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-steps",
        type=optimiser_steps,
        default=300,
        help="optimiser steps (Trainer.max_steps): 2 per batch, AE then D",
    )
    args = parser.parse_args(argv)

    L.seed_everything(0)
    start = time.perf_counter()
    trainer = fit(AutoencoderGAN(), args.max_steps)
    seconds = time.perf_counter() - start
    p, rt = float(trainer.callback_metrics["ada/p"]), float(trainer.callback_metrics["ada/rt"])
    rec = float(trainer.callback_metrics["rec_loss"])
    print(
        f"{args.max_steps} steps in {seconds:.0f} s; L1 {rec:.3f}; final ada/p = {p:.4f}, "
        f"last ada/rt = {rt:.3f}"
    )
    print(f"p and r_t over training: {trainer.logger.log_dir}/metrics.csv")


if __name__ == "__main__":
    main()
