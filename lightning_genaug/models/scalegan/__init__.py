"""Scale-GAN: StyleGAN2 networks with data scaling and a variance-based discriminator regulariser."""

from lightning_genaug.models.scalegan.module import ScaleGAN

__all__ = ["ScaleGAN"]
