"""Add ADA to your GAN: an ordinary Lightning DCGAN plus ONE line.

The GAN below is written the way Lightning's GAN tutorial writes one (a DataModule, a Generator, a
Discriminator ending in a sigmoid, a LightningModule with manual optimisation calling
``self.discriminator(imgs)``). It knows nothing of lightning-genaug. The only addition is the
``AdaptiveAugmentation`` callback in the Trainer (marked ``# <- ADA``): it finds ``self.discriminator``,
augments everything D sees while training, and adapts the augmentation probability ``p`` so that
``r_t = E[sign(D(real))]`` stays at 0.6.

Data: the 1,797 8x8 handwritten digits bundled with scikit-learn (no download), upsampled to 16x16.
A small data set is exactly where a discriminator overfits and ADA helps.

Run:  python examples/add_ada_to_your_gan.py [--max-epochs 3]
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


class DigitsDataModule(L.LightningDataModule):
    def __init__(self, batch_size: int = 64, image_size: int = 16):
        super().__init__()
        self.batch_size = batch_size
        self.image_size = image_size

    def setup(self, stage: str):
        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8), [0, 1]
        images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        images = images.clamp(0, 1) * 2 - 1  # [-1, 1], like the generator's tanh
        self.train_set = TensorDataset(images, torch.tensor(digits.target))

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True)


class Generator(nn.Module):
    def __init__(self, latent_dim: int = 32, channels: int = 32):
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, channels * 2, 4, 1, 0, bias=False),  # 4x4
            nn.BatchNorm2d(channels * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(channels * 2, channels, 4, 2, 1, bias=False),  # 8x8
            nn.BatchNorm2d(channels),
            nn.ReLU(True),
            nn.ConvTranspose2d(channels, 1, 4, 2, 1, bias=False),  # 16x16
            nn.Tanh(),
        )

    def forward(self, z):
        return self.model(z.view(z.size(0), -1, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, channels: int = 32):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(1, channels, 4, 2, 1, bias=False),  # 8x8
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=False),  # 4x4
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels * 2, 1, 4, 1, 0, bias=False),  # 1x1
            nn.Flatten(),
            nn.Sigmoid(),
        )

    def forward(self, img):
        return self.model(img)


class GAN(L.LightningModule):
    def __init__(self, latent_dim: int = 32, lr: float = 0.0002, b1: float = 0.5, b2: float = 0.999):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = Generator(latent_dim)
        self.discriminator = Discriminator()

    def forward(self, z):
        return self.generator(z)

    def adversarial_loss(self, y_hat, y):
        return F.binary_cross_entropy(y_hat, y)

    def training_step(self, batch):
        imgs, _ = batch
        optimizer_g, optimizer_d = self.optimizers()
        z = torch.randn(imgs.shape[0], self.hparams.latent_dim).type_as(imgs)

        # train generator
        self.toggle_optimizer(optimizer_g)
        valid = torch.ones(imgs.size(0), 1).type_as(imgs)
        g_loss = self.adversarial_loss(self.discriminator(self(z)), valid)
        self.manual_backward(g_loss)
        optimizer_g.step()
        optimizer_g.zero_grad()
        self.untoggle_optimizer(optimizer_g)

        # train discriminator
        self.toggle_optimizer(optimizer_d)
        real_loss = self.adversarial_loss(self.discriminator(imgs), valid)
        fake = torch.zeros(imgs.size(0), 1).type_as(imgs)
        fake_loss = self.adversarial_loss(self.discriminator(self(z).detach()), fake)
        d_loss = (real_loss + fake_loss) / 2
        self.manual_backward(d_loss)
        optimizer_d.step()
        optimizer_d.zero_grad()
        self.untoggle_optimizer(optimizer_d)

        self.log_dict({"g_loss": g_loss, "d_loss": d_loss}, prog_bar=True)

    def configure_optimizers(self):
        lr, b1, b2 = self.hparams.lr, self.hparams.b1, self.hparams.b2
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(b1, b2))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(b1, b2))
        return [opt_g, opt_d], []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=3)
    args = parser.parse_args()

    L.seed_everything(0)
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=args.max_epochs,
        logger=CSVLogger("lightning_logs", name="add_ada_to_your_gan"),
        log_every_n_steps=4,
        enable_checkpointing=False,
        callbacks=[AdaptiveAugmentation(target=0.6, every_n_batches=4, speed_kimg=10)],  # <- ADA: added
    )
    start = time.perf_counter()
    trainer.fit(GAN(), DigitsDataModule())
    seconds = time.perf_counter() - start
    p, rt = float(trainer.callback_metrics["ada/p"]), float(trainer.callback_metrics["ada/rt"])
    print(f"{args.max_epochs} epochs in {seconds:.0f} s; final ada/p = {p:.4f}, last ada/rt = {rt:.3f}")
    print(f"p and r_t over training: {trainer.logger.log_dir}/metrics.csv")


if __name__ == "__main__":
    main()
