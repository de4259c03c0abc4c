"""Images from the EMA generator, in chunks, with reproducible per-pixel noise."""

from __future__ import annotations

import torch
from torch import nn

BATCH_SIZE = 64
"""Images per forward pass: bounds memory for any number of images."""


@torch.no_grad()
def generate(
    G_ema: nn.Module,
    z: torch.Tensor,
    c: torch.Tensor,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    noise_seed: int | None = None,
) -> torch.Tensor:
    """``G_ema(z, c)`` in eval mode, ``BATCH_SIZE`` images at a time, as float in [-1, 1].

    Args:
        G_ema: a StyleGAN2 generator (its training flag is restored afterwards).
        z: latents ``(N, z_dim)`` on the generator's device.
        c: conditioning ``(N, c_dim)`` (``(N, 0)`` when unconditional).
        truncation_psi: truncation towards the average ``w`` (``1`` = none).
        noise_mode: ``"const"``, ``"random"`` or ``"none"``.
        noise_seed: with ``"random"``, seeds the noise the synthesis layers draw from torch's global
            generator, in a fork of its state (the caller's random stream is left as it was).

    Returns:
        ``(N, C, H, W)`` float32 in [-1, 1].
    """
    was_training = G_ema.training
    G_ema.eval()
    devices = [z.device] if z.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, enabled=noise_seed is not None):
            if noise_seed is not None:
                torch.manual_seed(noise_seed)
            chunks = [
                G_ema(z_chunk, c_chunk, truncation_psi=truncation_psi, noise_mode=noise_mode)
                for z_chunk, c_chunk in zip(z.split(BATCH_SIZE), c.split(BATCH_SIZE), strict=True)
            ]
    finally:
        G_ema.train(was_training)
    return torch.cat(chunks).float().clamp(-1, 1)
