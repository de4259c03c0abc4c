"""StyleGAN2-ADA augmentation pipeline (Karras et al., NeurIPS 2020, App. B): 18 non-leaking transforms.

Every transform is applied to every sample independently with probability ``p * strength`` (``p``
is the adaptable buffer of the ADA protocol, ``strength`` the transform's own multiplier), with
parameters drawn from the paper's distributions. Order of execution, as in the paper:

1. **geometry** (one 3x3 matrix per sample, resampled once): x-flip, 90-degree rotation, integer
   translation (*pixel blitting*); isotropic scale, pre-rotation, anisotropic scale, post-rotation,
   fractional translation (*general geometric*). Samples whose matrix is the identity are left
   alone; samples whose matrix maps the pixel lattice onto itself (blits only) are copied pixel by
   pixel (exact); the others are reflect-padded, upsampled 2x with the orthogonal 12-tap ``sym6``
   wavelet low-pass filter, bilinearly resampled and downsampled 2x with the same filter, so that
   minification is anti-aliased and the identity is exact (the kernels are in
   :mod:`lightning_genaug.augment.resampling`).
2. **colour** (one 4x4 matrix per sample): brightness, contrast, luma flip, hue rotation, saturation.
3. **image-space filtering**: amplify or attenuate 4 frequency bands ([0, pi/8], [pi/8, pi/4],
   [pi/4, pi/2], [pi/2, pi]) with a separable zero-phase filter built from the ``sym2`` filter bank.
4. **additive RGB noise** and 5. **cutout**.

Each stage processes only the sub-batch whose draw is not the identity (index-select, process,
``index_copy`` back); at ``p == 0`` the input tensor itself is returned. Everything is made of
differentiable torch ops with double backward (R1 is computed through the pipe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from lightning_genaug._checks import check_choice, check_images, check_range
from lightning_genaug.augment.protocol import ParametricAugmentation, random_draw
from lightning_genaug.augment.resampling import (
    band_filter_bank,
    blit,
    filter_bands,
    lowpass_filter,
    rotate2d,
    scale2d,
    translate2d,
    warp,
)

# Probability multipliers, grouped as in the paper's presets.
GROUPS: dict[str, tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
}
TRANSFORMS: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)

# Keys of ``AugmentPipe.sample_params`` that make up the geometric and the colour transform.
GEOMETRY_PARAMS: tuple[str, ...] = (
    "xflip",
    "rotate90",
    "xint",
    "scale",
    "rotate_pre",
    "aniso",
    "rotate_post",
    "xfrac",
)
COLOR_PARAMS: tuple[str, ...] = ("brightness", "contrast", "lumaflip", "hue", "saturation")

# Preset name -> enabled groups; "bgc" (blit + geom + colour) is the paper's default.
AUGMENT_PRESETS: dict[str, tuple[str, ...]] = {
    "blit": ("blit",),
    "geom": ("geom",),
    "color": ("color",),
    "filter": ("filter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
    "bg": ("blit", "geom"),
    "bgc": ("blit", "geom", "color"),
    "bgcf": ("blit", "geom", "color", "filter"),
    "bgcfn": ("blit", "geom", "color", "filter", "noise"),
    "bgcfnc": ("blit", "geom", "color", "filter", "noise", "cutout"),
}

NUM_BANDS = 4
COLOR_CHANNELS = (1, 3)

# Expected power of the 4 bands for a 1/f spectrum (App. B.2), used to normalise the band gains.
_BAND_POWER = (10 / 13, 1 / 13, 1 / 13, 1 / 13)
# Tolerance when classifying composed matrices as identity / pixel-lattice maps.
_MATRIX_TOL = 1e-6


class _Draws:
    """Per-sample random draws from one generator on one device, returned on ``device``."""

    def __init__(self, batch_size: int, device: torch.device, generator: torch.Generator | None) -> None:
        self.batch_size = batch_size
        self.device = device
        self.generator = generator

    def uniform(self, *shape: int) -> torch.Tensor:
        """``U(0, 1)`` of shape ``(B, *shape)``."""
        size = (self.batch_size, *shape)
        return random_draw(torch.rand, size, device=self.device, generator=self.generator)

    def normal(self, *shape: int, count: int | None = None) -> torch.Tensor:
        """``N(0, 1)`` of shape ``(count or B, *shape)``."""
        size = (self.batch_size if count is None else count, *shape)
        return random_draw(torch.randn, size, device=self.device, generator=self.generator)

    def gate(self, probability: float) -> torch.Tensor:
        """Boolean ``(B,)``: which samples apply a transform of this probability."""
        return self.uniform() < probability


class AugmentPipe(ParametricAugmentation):
    """The StyleGAN2-ADA augmentation pipeline with its 18 transforms and adaptable strength ``p``.

    Each transform runs on each sample with probability ``p * strength[name]`` (rotations: so that
    pre- or post-rotation happens with that probability), parameters drawn as in the paper's
    App. B. With ``p < 1`` every transform is skipped with non-zero probability, which keeps the
    augmentation from leaking into the generator (Sec. 2.2).

    Images with 1 channel are treated as grey RGB: brightness, contrast and luma flip (a negation
    for grey) apply; hue rotation and saturation leave grey unchanged and are not drawn. Colour
    transforms need 1 or 3 channels; the other transforms work for any channel count.

    Every strength and distribution parameter is a keyword argument, so a YAML file or the command
    line reaches each one (``--model.augment.init_args.rotate 0.5``). A transform's strength is its
    probability multiplier, >= 0; ``None`` takes the preset's (1 for the transforms of its groups,
    0 for the others). The ``*_std`` of multiplicative transforms are standard deviations of log2.

    Args:
        preset: which groups start enabled (multiplier 1): ``"bgc"`` (default: blit, geom, colour),
            ``"bgcfnc"`` (all 18), ``"blit"``, ``"geom"``, ``"color"``, ``"filter"``, ``"noise"``,
            ``"cutout"``, ``"bg"``, ``"bgcf"``, ``"bgcfn"``; ``None`` enables none.
        p: initial strength in [0, 1] (the controller adapts it; a buffer saved in ``state_dict``).
        xflip: strength of the horizontal flip (blit).
        rotate90: strength of the rotation by a multiple of 90 degrees (blit).
        xint: strength of the integer translation (blit).
        scale: strength of the isotropic scaling (geom).
        rotate: strength of the arbitrary rotation (geom; pre- or post-rotation with this probability).
        aniso: strength of the anisotropic scaling (geom).
        xfrac: strength of the fractional translation (geom).
        brightness: strength of the brightness offset (color).
        contrast: strength of the contrast scaling (color).
        lumaflip: strength of the luma flip (color).
        hue: strength of the hue rotation (color).
        saturation: strength of the saturation scaling (color).
        imgfilter: strength of the frequency-band filter (filter; each band on its own).
        noise: strength of the additive RGB noise (noise).
        cutout: strength of the cutout (cutout).
        xint_max: integer translation ``~ U(-xint_max, xint_max) * size``, rounded to pixels.
        scale_std: isotropic scale ``= 2 ** N(0, scale_std^2)``.
        rotate_max: rotation angle ``~ U(-pi, pi) * rotate_max``.
        aniso_std: anisotropic scale ``= 2 ** N(0, aniso_std^2)``.
        xfrac_std: fractional translation ``~ N(0, xfrac_std^2) * size``.
        brightness_std: brightness offset ``~ N(0, brightness_std^2)``.
        contrast_std: contrast ``= 2 ** N(0, contrast_std^2)``.
        hue_max: hue angle ``~ U(-pi, pi) * hue_max``.
        saturation_std: saturation ``= 2 ** N(0, saturation_std^2)``.
        imgfilter_std: band gain ``= 2 ** N(0, imgfilter_std^2)``.
        noise_std: noise sigma ``~ |N(0, noise_std^2)|``.
        cutout_size: side of the cutout square relative to the image size, in [0, 1].
        imgfilter_bands: 4 multipliers of ``imgfilter``, one per frequency band, low to high.

    Shape:
        - Input: ``(B, C, H, W)`` float (float16/bfloat16 are computed in float32).
        - Output: ``(B, C, H, W)``, same dtype and device.

    Example:
        >>> pipe = AugmentPipe("bgc", p=0.5)
        >>> images = torch.rand(4, 3, 16, 16) * 2 - 1
        >>> pipe(images, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3, 16, 16])
        >>> pipe.set_p(0.0)
        >>> pipe(images) is images
        True
    """

    def __init__(
        self,
        preset: str | None = "bgc",
        p: float = 0.0,
        *,
        xflip: float | None = None,
        rotate90: float | None = None,
        xint: float | None = None,
        scale: float | None = None,
        rotate: float | None = None,
        aniso: float | None = None,
        xfrac: float | None = None,
        brightness: float | None = None,
        contrast: float | None = None,
        lumaflip: float | None = None,
        hue: float | None = None,
        saturation: float | None = None,
        imgfilter: float | None = None,
        noise: float | None = None,
        cutout: float | None = None,
        xint_max: float = 0.125,
        scale_std: float = 0.2,
        rotate_max: float = 1.0,
        aniso_std: float = 0.2,
        xfrac_std: float = 0.125,
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,
        hue_max: float = 1.0,
        saturation_std: float = 1.0,
        imgfilter_std: float = 1.0,
        noise_std: float = 0.1,
        cutout_size: float = 0.5,
        imgfilter_bands: Sequence[float] = (1.0,) * NUM_BANDS,
    ) -> None:
        super().__init__(p)
        enabled: tuple[str, ...] = ()
        if preset is not None:
            enabled = AUGMENT_PRESETS[check_choice("preset", preset, AUGMENT_PRESETS)]
        given = {
            "xflip": xflip, "rotate90": rotate90, "xint": xint, "scale": scale, "rotate": rotate,
            "aniso": aniso, "xfrac": xfrac, "brightness": brightness, "contrast": contrast,
            "lumaflip": lumaflip, "hue": hue, "saturation": saturation, "imgfilter": imgfilter,
            "noise": noise, "cutout": cutout,
        }  # fmt: skip
        self.strengths: dict[str, float] = {
            name: float(check_range(name, given[name], 0.0))
            if given[name] is not None
            else float(any(name in GROUPS[group] for group in enabled))
            for name in TRANSFORMS
        }
        unbounded = {
            "xint_max": xint_max, "scale_std": scale_std, "rotate_max": rotate_max, "aniso_std": aniso_std,
            "xfrac_std": xfrac_std, "brightness_std": brightness_std, "contrast_std": contrast_std,
            "hue_max": hue_max, "saturation_std": saturation_std, "imgfilter_std": imgfilter_std,
            "noise_std": noise_std,
        }  # fmt: skip
        self.distribution: dict[str, float] = {
            **{name: float(check_range(name, value, 0.0)) for name, value in unbounded.items()},
            "cutout_size": float(check_range("cutout_size", cutout_size, 0.0, 1.0)),
        }
        self.imgfilter_bands: tuple[float, ...] = self._check_bands(imgfilter_bands)
        # Filters are constants kept in float64 outside the buffers, so that ``module.to(bfloat16)``
        # (a low-precision trainer) cannot round them; copies per device/dtype are cached.
        self._filter_cache: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def _constant(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The ``"lowpass"`` (sym6, sum 1) or ``"bands"`` filter on ``like``'s device and dtype."""
        key = (name, like.device, like.dtype)
        if key not in self._filter_cache:
            taps = lowpass_filter() if name == "lowpass" else band_filter_bank()
            self._filter_cache[key] = taps.to(device=like.device, dtype=like.dtype)
        return self._filter_cache[key]

    @staticmethod
    def _check_bands(value: Any) -> tuple[float, ...]:
        if not isinstance(value, Sequence) or len(value) != NUM_BANDS:
            raise ValueError(
                f"`imgfilter_bands` must be a sequence of {NUM_BANDS} multipliers (low to high band), "
                f"got {value!r}."
            )
        return tuple(float(check_range("imgfilter_bands[i]", v, 0.0)) for v in value)

    def extra_repr(self) -> str:
        enabled = ", ".join(f"{name}={s:g}" for name, s in self.strengths.items() if s > 0)
        return f"p={float(self.p):.4f}, {enabled or 'no transform enabled'}"

    @property
    def _needs_color_channels(self) -> bool:
        return any(self.strengths[name] > 0 for name in GROUPS["color"])

    # ------------------------------------------------------------------ drawing parameters

    def sample_params(
        self,
        shape: Sequence[int],
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw every per-sample parameter at the current strength ``p``.

        Samples whose gate is closed get the transform's identity value; transforms that are
        disabled (multiplier 0, or hue/saturation for 1 channel) have no key at all.

        Args:
            shape: the images' shape ``(B, C, H, W)``.
            device: where the returned tensors live (default: the pipe's buffers' device).
            generator: optional ``torch.Generator`` (any device) for reproducible draws.

        Returns:
            A dict of float32 tensors: ``xflip``, ``rotate90`` ``(B,)`` (integer-valued), ``xint``
            ``(B, 2)`` pixels, ``scale``, ``rotate_pre``, ``aniso``, ``rotate_post`` ``(B,)``,
            ``xfrac`` ``(B, 2)`` pixels, ``brightness``, ``contrast``, ``lumaflip``, ``hue``,
            ``saturation`` ``(B,)``, ``imgfilter`` ``(B, 4)`` band gains, ``noise`` ``(B,)`` sigma
            with ``noise_field`` ``(n, C, H, W)`` for the ``n`` samples with sigma > 0, ``cutout``
            ``(B,)`` rectangle size (0 = off) with ``cutout_center`` ``(B, 2)`` in [0, 1].
        """
        batch_size, channels, height, width = (int(s) for s in shape)
        device = torch.device(device) if device is not None else self.p.device
        draws = _Draws(batch_size, device, generator)
        p = float(self.p)
        params: dict[str, torch.Tensor] = {}
        self._sample_geometry(params, draws, p, height, width)
        self._sample_color(params, draws, p, channels)
        self._sample_corruptions(params, draws, p, (channels, height, width))
        return params

    def _prob(self, name: str, p: float) -> float:
        return self.strengths[name] * p

    def _sample_geometry(self, params: dict, draws: _Draws, p: float, height: int, width: int) -> None:
        dist = self.distribution
        size = torch.tensor([width, height], dtype=torch.float32, device=draws.device)
        if self.strengths["xflip"] > 0:
            flip = torch.floor(draws.uniform() * 2)
            params["xflip"] = torch.where(draws.gate(self._prob("xflip", p)), flip, 0.0)
        if self.strengths["rotate90"] > 0:
            quarter_turns = torch.floor(draws.uniform() * 4)
            params["rotate90"] = torch.where(draws.gate(self._prob("rotate90", p)), quarter_turns, 0.0)
        if self.strengths["xint"] > 0:
            shift = torch.round((draws.uniform(2) * 2 - 1) * dist["xint_max"] * size)
            params["xint"] = torch.where(draws.gate(self._prob("xint", p))[:, None], shift, 0.0)
        if self.strengths["scale"] > 0:
            scale = torch.exp2(draws.normal() * dist["scale_std"])
            params["scale"] = torch.where(draws.gate(self._prob("scale", p)), scale, 1.0)
        if self.strengths["rotate"] > 0:
            params["rotate_pre"] = self._sample_rotation(draws, p)
        if self.strengths["aniso"] > 0:
            aniso = torch.exp2(draws.normal() * dist["aniso_std"])
            params["aniso"] = torch.where(draws.gate(self._prob("aniso", p)), aniso, 1.0)
        if self.strengths["rotate"] > 0:
            params["rotate_post"] = self._sample_rotation(draws, p)
        if self.strengths["xfrac"] > 0:
            shift = draws.normal(2) * dist["xfrac_std"] * size
            params["xfrac"] = torch.where(draws.gate(self._prob("xfrac", p))[:, None], shift, 0.0)

    def _sample_rotation(self, draws: _Draws, p: float) -> torch.Tensor:
        """Angle of the pre- or post-rotation, each gated by ``1 - sqrt(1 - p)``: P(either) = p."""
        p_rot = 1 - math.sqrt(1 - min(self._prob("rotate", p), 1.0))
        theta = (draws.uniform() * 2 - 1) * math.pi * self.distribution["rotate_max"]
        return torch.where(draws.gate(p_rot), theta, 0.0)

    def _sample_color(self, params: dict, draws: _Draws, p: float, channels: int) -> None:
        dist = self.distribution
        if self.strengths["brightness"] > 0:
            offset = draws.normal() * dist["brightness_std"]
            params["brightness"] = torch.where(draws.gate(self._prob("brightness", p)), offset, 0.0)
        if self.strengths["contrast"] > 0:
            contrast = torch.exp2(draws.normal() * dist["contrast_std"])
            params["contrast"] = torch.where(draws.gate(self._prob("contrast", p)), contrast, 1.0)
        if self.strengths["lumaflip"] > 0:
            flip = torch.floor(draws.uniform() * 2)
            params["lumaflip"] = torch.where(draws.gate(self._prob("lumaflip", p)), flip, 0.0)
        if channels == 1:  # hue and saturation leave grey unchanged: nothing to draw
            return
        if self.strengths["hue"] > 0:
            theta = (draws.uniform() * 2 - 1) * math.pi * dist["hue_max"]
            params["hue"] = torch.where(draws.gate(self._prob("hue", p)), theta, 0.0)
        if self.strengths["saturation"] > 0:
            saturation = torch.exp2(draws.normal() * dist["saturation_std"])
            params["saturation"] = torch.where(draws.gate(self._prob("saturation", p)), saturation, 1.0)

    def _sample_corruptions(
        self, params: dict, draws: _Draws, p: float, image_shape: tuple[int, int, int]
    ) -> None:
        dist = self.distribution
        if self.strengths["imgfilter"] > 0:
            band_power = torch.tensor(_BAND_POWER, device=draws.device)
            gains = torch.ones(draws.batch_size, NUM_BANDS, device=draws.device)
            for band, band_strength in enumerate(self.imgfilter_bands):
                amplify = torch.exp2(draws.normal() * dist["imgfilter_std"])
                amplify = torch.where(draws.gate(self._prob("imgfilter", p) * band_strength), amplify, 1.0)
                step = torch.ones_like(gains)
                step[:, band] = amplify
                gains = gains * step / (band_power * step.square()).sum(dim=1, keepdim=True).sqrt()
            params["imgfilter"] = gains
        if self.strengths["noise"] > 0:
            sigma = draws.normal().abs() * dist["noise_std"]
            sigma = torch.where(draws.gate(self._prob("noise", p)), sigma, 0.0)
            params["noise"] = sigma
            params["noise_field"] = draws.normal(*image_shape, count=int((sigma > 0).sum()))
        if self.strengths["cutout"] > 0:
            params["cutout_center"] = draws.uniform(2)
            params["cutout"] = torch.where(draws.gate(self._prob("cutout", p)), dist["cutout_size"], 0.0)

    # ------------------------------------------------------------------ applying parameters

    def is_identity(self) -> bool:
        return float(self.p) == 0.0 or not any(s > 0 for s in self.strengths.values())

    def check_input(self, images: torch.Tensor) -> None:
        check_images(images, channels=COLOR_CHANNELS if self._needs_color_channels else None)

    def apply_params(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Apply a draw of :meth:`sample_params` (deterministic, differentiable w.r.t. ``images``).

        Args:
            images: ``(B, C, H, W)`` float.
            params: the dict returned by :meth:`sample_params` for this shape.

        Returns:
            ``(B, C, H, W)``, same dtype; float16/bfloat16 are processed in float32, also inside an
            autocast region (a bf16 sampling grid would move samples by a large part of a pixel).
        """
        check_images(images)
        compute_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        with torch.autocast(images.device.type, enabled=False):
            x = images.to(compute_dtype)
            x = self._apply_geometry(x, params)
            x = self._apply_color(x, params)
            x = self._apply_filter(x, params)
            x = self._apply_noise(x, params)
            x = self._apply_cutout(x, params)
        if x is images:
            return images
        x = x.to(images.dtype)
        if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @staticmethod
    def _process_subset(
        x: torch.Tensor, selected: torch.Tensor, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """Run ``fn(x[index], index)`` on the selected rows only and write the result back."""
        index = selected.nonzero().view(-1)
        if index.numel() == 0:
            return x
        if index.numel() == x.shape[0]:
            return fn(x, index)
        return x.index_copy(0, index, fn(x.index_select(0, index), index))

    # geometry -------------------------------------------------------------

    @staticmethod
    def geometry_matrix_inverse(params: Mapping[str, torch.Tensor], batch_size: int) -> torch.Tensor | None:
        """Compose the inverse geometric transform (output pixel -> input pixel), float64.

        Coordinates are in pixels with the origin at the image centre, x right, y down. The forward
        transform is ``G = T_frac R_post A R_pre S T_int R90 F`` (App. B.1); this returns ``G^-1``.

        Returns:
            ``(B, 3, 3)`` or ``None`` when no geometric transform is in ``params``.
        """
        if not any(key in params for key in GEOMETRY_PARAMS):
            return None
        first = next(iter(params.values()))
        like = torch.zeros(batch_size, dtype=torch.float64, device=first.device)
        factors = []
        if "xflip" in params:
            factors.append(scale2d(1 - 2 * params["xflip"].double(), 1.0, like))
        if "rotate90" in params:
            turns = params["rotate90"].long() % 4
            cos = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=torch.float64, device=like.device)[turns]
            sin = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=torch.float64, device=like.device)[turns]
            factors.append(rotate2d(cos, sin))  # inverse of a rotation by -90 deg * turns
        if "xint" in params:
            shift = params["xint"].double()
            factors.append(translate2d(-shift[:, 0], -shift[:, 1], like))
        if "scale" in params:
            inv = 1 / params["scale"].double()
            factors.append(scale2d(inv, inv, like))
        if "rotate_pre" in params:
            theta = params["rotate_pre"].double()
            factors.append(rotate2d(torch.cos(theta), torch.sin(theta)))
        if "aniso" in params:
            aniso = params["aniso"].double()
            factors.append(scale2d(1 / aniso, aniso, like))
        if "rotate_post" in params:
            theta = params["rotate_post"].double()
            factors.append(rotate2d(torch.cos(theta), torch.sin(theta)))
        if "xfrac" in params:
            shift = params["xfrac"].double()
            factors.append(translate2d(-shift[:, 0], -shift[:, 1], like))
        matrix = factors[0]
        for factor in factors[1:]:
            matrix = matrix @ factor
        return matrix

    def _apply_geometry(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        batch_size, _, height, width = x.shape
        g_inv = self.geometry_matrix_inverse(params, batch_size)
        if g_inv is None:
            return x
        eye = torch.eye(3, dtype=g_inv.dtype, device=g_inv.device)
        moved = (g_inv - eye).abs().amax(dim=(1, 2)) > _MATRIX_TOL
        # The same map in pixel-index coordinates (origin at the top-left pixel centre).
        center = translate2d((width - 1) / 2, (height - 1) / 2, g_inv[:, 0, 0])
        uncenter = translate2d(-(width - 1) / 2, -(height - 1) / 2, g_inv[:, 0, 0])
        index_map = center @ g_inv @ uncenter
        on_lattice = (index_map - index_map.round()).abs().amax(dim=(1, 2)) < _MATRIX_TOL
        linear = index_map[:, :2, :2].round().abs()
        on_lattice &= (linear.sum(dim=2) == 1).all(dim=1) & (linear.sum(dim=1) == 1).all(dim=1)
        blits = moved & on_lattice
        x = self._process_subset(x, blits, lambda sub, idx: blit(sub, index_map[idx].round().long()))
        return self._process_subset(
            x, moved & ~blits, lambda sub, idx: warp(sub, g_inv[idx], self._constant("lowpass", sub))
        )

    # colour ---------------------------------------------------------------
    # One 4x4 matrix per sample for all five transforms, not kornia's colour ops: kornia converts to
    # HSV and back for hue and saturation and clamps to [0, 1]; the matrix is one matmul, unclamped (B.1).

    @staticmethod
    def color_matrix(params: Mapping[str, torch.Tensor], batch_size: int) -> torch.Tensor | None:
        """Compose the colour transform ``C = Sat Hue Flip Contrast Bright`` (App. B.1), float64.

        ``C @ [r, g, b, 1]`` is the output colour; the luma axis is ``v = (1, 1, 1) / sqrt(3)``.

        Returns:
            ``(B, 4, 4)`` or ``None`` when no colour transform is in ``params``.
        """
        if not any(key in params for key in COLOR_PARAMS):
            return None
        device = next(iter(params.values())).device
        eye = torch.eye(4, dtype=torch.float64, device=device)
        luma = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64, device=device) / math.sqrt(3)
        luma_outer = torch.outer(luma, luma)
        matrix = eye.expand(batch_size, 4, 4)
        if "brightness" in params:
            bright = eye.repeat(batch_size, 1, 1)
            bright[:, :3, 3] = params["brightness"].double()[:, None]
            matrix = bright @ matrix
        if "contrast" in params:
            contrast = params["contrast"].double()[:, None, None]
            scale = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64, device=device))
            matrix = (scale * contrast + (eye - scale)) @ matrix
        if "lumaflip" in params:
            matrix = (eye - 2 * luma_outer * params["lumaflip"].double()[:, None, None]) @ matrix
        if "hue" in params:
            theta = params["hue"].double()[:, None, None]
            cross = torch.zeros(4, 4, dtype=torch.float64, device=device)
            cross[0, 1], cross[0, 2], cross[1, 2] = -luma[2], luma[1], -luma[0]
            cross = cross - cross.T
            # Rodrigues: R = cos I + sin [v]x + (1 - cos) v v^T on the colour block, w kept.
            rgb = eye - torch.diag(luma.new_tensor([0.0, 0.0, 0.0, 1.0]))
            rotation = torch.cos(theta) * rgb + torch.sin(theta) * cross + (1 - torch.cos(theta)) * luma_outer
            matrix = (rotation + (eye - rgb)) @ matrix
        if "saturation" in params:
            saturation = params["saturation"].double()[:, None, None]
            matrix = (luma_outer + (eye - luma_outer) * saturation) @ matrix
        return matrix

    def _apply_color(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        batch_size, channels = x.shape[:2]
        matrix = self.color_matrix(params, batch_size)
        if matrix is None:
            return x
        if channels not in COLOR_CHANNELS:
            check_images(x, channels=COLOR_CHANNELS)
        eye = torch.eye(4, dtype=matrix.dtype, device=matrix.device)
        changed = (matrix - eye).abs().amax(dim=(1, 2)) > _MATRIX_TOL
        return self._process_subset(x, changed, lambda sub, idx: self._color(sub, matrix[idx].to(x.dtype)))

    @staticmethod
    def _color(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
        """``(n, C, H, W)`` times ``(n, 4, 4)``; 1 channel: the mean output of grey ``(x, x, x)``."""
        n, channels, height, width = x.shape
        flat = x.reshape(n, channels, height * width)
        if channels == 3:
            out = torch.baddbmm(matrix[:, :3, 3:], matrix[:, :3, :3], flat)
        else:
            gain = matrix[:, :3, :3].sum(dim=2).mean(dim=1)[:, None, None]
            offset = matrix[:, :3, 3].mean(dim=1)[:, None, None]
            out = flat * gain + offset
        return out.view(n, channels, height, width)

    # filtering and corruptions ---------------------------------------------

    def _apply_filter(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "imgfilter" not in params:
            return x
        gains = params["imgfilter"]
        changed = (gains - 1).abs().amax(dim=1) > _MATRIX_TOL
        return self._process_subset(
            x, changed, lambda sub, idx: filter_bands(sub, gains[idx], self._constant("bands", sub))
        )

    def _apply_noise(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "noise" not in params:
            return x
        sigma = params["noise"]
        field = params["noise_field"]

        def add_noise(sub: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return sub + sigma[idx].to(sub.dtype).view(-1, 1, 1, 1) * field.to(sub.dtype)

        return self._process_subset(x, sigma > 0, add_noise)

    def _apply_cutout(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if "cutout" not in params:
            return x
        size, center = params["cutout"], params["cutout_center"]

        def cut(sub: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            height, width = sub.shape[-2:]
            cols = (torch.arange(width, device=sub.device, dtype=sub.dtype) + 0.5) / width
            rows = (torch.arange(height, device=sub.device, dtype=sub.dtype) + 0.5) / height
            half = size[idx].to(sub.dtype)[:, None] / 2
            outside_x = (cols[None, :] - center[idx, 0:1].to(sub.dtype)).abs() >= half  # (n, W)
            outside_y = (rows[None, :] - center[idx, 1:2].to(sub.dtype)).abs() >= half  # (n, H)
            keep = outside_x[:, None, None, :] | outside_y[:, None, :, None]
            return sub * keep.to(sub.dtype)

        return self._process_subset(x, size > 0, cut)
