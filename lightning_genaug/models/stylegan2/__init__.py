"""StyleGAN2 networks, configs and the ``StyleGAN2ADA`` LightningModule."""

from lightning_genaug.models.stylegan2.module import StyleGAN2ADA

__all__ = ["StyleGAN2ADA"]
