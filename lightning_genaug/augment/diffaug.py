"""DiffAugment (Zhao et al., NeurIPS 2020): cheap differentiable colour, translation and cutout.

A baseline policy next to ADA's :class:`~lightning_genaug.augment.ada_pipe.AugmentPipe`: applied to every
image D sees (real and generated, D and G steps), differentiable so G's gradient flows through it.
Each transform is applied to each sample independently with probability ``p`` (``p = 1`` is the
paper's setting); ``p`` follows the ADA protocol, so ``AdaptiveAugmentation`` can adapt it.

Transforms, with ``u ~ U(0, 1)`` per sample:

- ``color``: brightness ``x + (u1 - 0.5)``; saturation ``m_c + (x - m_c) * 2 u2`` with ``m_c`` the
  per-pixel channel mean; contrast ``m + (x - m) * (u3 + 0.5)`` with ``m`` the per-image mean.
- ``translation``: integer shift by up to ``round(translation_ratio * size)`` pixels along each axis,
  zero padding.
- ``cutout``: one square-ish hole of ``round(cutout_ratio * size)`` pixels, centre uniform over the
  image (clipped at the borders), filled with zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from lightning_genaug._checks import check_choice, check_images, check_range
from lightning_genaug.augment.protocol import ParametricAugmentation, random_draw

POLICIES = ("color", "translation", "cutout")


class DiffAugment(ParametricAugmentation):
    """Differentiable augmentation with a comma-separated ``policy``, per-sample gating by ``p``.

    Args:
        policy: comma-separated subset of ``"color"``, ``"translation"``, ``"cutout"`` (order is
            ignored: colour, then translation, then cutout, as in the paper).
        p: probability that each transform is applied to each sample, in [0, 1].
        translation_ratio: largest shift as a fraction of the image size (paper: 1/8).
        cutout_ratio: hole size as a fraction of the image size (paper: 1/2).

    Shape:
        - Input: ``(B, C, H, W)`` float.
        - Output: ``(B, C, H, W)``.

    Example:
        >>> augment = DiffAugment("translation", p=0.0)
        >>> x = torch.rand(2, 3, 8, 8)
        >>> bool(torch.equal(augment(x), x))
        True
    """

    def __init__(
        self,
        policy: str = "color,translation,cutout",
        p: float = 1.0,
        translation_ratio: float = 0.125,
        cutout_ratio: float = 0.5,
    ) -> None:
        super().__init__(p)
        if not isinstance(policy, str):
            raise TypeError(f"`policy` must be a comma-separated string, got {type(policy).__name__}.")
        names = {check_choice("policy", name.strip(), POLICIES) for name in policy.split(",") if name.strip()}
        self.policy = tuple(name for name in POLICIES if name in names)
        self.translation_ratio = check_range("translation_ratio", translation_ratio, 0.0, 1.0)
        self.cutout_ratio = check_range("cutout_ratio", cutout_ratio, 0.0, 1.0)

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)!r}, p={float(self.p):.4f}"

    def sample_params(
        self,
        shape: Sequence[int],
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw every per-sample parameter; samples whose gate is closed get the neutral value.

        Args:
            shape: the images' shape ``(B, C, H, W)``.
            device: the images' device (defaults to the buffers' device).
            generator: optional ``torch.Generator``, on any device (see :func:`random_draw`).

        Returns:
            A dict with, for the enabled transforms: ``brightness``, ``saturation``, ``contrast``
            (``(B,)`` float: 0, 1, 1 when off); ``translation`` (``(B, 2)`` int64 ``(dy, dx)``, 0 when
            off); ``cutout`` (``(B,)`` bool) and ``cutout_center`` (``(B, 2)`` int64 ``(cy, cx)``).
        """
        batch_size, height, width = int(shape[0]), int(shape[-2]), int(shape[-1])
        device = self.p.device if device is None else torch.device(device)
        params: dict[str, torch.Tensor] = {}

        def gate() -> torch.Tensor:
            return random_draw(torch.rand, batch_size, device=device, generator=generator) < self.p

        def uniform() -> torch.Tensor:
            return random_draw(torch.rand, batch_size, device=device, generator=generator)

        if "color" in self.policy:
            params["brightness"] = torch.where(gate(), uniform() - 0.5, 0.0)
            params["saturation"] = torch.where(gate(), uniform() * 2.0, 1.0)
            params["contrast"] = torch.where(gate(), uniform() + 0.5, 1.0)
        if "translation" in self.policy:
            max_shift = torch.tensor(
                [int(height * self.translation_ratio + 0.5), int(width * self.translation_ratio + 0.5)],
                device=device,
            )
            uniform_pair = random_draw(torch.rand, batch_size, 2, device=device, generator=generator)
            shift = torch.floor(uniform_pair * (2 * max_shift + 1)).long() - max_shift
            params["translation"] = torch.where(gate()[:, None], shift, 0)
        if "cutout" in self.policy:
            size = torch.tensor([height, width], device=device)
            params["cutout"] = gate()
            params["cutout_center"] = torch.floor(
                random_draw(torch.rand, batch_size, 2, device=device, generator=generator) * size
            ).long()
        return params

    def apply_params(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Apply drawn parameters (differentiable with respect to ``images``).

        Args:
            images: ``(B, C, H, W)``.
            params: the output of :meth:`sample_params` for this batch and size.

        Returns:
            ``(B, C, H, W)`` augmented images.
        """
        check_images(images)
        out = images
        if "brightness" in params:
            out = adjust_color(out, params["brightness"], params["saturation"], params["contrast"])
        if "translation" in params:
            out = translate(out, params["translation"])
        if "cutout" in params:
            height, width = images.shape[2:]
            hole = (int(height * self.cutout_ratio + 0.5), int(width * self.cutout_ratio + 0.5))
            out = cutout(out, params["cutout"], params["cutout_center"], hole)
        return out

    def is_identity(self) -> bool:
        return not self.policy or bool(self.p <= 0.0)


def adjust_color(
    images: torch.Tensor, brightness: torch.Tensor, saturation: torch.Tensor, contrast: torch.Tensor
) -> torch.Tensor:
    """Brightness, then saturation, then contrast, with per-sample factors.

    ``x1 = x + b``; ``x2 = mean_c(x1) + (x1 - mean_c(x1)) * s``; ``x3 = mean(x2) + (x2 - mean(x2)) * c``.

    Args:
        images: ``(B, C, H, W)``.
        brightness: ``(B,)`` additive offsets (0 is neutral).
        saturation: ``(B,)`` factors around the channel mean (1 is neutral).
        contrast: ``(B,)`` factors around the image mean (1 is neutral).
    """
    view = (-1, 1, 1, 1)
    out = images + brightness.to(images.dtype).view(view)
    channel_mean = out.mean(dim=1, keepdim=True)
    out = channel_mean + (out - channel_mean) * saturation.to(images.dtype).view(view)
    image_mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return image_mean + (out - image_mean) * contrast.to(images.dtype).view(view)


def translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image by whole pixels, filling with zeros: ``out[i, j] = x[i - dy, j - dx]``.

    Args:
        images: ``(B, C, H, W)``.
        shift: ``(B, 2)`` int64 ``(dy, dx)``; positive moves content down / right.
    """
    batch, _, height, width = images.shape
    pad_y, pad_x = int(shift[:, 0].abs().max()), int(shift[:, 1].abs().max())
    if pad_y == 0 and pad_x == 0:
        return images
    padded = torch.nn.functional.pad(images, (pad_x, pad_x, pad_y, pad_y))
    rows = torch.arange(height, device=images.device)[None, :] - shift[:, :1] + pad_y  # (B, H)
    cols = torch.arange(width, device=images.device)[None, :] - shift[:, 1:] + pad_x  # (B, W)
    index = torch.arange(batch, device=images.device)[:, None, None]
    gathered = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return gathered.permute(0, 3, 1, 2)


def cutout(
    images: torch.Tensor, apply: torch.Tensor, center: torch.Tensor, hole: tuple[int, int]
) -> torch.Tensor:
    """Zero a ``hole``-sized rectangle centred at ``center`` (clipped at the borders) where ``apply``.

    Args:
        images: ``(B, C, H, W)``.
        apply: ``(B,)`` bool, which samples get a hole.
        center: ``(B, 2)`` int64 ``(cy, cx)``.
        hole: ``(h, w)`` hole size in pixels.
    """
    _, _, height, width = images.shape
    top = center[:, :1] - hole[0] // 2  # (B, 1)
    left = center[:, 1:] - hole[1] // 2
    rows = torch.arange(height, device=images.device)[None, :]
    cols = torch.arange(width, device=images.device)[None, :]
    in_rows = (rows >= top) & (rows < top + hole[0])  # (B, H)
    in_cols = (cols >= left) & (cols < left + hole[1])  # (B, W)
    inside = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]  # (B, H, W)
    return images * (~inside).to(images.dtype)[:, None]
