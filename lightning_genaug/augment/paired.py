"""``PairedAugment``: ADA for a discriminator that sees a condition and an image together.

An image-to-image discriminator judges a *pair*: pix2pix's ``D(cat(input, output))``, a super-resolution
D given the low-resolution input beside the high-resolution output. Augmenting the two parts
independently would break the pairing (a flipped output beside an unflipped input is a pair no
generator should learn to make), so one geometric draw moves both: the same flip, quarter turn,
translation, scale and rotation, about the same centre, with translations rescaled when the condition
has a different resolution. Colour, image-space filtering, noise and cutout change the *image* only,
unless ``condition_color=True`` also gives the condition the image's colour transform (right when the
condition is a photograph of the same scene, e.g. a low-resolution input; wrong for label maps, edges or
a greyscale input to colourise, whose meaning a colour change would alter).

Non-leaking holds as for ``AugmentPipe`` alone: every transform is skipped with probability ``1 - p *
strength`` and the pair's transform is invertible, so D can still tell the real joint distribution of
pairs from the generated one, and the generator gains nothing by producing augmented outputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lightning_genaug._checks import check_images, check_positive_int
from lightning_genaug.augment.ada_pipe import COLOR_CHANNELS, COLOR_PARAMS, GEOMETRY_PARAMS, AugmentPipe
from lightning_genaug.augment.protocol import DelegatedStrength

TRANSLATION_PARAMS: tuple[str, ...] = ("xint", "xfrac")
"""Geometric parameters measured in pixels (rescaled for a condition of another resolution)."""


class PairedAugment(DelegatedStrength, nn.Module):
    """Augment a (condition, image) pair for a paired discriminator, with the ADA strength of ``pipe``.

    Called with one tensor, it is D's input with the condition's channels first, ``cat([condition,
    image], dim=1)`` (pix2pix), and returns the same layout: this is what ``AdaptiveAugmentation`` calls
    on a foreign D. Called with two tensors (``pipe(image, condition)``), it returns the augmented
    ``(image, condition)``; the condition may then have another resolution with the same aspect ratio
    (super-resolution), and translations are rescaled to it.

    ``p``, :meth:`observe` and :meth:`pop_stats` are ``pipe``'s (the ADA protocol), so a controller
    adapts ``pipe.p``.

    Args:
        pipe: the ``AugmentPipe`` whose draws are shared (default ``AugmentPipe("bgc")``).
        condition_channels: channels of the condition at the front of a concatenated input.
        condition_color: also apply the colour transform (brightness, contrast, luma flip, hue,
            saturation) to the condition, with the image's parameters. Filtering, noise and cutout
            always stay on the image.

    Shape:
        - Concatenated: ``(B, condition_channels + C, H, W)`` -> the same.
        - Pair: image ``(B, C, H, W)``, condition ``(B, C_c, h, w)`` with ``h / H == w / W`` -> the same.

    Example:
        >>> paired = PairedAugment(AugmentPipe("bg", p=1.0), condition_channels=3)
        >>> image = torch.rand(2, 3, 16, 16) * 2 - 1
        >>> out = paired(torch.cat([image, image], dim=1))  # the condition is a copy of the image
        >>> torch.equal(out[:, :3], out[:, 3:])  # so it moved exactly as the image did
        True
    """

    def __init__(
        self, pipe: AugmentPipe | None = None, condition_channels: int = 3, condition_color: bool = False
    ) -> None:
        super().__init__()
        if pipe is not None and not isinstance(pipe, AugmentPipe):
            raise TypeError(
                f"`pipe` must be an AugmentPipe (its geometric draws are shared by the pair), got "
                f"{type(pipe).__name__}."
            )
        self.pipe = pipe if pipe is not None else AugmentPipe("bgc")
        self.condition_channels = check_positive_int("condition_channels", condition_channels)
        if not isinstance(condition_color, bool):
            raise TypeError(f"`condition_color` must be a bool, got {type(condition_color).__name__}.")
        self.condition_color = condition_color

    def extra_repr(self) -> str:
        return f"condition_channels={self.condition_channels}, condition_color={self.condition_color}"

    def strength_owner(self) -> AugmentPipe:
        """``pipe``: its ``p``, ``observe`` and ``pop_stats`` are the pair's."""
        return self.pipe

    def forward(
        self,
        images: torch.Tensor,
        condition: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Augment a concatenated pair, or an ``(image, condition)`` pair, with one draw.

        Args:
            images: ``cat([condition, image], dim=1)`` when ``condition`` is None, else the image.
            condition: the condition, given apart; ``None`` for a concatenated input.
            generator: optional ``torch.Generator`` for reproducible draws.
            params: a previous ``pipe.sample_params`` draw for the image to replay.

        Returns:
            The concatenated pair, or ``(image, condition)``; the inputs themselves at ``p == 0``.
        """
        if condition is None:
            check_images(images, "paired input")
            if images.shape[1] <= self.condition_channels:
                raise ValueError(
                    f"PairedAugment expects D's input as cat([condition, image], dim=1) with "
                    f"condition_channels={self.condition_channels}, but it has {images.shape[1]} channels; "
                    "set `condition_channels` to the number of condition channels."
                )
            split_condition, image = images.split(
                [self.condition_channels, images.shape[1] - self.condition_channels], dim=1
            )
            image_out, condition_out = self.augment_pair(image, split_condition, generator, params)
            if image_out is image and condition_out is split_condition:
                return images
            return torch.cat([condition_out, image_out], dim=1)
        return self.augment_pair(images, condition, generator, params)

    def augment_pair(
        self,
        image: torch.Tensor,
        condition: torch.Tensor,
        generator: torch.Generator | None = None,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The image with the whole draw, the condition with its geometry (and colour if enabled).

        Args:
            image: ``(B, C, H, W)``.
            condition: ``(B, C_c, h, w)``, the same batch size and aspect ratio.
            generator: optional ``torch.Generator``.
            params: a draw to replay (``pipe.sample_params(image.shape)``).

        Returns:
            ``(image, condition)`` augmented.
        """
        check_images(condition, "condition")
        if condition.shape[0] != image.shape[0]:
            raise ValueError(
                f"The condition has batch size {condition.shape[0]} and the image {image.shape[0]}; "
                "a pair needs one condition per image."
            )
        (height, width), (cond_height, cond_width) = image.shape[-2:], condition.shape[-2:]
        if cond_height * width != cond_width * height:
            raise ValueError(
                f"The condition is {cond_height}x{cond_width} and the image {height}x{width}: one "
                "geometric transform can only move both when they have the same aspect ratio."
            )
        if self.condition_color and condition.shape[1] not in COLOR_CHANNELS:
            raise ValueError(
                f"`condition_color=True` needs a condition with 1 or 3 channels, got {condition.shape[1]}; "
                "set `condition_color=False` for conditions that are not images (label maps, edges)."
            )
        if params is None:
            self.pipe.check_input(image)
            if self.pipe.is_identity():
                return image, condition
            params = self.pipe.sample_params(image.shape, image.device, generator)
        image_out = self.pipe.apply_params(image, params)
        shared = GEOMETRY_PARAMS + (COLOR_PARAMS if self.condition_color else ())
        condition_params = {key: value for key, value in params.items() if key in shared}
        if not condition_params:
            return image_out, condition
        for key in TRANSLATION_PARAMS:
            if key in condition_params:
                ratio = torch.tensor([cond_width / width, cond_height / height], device=params[key].device)
                condition_params[key] = params[key] * ratio
        return image_out, self.pipe.apply_params(condition, condition_params)


__all__ = ["PairedAugment"]
