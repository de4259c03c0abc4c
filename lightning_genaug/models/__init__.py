"""LightningModules of the three model families, their presets and the shared ``predict`` path."""

from lightning_genaug.models.any_network import load_network
from lightning_genaug.models.predict import GeneratorPredictMixin, PredictOptions
from lightning_genaug.models.scalegan import ScaleGAN
from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug
from lightning_genaug.models.stylegan2 import StyleGAN2ADA

__all__ = [
    "GeneratorPredictMixin",
    "PredictOptions",
    "ScaleGAN",
    "SparseTransformerDistAug",
    "StyleGAN2ADA",
    "load_network",
]
