"""Sparse Transformer with Distribution Augmentation (Jun et al. 2020; Child et al. 2019)."""

from lightning_genaug.models.sparse_transformer.model import (
    PRESETS,
    SparseTransformer,
    SparseTransformerConfig,
    get_config,
)
from lightning_genaug.models.sparse_transformer.module import SparseTransformerDistAug

__all__ = [
    "PRESETS",
    "SparseTransformer",
    "SparseTransformerConfig",
    "SparseTransformerDistAug",
    "get_config",
]
