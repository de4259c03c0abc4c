"""Initialising G, D and G_ema from another run: a ``StyleGAN2ADA`` ``.ckpt`` or an official ``.pkl``.

Used by ``init_from`` (transfer learning, or ``predict`` from trained weights) and by
``StyleGAN2ADA.load``. A checkpoint's tensors are matched by name; a stylegan2-ada-pytorch network
pickle is read without running its code (:mod:`~lightning_genaug.models.stylegan2.official`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from lightning_genaug.models.families import check_checkpoint_family
from lightning_genaug.models.loading import load_checkpoint, ready_for_inference
from lightning_genaug.models.stylegan2.official import (
    OfficialNetworks,
    is_network_pickle,
    misfit_error,
    read_network_pickle,
    weight_problems,
)

log = logging.getLogger(__name__)

SHAPE_ARGUMENTS = ("config", "config_overrides", "resolution", "channels", "num_classes")


def shapes_from_pickle(hparams: Mapping[str, Any], official: OfficialNetworks) -> dict[str, Any]:
    """The shape arguments with every one left at ``None`` taken from an official pickle.

    ``config_overrides`` become the pickle's network config under the ones given in ``hparams``.
    """
    return {
        "resolution": official.resolution if hparams["resolution"] is None else hparams["resolution"],
        "channels": official.channels if hparams["channels"] is None else hparams["channels"],
        "num_classes": official.num_classes if hparams["num_classes"] is None else hparams["num_classes"],
        "config_overrides": {**official.config_overrides, **(hparams["config_overrides"] or {})},
    }


def shape_differences(saved: Mapping[str, Any], hparams: Mapping[str, Any]) -> str:
    """Where a checkpoint's ``hyper_parameters`` and ``hparams`` differ in shape arguments, and the fix."""
    differing = [
        f"{name} is {saved[name]!r} there but {hparams.get(name)!r} here"
        for name in SHAPE_ARGUMENTS
        if name in saved and saved[name] != hparams.get(name)
    ]
    if not differing:
        return "the network shapes differ; build it with the checkpoint's config and sizes"
    return "; ".join(differing) + "; set them to the checkpoint's values"


def copy_pickle_weights(
    networks: dict[str, nn.Module], augment_pipe: nn.Module | None, official: OfficialNetworks, path: str
) -> None:
    """Copy an official pickle's G, D and G_ema into ``networks``, all or nothing; its ``p`` too.

    ``p`` goes into the pipe's ``p`` buffer, which ``AdaptiveAugmentation`` adapts from there.

    Args:
        networks: ``{"G": generator, "D": discriminator, "G_ema": ema generator}``.
        augment_pipe: the receiving module's augmentation (left alone without a ``p``).
        official: the pickle's content, from
            :func:`~lightning_genaug.models.stylegan2.official.read_network_pickle`.
        path: the pickle's path, for error messages.

    Raises:
        ValueError: names every tensor that is missing, unexpected or of another shape; nothing is copied.
    """
    problems = weight_problems(networks, official)
    if problems:
        raise misfit_error(problems, path)
    with torch.no_grad():
        for key, module in networks.items():
            for name, tensor in module.state_dict().items():
                tensor.copy_(official.weights[key][name])
    if official.augment_p is not None and hasattr(augment_pipe, "p"):
        augment_pipe.p.fill_(official.augment_p)


def copy_checkpoint_weights(
    networks: dict[str, nn.Module], path: str | os.PathLike, hparams: Mapping[str, Any]
) -> None:
    """Copy the G, D and G_ema tensors of a ``StyleGAN2ADA`` checkpoint into ``networks``, by name.

    Parameters absent from the checkpoint (e.g. a class embedding when the source was unconditional)
    keep their initialisation and are logged.

    Args:
        networks: ``{"G": ..., "D": ..., "G_ema": ...}`` of the receiving module.
        path: the ``.ckpt`` (or a bare state dict saved with ``torch.save``).
        hparams: the receiving module's hyperparameters, to name the arguments that differ.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no StyleGAN2ADA weights, or tensors differ (the differing shape
            arguments are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"`init_from` checkpoint {str(path)!r} does not exist. Pass the path of a .ckpt written "
            "by StyleGAN2ADA (e.g. runs/ada/lightning_logs/version_0/checkpoints/last.ckpt), or "
            "`init_from: null` to train from scratch."
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    source = checkpoint.get("state_dict", checkpoint)
    target = {
        f"{name}.{key}": tensor
        for name, network in networks.items()
        for key, tensor in network.state_dict().items()
    }
    shared = [key for key in target if key in source]
    if not shared:
        raise ValueError(f"{str(path)!r} holds no StyleGAN2ADA G/D/G_ema weights (no matching keys).")
    mismatched = [
        f"{k}: {tuple(source[k].shape)} vs {tuple(target[k].shape)}"
        for k in shared
        if source[k].shape != target[k].shape
    ]
    if mismatched:
        differences = shape_differences(checkpoint.get("hyper_parameters") or {}, hparams)
        raise ValueError(
            f"`init_from` {str(path)!r} does not fit this model ({differences}): " + "; ".join(mismatched[:5])
        )
    with torch.no_grad():
        for key in shared:
            target[key].copy_(source[key])
    missing = sorted(set(target) - set(shared))
    if missing:
        log.info("init_from: %d tensors not in %s keep their initialisation: %s", len(missing), path, missing)


def load_for_use(
    cls: type[pl.LightningModule], path: str | os.PathLike, map_location: str | torch.device | None = None
) -> pl.LightningModule:
    """A ready ``cls`` (``StyleGAN2ADA`` or a subclass) from a ``.ckpt`` or a stylegan2-ada-pytorch ``.pkl``.

    A checkpoint of ``cls``'s family is read as data
    (:func:`~lightning_genaug.models.loading.load_checkpoint`); a network pickle is read without running
    its code and sets the shapes (resolution, channels, classes, network config) and G, D, G_ema.

    Args:
        cls: the module class to build.
        path: the ``.ckpt`` or ``.pkl`` file.
        map_location: device for the weights; ``None``: where they were saved (CPU for a pickle).

    Returns:
        The module with ``G``, ``D`` and ``G_ema`` built and loaded, in eval mode, gradients off.
    """
    if not is_network_pickle(path):
        check_checkpoint_family(cls, path)
        return load_checkpoint(cls, path, map_location)
    official = read_network_pickle(path)
    model = cls(
        config_overrides=official.config_overrides,
        resolution=official.resolution,
        channels=official.channels,
        num_classes=official.num_classes,
        init_from=str(path),
    )
    model.load_weights_from(path, official)
    return ready_for_inference(model, map_location)


def freeze_discriminator_blocks(D: nn.Module, count: int) -> None:
    """Freeze-D (Mo et al. 2020): D's first ``count`` blocks, in input order, receive no updates."""
    blocks = D.discriminator_blocks()
    if count > len(blocks):
        raise ValueError(
            f"`freeze_d` must be at most the number of D blocks ({len(blocks)}) at this resolution, "
            f"got {count}."
        )
    for block in blocks[:count]:
        block.requires_grad_(False)
