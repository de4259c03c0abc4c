"""``KorniaAugment``: a ``kornia.augmentation`` pipeline whose strength ``p`` the ADA controller adapts.

Each wrapped kornia op runs on each sample with probability ``p * strength`` (per-sample gating
drawn here, the op then applied to the selected samples only, with its own ``p`` forced to 1), and
the pipe implements the ADA protocol of :mod:`lightning_genaug.augment.protocol` (a ``p`` buffer,
``observe``, ``pop_stats``, ``set_p``), so ``AdaptiveAugmentation`` drives it exactly as it drives
``AugmentPipe``: as a module's ``augment_pipe`` or installed on a foreign GAN with ``pipe=``.

Leaking (StyleGAN2-ADA, Sec. 2.2). Augmenting with probability ``q`` replaces the data
distribution ``P`` by ``(1 - q) P + q T(P)``, where ``T`` averages the op's transformations over
its random parameters. The generator cannot learn an augmented distribution instead of ``P`` as
long as this map is invertible, which fails when ``1 - q + q * lambda = 0`` for an eigenvalue
``lambda`` of ``T``, i.e. from ``q = 1 / (1 - lambda_min)`` on. Hence :data:`LEAK_THRESHOLDS`:

* deterministic involutions (flips, colour inversion; ``lambda = -1``): leak at ``q = 0.5``;
* uniform parameter ranges around the identity (kornia's rotation, translation, scale, shear,
  brightness, contrast, saturation, hue, gamma, ...): the Fourier transform of a uniform law is a
  sinc whose lowest value is ``-0.2172``, so they leak from ``q = 1 / 1.2172 = 0.82``;
* transformations that lose information but include the identity or are idempotent (greyscale,
  posterize, equalise, erasing, blurs, channel shuffle or dropout, a random number of quarter turns):
  ``lambda`` in [0, 1], they leak only at ``q = 1``;
* Gaussian perturbations (additive Gaussian noise: ``lambda > 0`` everywhere) never leak.

``AugmentPipe`` avoids the first two cases by construction (flips and quarter turns include the
identity, continuous parameters are log-normal or full-circle uniform), which is why its
transforms are safe up to ``p`` near 1 while kornia's defaults are not.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from lightning_genaug._checks import check_images, check_range
from lightning_genaug.augment.protocol import SignAccumulator

INVOLUTION = 0.5
UNIFORM_RANGE = 1.0 / (1.0 + 0.21723362821122166)  # 1 / (1 - min sinc): 0.8216
INFORMATION_LOSS = 1.0
NEVER = math.inf

LEAK_THRESHOLDS: dict[str, float] = {
    **dict.fromkeys(("RandomHorizontalFlip", "RandomVerticalFlip", "RandomInvert"), INVOLUTION),
    **dict.fromkeys(
        (
            "RandomAffine",
            "RandomRotation",
            "RandomTranslate",
            "RandomShear",
            "RandomPerspective",
            "RandomBrightness",
            "RandomContrast",
            "RandomSaturation",
            "RandomHue",
            "RandomGamma",
            "ColorJiggle",
            "ColorJitter",
            "RandomSharpness",
            "RandomRGBShift",
        ),
        UNIFORM_RANGE,
    ),
    **dict.fromkeys(
        (
            "RandomGrayscale",
            "RandomPosterize",
            "RandomEqualize",
            "RandomErasing",
            "RandomGaussianBlur",
            "RandomBoxBlur",
            "RandomMedianBlur",
            "RandomChannelShuffle",
            "RandomChannelDropout",
            "RandomRotation90",
        ),
        INFORMATION_LOSS,
    ),
    "RandomGaussianNoise": NEVER,
}
"""kornia op class name -> the probability ``p * strength`` from which it leaks (see the module doc)."""


def leak_threshold(op: nn.Module) -> float | None:
    """The probability from which ``op`` leaks, or ``None`` when it is not classified.

    ``RandomRotation90`` with a single number of quarter turns is a deterministic rotation whose
    square is a half turn (an involution): 0.5; with a range of turns it includes the identity: 1.
    """
    name = type(op).__name__
    if name == "RandomRotation90":
        times = op._param_generator.times
        return INVOLUTION if float(times[0]) == float(times[1]) else INFORMATION_LOSS
    return LEAK_THRESHOLDS.get(name)


def _kornia_ops(ops: nn.Module | Iterable[nn.Module]) -> list[nn.Module]:
    """The kornia augmentations in ``ops`` (an op, a list, ``nn.Sequential``, ``AugmentationSequential``)."""
    from kornia.augmentation import AugmentationBase2D

    if isinstance(ops, AugmentationBase2D):
        items = [ops]
    else:
        items = list(ops.children()) if isinstance(ops, nn.Module) else list(ops)
    for item in items:
        if not isinstance(item, AugmentationBase2D):
            raise TypeError(
                "KorniaAugment wraps kornia 2-D augmentations (kornia.augmentation.Random*, ColorJiggle, "
                f"...), got {type(item).__name__}; flatten nested containers into one list."
            )
    if not items:
        raise ValueError("`ops` must hold at least one kornia augmentation, got none.")
    return items


class KorniaAugment(SignAccumulator):
    """kornia augmentations gated per sample by an adaptable strength ``p`` (the ADA protocol).

    Each op ``i`` is applied to each sample independently with probability ``p * strengths[i]``,
    in order; the op's own ``p`` is replaced by this gate (set to 1, so kornia applies it to every
    selected sample). Samples not selected are not computed at all, and at ``p == 0`` the input is
    returned as is. Gradients flow to the input (kornia ops are differentiable; the selected rows
    are written back with ``index_copy``). Call the same module on reals and fakes.

    Images are in [-1, 1] (the project's convention) and handed to kornia in [0, 1], kornia's
    convention; kornia's colour ops clamp to that range. Give geometric ops
    ``padding_mode="reflection"`` to avoid black borders, as ADA does.

    Leaking: an op leaks from a probability :func:`leak_threshold` (see the module doc and
    docs/augment.md), that is at strength ``p = threshold / strength``. With ``max_p`` the highest
    ``p`` the controller may set (pass the same value as ``AdaptiveAugmentation(max_p=...)``), an
    op that leaks at some ``p < 1`` up to ``max_p`` is refused (a ``ValueError``); one that leaks
    only at ``p = 1`` (with ``max_p = 1``), or is not classified, is warned about;
    ``allow_leaking=True`` turns the refusal into a warning. A forward at ``p > max_p`` warns once.

    Args:
        ops: kornia 2-D augmentations: a list, ``nn.Sequential`` or ``AugmentationSequential``.
        p: initial strength in [0, 1].
        strengths: per-op probability multipliers in [0, 1] (default 1 each). A flip with strength
            0.5 is ADA's x-flip: it leaks only at ``p = 1``.
        max_p: the highest strength the controller will set, in (0, 1].
        allow_leaking: warn instead of refusing ops that leak below ``max_p``.

    Shape:
        - Input: ``(B, C, H, W)`` float in [-1, 1].
        - Output: ``(B, C, H, W)`` (shape-changing ops are rejected at the first call).

    Example:
        >>> import kornia.augmentation as K
        >>> pipe = KorniaAugment([K.RandomHorizontalFlip(), K.RandomGaussianNoise(std=0.1)],
        ...                      strengths=[0.5, 1.0])
        >>> x = torch.zeros(4, 3, 8, 8)
        >>> pipe(x) is x  # p = 0: the identity, free
        True
    """

    def __init__(
        self,
        ops: nn.Module | Iterable[nn.Module],
        p: float = 0.0,
        strengths: Sequence[float] | None = None,
        max_p: float = 1.0,
        allow_leaking: bool = False,
    ) -> None:
        super().__init__(p)
        items = _kornia_ops(ops)
        if strengths is None:
            strengths = [1.0] * len(items)
        if len(strengths) != len(items):
            raise ValueError(f"`strengths` must give one value per op ({len(items)}), got {len(strengths)}.")
        self.strengths = [float(check_range("strengths", value, 0.0, 1.0)) for value in strengths]
        self.max_p = float(check_range("max_p", max_p, 0.0, 1.0, low_inclusive=False))
        for op in items:
            op.p, op.p_batch = 1.0, 1.0  # the gate is drawn here
        self.ops = nn.ModuleList(items)
        self._check_leaking(allow_leaking)
        self._warned_beyond_max_p = False

    def _check_leaking(self, allow_leaking: bool) -> None:
        refused, warned = [], []
        for op, strength in zip(self.ops, self.strengths, strict=True):
            threshold, name = leak_threshold(op), type(op).__name__
            if threshold is None:
                warned.append(f"{name} (not classified; see docs/augment.md)")
                continue
            leaks_at = threshold / strength if strength > 0 else math.inf  # the strength p at which it leaks
            if leaks_at < 1.0 and leaks_at <= self.max_p:
                refused.append(f"{name} (leaks from p = {leaks_at:.2f} at strength {strength})")
            elif leaks_at <= self.max_p:
                warned.append(f"{name} (leaks at p = 1)")
        if refused and not allow_leaking:
            raise ValueError(
                f"KorniaAugment: with max_p = {self.max_p} these ops leak into the generator: "
                f"{'; '.join(refused)}. Lower `max_p` below the threshold (and pass the same `max_p` to "
                "AdaptiveAugmentation), lower the op's entry in `strengths`, or set `allow_leaking=True`."
            )
        if refused or warned:
            warnings.warn(
                f"KorniaAugment: ops that may leak at max_p = {self.max_p}: {'; '.join(refused + warned)}.",
                stacklevel=3,
            )

    def is_identity(self) -> bool:
        """Whether no sample can change (``p == 0`` or every strength 0)."""
        return bool(self.p <= 0.0) or not any(self.strengths)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``images`` ``(B, C, H, W)`` in [-1, 1].

        Args:
            images: the batch (reals or fakes).
            generator: optional generator for the gates; kornia draws its parameters from torch's
                global generator, which is then seeded from this one (and restored afterwards), so
                a seeded generator reproduces the output.
        """
        check_images(images)
        if self.is_identity():
            return images
        p = float(self.p)
        # compared in the buffer's dtype: a controller clamping p to max_p stores float32(max_p)
        if bool(self.p > self.max_p) and not self._warned_beyond_max_p:
            self._warned_beyond_max_p = True
            warnings.warn(
                f"KorniaAugment: p = {p:.3f} exceeds the declared max_p = {self.max_p}; the leaking checks "
                "assumed p <= max_p. Give AdaptiveAugmentation the same max_p.",
                stacklevel=2,
            )
        if generator is None:
            return self._augment(images, p, None)
        seed = int(torch.randint(2**62, (), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._augment(images, p, generator)

    def _augment(self, images: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
        out = (images + 1) / 2  # kornia's [0, 1]
        draw_device = generator.device if generator is not None else images.device
        for op, strength in zip(self.ops, self.strengths, strict=True):
            gate = torch.rand(images.shape[0], generator=generator, device=draw_device) < p * strength
            rows = gate.nonzero().squeeze(1).to(images.device)
            if rows.numel() == 0:
                continue
            selected = out.index_select(0, rows)
            transformed = op(selected)
            if transformed.shape != selected.shape:
                raise ValueError(
                    f"KorniaAugment: {type(op).__name__} changed the image shape from "
                    f"{tuple(selected.shape)} to {tuple(transformed.shape)}; D sees reals and fakes of one "
                    "shape, so only shape-preserving ops can be wrapped (give crops/resizes the input size)."
                )
            out = out.index_copy(0, rows, transformed.to(out.dtype))
        return out * 2 - 1
