"""From a file to a ready network in one call: ``load(path)`` for checkpoints and official pickles.

``StyleGAN2ADA.load`` and ``SparseTransformerDistAug.load`` are the per-class entry points;
:func:`load_network` picks the class from the file itself (what the after-training subcommands use).
A ready network is in eval mode with gradients off: sampling, style mixing, projection (which
optimises latents, never weights) and export need nothing else.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TypeVar

import lightning.pytorch as pl
import torch

from lightning_genaug.models.stylegan2.official import is_network_pickle

ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)

# The first state-dict key of each loadable family (checked in order), for checkpoints that do not
# name their class (written from Python rather than by LightningCLI).
_FAMILY_BY_KEY_PREFIX = (
    ("G_ema.", "lightning_genaug.models.stylegan2.StyleGAN2ADA"),
    ("ema_net.", "lightning_genaug.models.sparse_transformer.SparseTransformerDistAug"),
)


def check_network_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path``, or a ``FileNotFoundError`` that says what to pass instead."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Network file {str(path)!r} does not exist; pass a checkpoint written by training (e.g. "
            "runs/ada/lightning_logs/version_0/checkpoints/last.ckpt) or a stylegan2-ada-pytorch .pkl."
        )
    return path


def ready_for_inference(model: ModuleT, map_location: str | torch.device | None = None) -> ModuleT:
    """``model`` moved to ``map_location`` (when given), in eval mode, with gradients off."""
    if map_location is not None:
        model = model.to(torch.device(map_location))
    return model.eval().requires_grad_(False)


def load_checkpoint(
    cls: type[ModuleT], path: str | os.PathLike, map_location: str | torch.device | None = None
) -> ModuleT:
    """``cls.load_from_checkpoint(path)`` made ready for inference (no ``Trainer`` involved)."""
    model = cls.load_from_checkpoint(check_network_file(path), map_location=map_location)
    return ready_for_inference(model)


def checkpoint_class(path: str | os.PathLike) -> type[pl.LightningModule]:
    """The module class that wrote a Lightning checkpoint.

    LightningCLI records it in ``hyper_parameters["_class_path"]``, which is used when it names a class
    of this package (a path read from a file never chooses what else gets imported); otherwise the
    state dict tells the family apart (``G_ema.*``: :class:`StyleGAN2ADA`, ``ema_net.*``:
    :class:`SparseTransformerDistAug`).

    Raises:
        ValueError: the file is not a checkpoint of a module that can be loaded here.
    """
    path = check_network_file(path)
    try:  # memory-mapped: only the few entries read here leave the disk
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises several types for files it cannot read
        raise ValueError(
            f"{str(path)!r} cannot be read as a Lightning checkpoint with torch.load(weights_only=True) "
            f"({type(error).__name__}); pass a .ckpt written by training or a stylegan2-ada-pytorch .pkl."
        ) from error
    class_path = str((checkpoint.get("hyper_parameters") or {}).get("_class_path") or "")
    keys = list(checkpoint.get("state_dict") or {})
    candidates = [
        path for prefix, path in _FAMILY_BY_KEY_PREFIX if any(key.startswith(prefix) for key in keys)
    ]
    if class_path.startswith(f"{__package__.split('.')[0]}."):
        candidates.insert(0, class_path)
    if not candidates:
        raise ValueError(
            f"{str(path)!r} holds no StyleGAN2ADA or SparseTransformerDistAug weights; pass a checkpoint of "
            "one of them or a stylegan2-ada-pytorch .pkl."
        )
    module_name, _, class_name = candidates[0].rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


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
        from lightning_genaug.models.stylegan2 import StyleGAN2ADA

        return StyleGAN2ADA.load(path, map_location)
    cls = checkpoint_class(path)
    if not hasattr(cls, "load"):
        raise ValueError(f"{str(path)!r} is a {cls.__name__} checkpoint, which has no after-training tools.")
    return cls.load(path, map_location)


__all__ = ["check_network_file", "checkpoint_class", "load_checkpoint", "load_network", "ready_for_inference"]
