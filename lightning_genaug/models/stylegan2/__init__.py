"""StyleGAN2 networks, presets and the ``StyleGAN2ADA`` LightningModule."""

from lightning_genaug.models.stylegan2.configs import (
    STYLEGAN2_PRESETS,
    StyleGAN2Config,
    build_networks,
    stylegan2_config,
)
from lightning_genaug.models.stylegan2.module import StyleGAN2ADA

__all__ = ["STYLEGAN2_PRESETS", "StyleGAN2ADA", "StyleGAN2Config", "build_networks", "stylegan2_config"]
