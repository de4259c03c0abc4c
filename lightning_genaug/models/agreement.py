"""A model's image shape and classes checked against its datamodule's in ``setup``, in one line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lightning_genaug._checks import check_same


def check_datamodule_agrees(hparams: Mapping[str, Any], datamodule: Any) -> None:
    """A GAN's channels, resolution and classes (``hparams``) against ``datamodule``'s, before any step.

    A value the model was given (``channels: 3``, a checkpoint's or ``init_from``'s shapes) that the
    data does not have stops the run here, in one line naming both values and the option to change,
    instead of as a shape error at the first batch (or silently, for classes). A model left at
    ``num_classes: 0`` trains unconditionally on labelled data; that is a choice, not a mismatch.

    Raises:
        MismatchError: channels, resolution or classes differ.
    """
    if datamodule is None:
        return
    hp = hparams
    source = " (set by `model.init_from`)" if hp.init_from else ""
    image_shape = getattr(datamodule, "image_shape", None)
    data = f"{type(datamodule).__name__}'s images"
    if image_shape is not None:
        channels, height, width = (int(size) for size in image_shape)
        check_same(
            "Image channels",
            (f"StyleGAN2ADA (`model.channels`{source})", hp.channels),
            (data, channels),
            f"set `model.channels: {channels}` (or null: the data's), or the data's "
            f"`channels: {hp.channels}`.",
        )
        check_same(
            "Image sizes",
            (f"StyleGAN2ADA (`model.resolution`{source})", f"{hp.resolution}x{hp.resolution}"),
            (data, f"{height}x{width}"),
            f"set `model.resolution: {height}` (or null: the data's), or the data's "
            f"`resolution: {hp.resolution}`.",
        )
    data_classes = getattr(datamodule, "num_classes", None)
    if data_classes is not None and hp.num_classes > 0:
        check_same(
            "Classes",
            (f"StyleGAN2ADA (`model.num_classes`{source})", hp.num_classes),
            (f"{type(datamodule).__name__}'s labels", int(data_classes)),
            f"set `model.num_classes: {int(data_classes)}` (or null: the data's; 0: unconditional), or "
            "give the data that many classes (class sub-folders, `use_labels: true`).",
        )


def check_real_images(real: torch.Tensor, hparams: Mapping[str, Any]) -> None:
    """A training batch ``(B, C, H, W)`` has the shape the networks were built for (``hparams``)."""
    expected = (hparams["channels"], hparams["resolution"], hparams["resolution"])
    if tuple(real.shape[1:]) != expected:
        raise ValueError(
            f"Real images have shape {tuple(real.shape[1:])} but the networks were built for "
            f"{expected} (channels, resolution, resolution); fix `resolution`/`channels` or the data."
        )


__all__ = ["check_datamodule_agrees", "check_real_images"]
