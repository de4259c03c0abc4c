"""Which model family a checkpoint belongs to, checked before a family's ``load`` reads it.

``StyleGAN2ADA.load`` given a ``SparseTransformerDistAug`` checkpoint (or the reverse) would build the
wrong module from the other family's hyper-parameters and fail deep inside Lightning, with a message
about blocked code execution or a state dict; :func:`check_checkpoint_family` says instead which
class wrote the file and which ``load`` reads it.
"""

from __future__ import annotations

import os

import lightning.pytorch as pl

from lightning_genaug.models.loading import checkpoint_class


def family_root(cls: type[pl.LightningModule]) -> type[pl.LightningModule]:
    """The family ``cls`` belongs to: the class of its lineage that defines ``load`` (``StyleGAN2ADA`` for
    ``ScaleGAN`` too, ``SparseTransformerDistAug``), or ``cls`` itself.

    >>> from lightning_genaug.models import ScaleGAN, StyleGAN2ADA
    >>> family_root(ScaleGAN) is family_root(StyleGAN2ADA) is StyleGAN2ADA
    True
    """
    return next((base for base in cls.__mro__ if "load" in vars(base)), cls)


def check_checkpoint_family(cls: type[pl.LightningModule], path: str | os.PathLike) -> None:
    """The checkpoint at ``path`` was written by a module of ``cls``'s family.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a checkpoint of a loadable module, or one of the other family
            (the message names its class and the ``load`` that reads it).
    """
    found = checkpoint_class(path)
    if family_root(found) is not family_root(cls):
        raise ValueError(
            f"{str(path)!r} is a {found.__name__} checkpoint, not a {cls.__name__} one; load it with "
            f"{found.__name__}.load(path) or lightning_genaug.models.load_network(path)."
        )


__all__ = ["check_checkpoint_family", "family_root"]
