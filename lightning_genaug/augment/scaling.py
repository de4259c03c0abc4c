"""Scale-GAN data scaling: shrink images towards zero by a random factor and add a little noise.

Every image the discriminator sees (real or generated, in the D and the G step) goes through

.. math::

    x' = a \\cdot x + \\sigma \\cdot \\varepsilon, \\qquad \\varepsilon \\sim \\mathcal{N}(0, I),

with a per-sample factor ``a`` in (0, 1] drawn from a schedule and ``a = 1, sigma = 0`` (the identity)
for the samples that are not transformed. Real and generated images go through the same random map.
For one factor the map acts invertibly on distributions (``x -> a x`` is a bijection, and adding
known Gaussian noise is a convolution that can be undone in the Fourier domain), so matching the
transformed distributions matches the originals; with random factors, ``p < 1`` keeps the identity
in the mix, as for ADA's transforms, so that the generator is not rewarded for scaled-looking images.

The strength ``p`` follows the ADA protocol (:class:`~lightning_genaug.augment.protocol.SignAccumulator`):
``AdaptiveAugmentation`` can adapt it from the r_t heuristic exactly as it adapts ``AugmentPipe``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from lightning_genaug._checks import check_choice, check_images, check_positive_int, check_range
from lightning_genaug.augment.protocol import ParametricAugmentation, random_draw

SCHEDULES = ("fixed", "uniform", "diffusion")


class DataScaling(ParametricAugmentation):
    """Per-sample data scaling ``x' = a * x + sigma * eps`` with a schedule for ``a``.

    Schedules (``u ~ U(0, 1)`` per sample):

    - ``"fixed"``: ``a = scale``, ``sigma = noise_std``.
    - ``"uniform"``: ``a = min_scale + u * (1 - min_scale)``, ``sigma = noise_std``.
    - ``"diffusion"`` (Diffusion-GAN's forward process): linear betas
      ``beta_s = beta_start + (beta_end - beta_start) * (s - 1) / (t_max - 1)`` for ``s = 1..t_max``,
      ``abar_t = prod_{s <= t} (1 - beta_s)``; the chain length is ``T = t_min + round(p * (t_max - t_min))``,
      ``t ~ U{1, ..., T}``, ``a = sqrt(abar_t)`` and ``sigma = sqrt(1 - abar_t) * noise_std``.

    Which samples are transformed: each one independently with probability ``apply_prob`` (the others
    are returned unchanged, ``a = 1``, ``sigma = 0``). With ``apply_prob=None`` (the default) that
    probability is the strength ``p`` itself, as for ADA's transforms; Diffusion-GAN's own setting is
    ``schedule="diffusion", apply_prob=0.5`` (half of each batch diffused, ``p`` setting the chain length).

    Args:
        schedule: ``"fixed"``, ``"uniform"`` or ``"diffusion"``.
        p: initial strength in [0, 1] (a buffer the ADA controller may change).
        scale: the factor of the ``"fixed"`` schedule, in (0, 1].
        min_scale: the smallest factor of the ``"uniform"`` schedule, in (0, 1].
        noise_std: standard deviation of the added noise for ``"fixed"``/``"uniform"``; the noise scale
            multiplying ``sqrt(1 - abar_t)`` for ``"diffusion"`` (Diffusion-GAN uses 0.05).
        apply_prob: probability that a sample is transformed; ``None`` uses ``p``.
        t_min: shortest diffusion chain (at ``p = 0``).
        t_max: longest diffusion chain (at ``p = 1``) and the number of betas.
        beta_start: first beta of the linear schedule.
        beta_end: last beta of the linear schedule.

    Shape:
        - Input: ``(B, C, H, W)`` float.
        - Output: ``(B, C, H, W)``, same dtype and device.

    Example:
        >>> scaling = DataScaling("fixed", p=1.0, scale=0.5)
        >>> scaling(torch.ones(2, 1, 2, 2)).unique().tolist()
        [0.5]
    """

    def __init__(
        self,
        schedule: str = "uniform",
        p: float = 0.5,
        scale: float = 0.5,
        min_scale: float = 0.5,
        noise_std: float = 0.0,
        apply_prob: float | None = None,
        t_min: int = 10,
        t_max: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 2e-2,
    ) -> None:
        super().__init__(p)
        self.schedule = check_choice("schedule", schedule, SCHEDULES)
        self.scale = check_range("scale", scale, 0.0, 1.0, low_inclusive=False)
        self.min_scale = check_range("min_scale", min_scale, 0.0, 1.0, low_inclusive=False)
        self.noise_std = check_range("noise_std", noise_std, 0.0)
        self.apply_prob = None if apply_prob is None else check_range("apply_prob", apply_prob, 0.0, 1.0)
        self.t_min = check_positive_int("t_min", t_min)
        self.t_max = check_positive_int("t_max", t_max)
        if t_min > t_max:
            raise ValueError(
                f"`t_min` ({t_min}) must be <= `t_max` ({t_max}); lower `t_min` or raise `t_max`."
            )
        check_range("beta_start", beta_start, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_range("beta_end", beta_end, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        # abar[t] for t = 0..t_max (abar[0] = 1: the identity); derived from the arguments, so not saved.
        alphas_bar = diffusion_alphas_bar(t_max, beta_start, beta_end).float()
        self.register_buffer("alphas_bar", alphas_bar, persistent=False)

    def extra_repr(self) -> str:
        return f"schedule={self.schedule!r}, p={float(self.p):.4f}"

    def chain_length(self) -> torch.Tensor:
        """The diffusion chain length ``T = t_min + round(p * (t_max - t_min))`` (0-d int64 tensor)."""
        return self.t_min + torch.round(self.p * (self.t_max - self.t_min)).long()

    def sample_params(
        self,
        shape: Sequence[int],
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw the per-sample factors (and the noise) without touching any image.

        Args:
            shape: the images' shape ``(B, C, H, W)``.
            device: where the parameters live (the images' device); defaults to the buffers' device.
            generator: optional ``torch.Generator``, on any device (see :func:`random_draw`).

        Returns:
            ``{"scale": (B,), "sigma": (B,), "t": (B,) int64}`` and, when ``noise_std > 0``,
            ``"noise": (B, C, H, W)`` standard normal. ``t`` is the diffusion step (0 for untransformed
            samples and for the non-diffusion schedules).
        """
        batch_size = int(shape[0])
        device = self.p.device if device is None else torch.device(device)
        apply_prob = self.p if self.apply_prob is None else self.apply_prob
        applied = random_draw(torch.rand, batch_size, device=device, generator=generator) < apply_prob
        uniform = random_draw(torch.rand, batch_size, device=device, generator=generator)
        t = torch.zeros(batch_size, dtype=torch.long, device=device)
        if self.schedule == "fixed":
            scale = torch.full((batch_size,), self.scale, device=device)
            sigma = torch.full((batch_size,), self.noise_std, device=device)
        elif self.schedule == "uniform":
            scale = self.min_scale + uniform * (1.0 - self.min_scale)
            sigma = torch.full((batch_size,), self.noise_std, device=device)
        else:
            chain = self.chain_length().to(device)
            t = torch.where(applied, 1 + torch.floor(uniform * chain).long().clamp(max=chain - 1), t)
            alphas_bar = self.alphas_bar.to(device)[t]
            scale = alphas_bar.sqrt()
            sigma = (1.0 - alphas_bar).sqrt() * self.noise_std
        params = {
            "scale": torch.where(applied, scale, torch.ones_like(scale)),
            "sigma": torch.where(applied, sigma, torch.zeros_like(sigma)),
            "t": t,
        }
        if self.noise_std > 0:
            noise_shape = tuple(int(s) for s in shape)
            params["noise"] = random_draw(torch.randn, noise_shape, device=device, generator=generator)
        return params

    def apply_params(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Apply a draw of :meth:`sample_params`: ``x' = scale * x + sigma * noise`` (deterministic).

        Args:
            images: ``(B, C, H, W)``.
            params: the dict returned by :meth:`sample_params` for this shape.

        Returns:
            ``(B, C, H, W)`` scaled images; differentiable (twice) with respect to ``images``.
        """
        check_images(images)
        scale = params["scale"].to(images.dtype)
        if scale.shape != images.shape[:1]:
            raise ValueError(
                f"`params` hold {scale.shape[0]} samples but `images` has {images.shape[0]}; "
                "draw them with `sample_params(images.shape)`."
            )
        out = images * scale.view(-1, 1, 1, 1)
        if "noise" in params:
            sigma = params["sigma"].to(images.dtype).view(-1, 1, 1, 1)
            out = out + sigma * params["noise"].to(images.dtype)
        return out

    def is_identity(self) -> bool:
        if self.apply_prob is not None:
            return self.apply_prob == 0.0
        return bool(self.p <= 0.0)


def diffusion_alphas_bar(t_max: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """``abar_t = prod_{s <= t} (1 - beta_s)``, ``t = 0..t_max``, linear betas; float64 ``(t_max + 1,)``.

    >>> round(float(diffusion_alphas_bar(1000)[1]), 6)
    0.9999
    """
    betas = torch.linspace(beta_start, beta_end, t_max, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1.0 - betas, dim=0)])
