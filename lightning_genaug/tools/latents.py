"""Seeds to latents to images for a StyleGAN2 generator, shared by every after-training tool.

A seed names one latent the way the reference scripts (``generate.py``, ``style_mixing.py``) draw it,
``z = numpy.random.RandomState(seed).randn(z_dim)``, so the same network gives the same image for the
same seed here and there. With ``noise_mode="random"`` the noise of image ``i`` is drawn under the
seed of image ``i``: every image depends only on its own seed, whatever the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lightning_genaug._checks import check_choice
from lightning_genaug.models.stylegan2.generation import BATCH_SIZE
from lightning_genaug.models.stylegan2.networks import NOISE_MODES
from lightning_genaug.tools.arguments import check_class


def seed_latents(seeds: Sequence[int], z_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """One latent per seed, as the reference scripts draw it.

    Returns:
        ``(len(seeds), z_dim)`` float32.

    >>> seed_latents([0, 0, 1], 4)[:, 0]
    tensor([1.7641, 1.7641, 1.6243])
    """
    rows = [np.random.RandomState(seed).randn(z_dim) for seed in seeds]
    return torch.from_numpy(np.stack(rows)).float().to(device)


def generator_device(G: nn.Module) -> torch.device:
    """The device a StyleGAN2 generator's weights are on (where its inputs must be made)."""
    return G.mapping.fc0.weight.device


def class_condition(G: nn.Module, class_idx: int | None, n: int) -> torch.Tensor:
    """One-hot labels ``(n, c_dim)`` for ``class_idx`` (``(n, 0)`` for an unconditional ``G``).

    Raises:
        ValueError: a conditional ``G`` without a class, a class out of range, or a class for an
            unconditional ``G`` (each message says what to pass).
    """
    device = generator_device(G)
    check_class(class_idx, G.c_dim)
    if G.c_dim == 0:
        return torch.zeros(n, 0, device=device)
    return torch.eye(G.c_dim, device=device)[class_idx].expand(n, -1)


def map_seeds(
    G: nn.Module, seeds: Sequence[int], class_idx: int | None = None, truncation_psi: float = 1.0
) -> torch.Tensor:
    """The (truncated) intermediate latents of ``seeds``.

    Returns:
        ``(len(seeds), num_ws, w_dim)``.
    """
    c = class_condition(G, class_idx, len(seeds))
    z = seed_latents(seeds, G.z_dim, c.device)
    return torch.cat(
        [
            G.mapping(z_chunk, c_chunk, truncation_psi=truncation_psi)
            for z_chunk, c_chunk in zip(z.split(BATCH_SIZE), c.split(BATCH_SIZE), strict=True)
        ]
    )


def synthesize(
    G: nn.Module, ws: torch.Tensor, noise_mode: str = "const", noise_seeds: Sequence[int] | None = None
) -> torch.Tensor:
    """Images of ``ws`` from ``G``'s synthesis network, in batches of :data:`BATCH_SIZE`.

    Args:
        G: a StyleGAN2 ``Generator`` (in eval mode).
        ws: ``(N, num_ws, w_dim)``.
        noise_mode: ``"const"``, ``"random"`` or ``"none"``.
        noise_seeds: with ``"random"``, one seed per image for its noise (``None``: torch's global RNG).

    Returns:
        ``(N, C, H, W)`` float32 in [-1, 1].
    """
    noise_mode = check_choice("noise_mode", noise_mode, NOISE_MODES)
    if noise_mode == "random" and noise_seeds is not None:
        images = []
        for w, seed in zip(ws.split(1), noise_seeds, strict=True):
            with torch.random.fork_rng(devices=[w.device] if w.device.type == "cuda" else []):
                torch.manual_seed(seed)
                images.append(G.synthesis(w, noise_mode=noise_mode))
    else:
        images = [G.synthesis(chunk, noise_mode=noise_mode) for chunk in ws.split(BATCH_SIZE)]
    return torch.cat(images).float().clamp(-1, 1)


__all__ = ["BATCH_SIZE", "class_condition", "generator_device", "map_seeds", "seed_latents", "synthesize"]
