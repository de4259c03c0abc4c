"""``load_network``: any network file of the package's model families, ready for inference.

It sits above the families (it picks one from the file), so that :mod:`~lightning_genaug.models.loading`,
which every family's ``load`` uses, imports none of them.
"""

from __future__ import annotations

import os

import lightning.pytorch as pl
import torch

from lightning_genaug.models.loading import checkpoint_class
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.models.stylegan2.official import is_network_pickle


def load_network(
    path: str | os.PathLike, map_location: str | torch.device | None = None
) -> pl.LightningModule:
    """Any network this package can use after training, ready for inference.

    Args:
        path: a ``.ckpt`` of ``StyleGAN2ADA`` (or ``ScaleGAN``) or ``SparseTransformerDistAug``, or a
            stylegan2-ada-pytorch network pickle (``.pkl``, read without running its code).
        map_location: device for the weights; ``None``: where they were saved (CPU for pickles).

    Returns:
        The module, in eval mode with gradients off.
    """
    if is_network_pickle(path):
        return StyleGAN2ADA.load(path, map_location)
    cls = checkpoint_class(path)
    if not hasattr(cls, "load"):
        raise ValueError(f"{str(path)!r} is a {cls.__name__} checkpoint, which has no after-training tools.")
    return cls.load(path, map_location)


__all__ = ["load_network"]
