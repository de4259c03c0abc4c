"""Sparse Transformer with Distribution Augmentation (Jun et al. 2020; Child et al. 2019)."""

from lightning_genaug.models.sparse_transformer.model import (
    SPARSE_TRANSFORMER_PRESETS,
    SparseTransformer,
    SparseTransformerConfig,
    sparse_transformer_config,
)
from lightning_genaug.models.sparse_transformer.module import SparseTransformerDistAug

__all__ = [
    "SPARSE_TRANSFORMER_PRESETS",
    "SparseTransformer",
    "SparseTransformerConfig",
    "SparseTransformerDistAug",
    "sparse_transformer_config",
]
