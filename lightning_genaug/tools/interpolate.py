"""``lightning-genaug interpolate``: a looping latent walk through the images of some seeds.

Each grid cell walks through its own seeds and back to its first one, ``frames_per_seed`` frames
from one seed to the next. ``space="w"`` (default) interpolates linearly between the seeds'
(truncated) intermediate latents ``w``, where StyleGAN's images change most evenly;
``space="z"`` interpolates spherically between the Gaussian latents ``z`` (slerp), then maps.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from lightning_genaug.images import picture_grid, save_png
from lightning_genaug.models.stylegan2.generation import (
    class_condition,
    generator_device,
    seed_latents,
    synthesize,
)
from lightning_genaug.tools.arguments import ToolArgumentError, class_labels
from lightning_genaug.tools.parsers import SPACES, strip_path
from lightning_genaug.tools.video import check_video_path, write_animation


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``a`` to ``b``, with linear interpolation of the norm.

    Args:
        a, b: ``(..., D)``.
        t: fractions ``(...)`` in [0, 1], broadcast against the leading dimensions.

    Returns:
        ``(..., D)``; ``t = 0`` gives ``a``, ``t = 1`` gives ``b``.

    >>> slerp(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor(0.5))
    tensor([0.7071, 0.7071])
    """
    t = t.unsqueeze(-1)
    a_norm, b_norm = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    a_unit, b_unit = a / a_norm, b / b_norm
    omega = (a_unit * b_unit).sum(-1, keepdim=True).clamp(-1, 1).acos()
    sin_omega = omega.sin()
    # Nearly parallel directions: the sine ratios tend to the linear weights.
    parallel = sin_omega.abs() < 1e-6
    safe_sin = torch.where(parallel, torch.ones_like(sin_omega), sin_omega)
    weight_a = torch.where(parallel, 1 - t, ((1 - t) * omega).sin() / safe_sin)
    weight_b = torch.where(parallel, t, (t * omega).sin() / safe_sin)
    return (weight_a * a_unit + weight_b * b_unit) * torch.lerp(a_norm, b_norm, t)


def walk_positions(num_keys: int, frames_per_seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every frame of a closed walk through ``num_keys`` keys: from-key, to-key, fraction.

    >>> [x.tolist() for x in walk_positions(2, 2)]
    [[0, 0, 1, 1], [1, 1, 0, 0], [0.0, 0.5, 0.0, 0.5]]
    """
    frame = torch.arange(num_keys * frames_per_seed)
    start = frame // frames_per_seed
    return start, (start + 1) % num_keys, (frame % frames_per_seed).float() / frames_per_seed


@torch.no_grad()
def interpolation_frames(
    G: torch.nn.Module,
    seeds: Sequence[int],
    grid: tuple[int, int] = (1, 1),
    frames_per_seed: int = 30,
    space: str = "w",
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> torch.Tensor:
    """Images of the walk: cell ``i`` of a ``(columns, rows)`` grid walks through ``seeds[i::cells]``.

    Returns:
        ``(T, cells, C, H, W)`` in [-1, 1] with ``T = len(seeds) / cells * frames_per_seed``.
    """
    cells = grid[0] * grid[1]
    if len(seeds) % cells or len(seeds) // cells < 2:
        raise ToolArgumentError(
            "seeds",
            f"{{name}} must give every one of the {cells} grid cells the same number (at least 2) of "
            f"seeds to walk through, i.e. a multiple of {cells} from {2 * cells}; got {len(seeds)}",
        )
    if space not in SPACES:
        raise ToolArgumentError("space", f"{{name}} must be one of {', '.join(SPACES)}, got {space!r}")
    num_keys = len(seeds) // cells
    labels = class_labels(class_idx, G.c_dim, len(seeds))
    c = class_condition(labels, G.c_dim, len(seeds), generator_device(G))
    z = seed_latents(seeds, G.z_dim, c.device).view(num_keys, cells, -1)  # (K, cells, z_dim)
    start, end, fraction = walk_positions(num_keys, frames_per_seed)
    fraction = fraction.to(z.device).view(-1, 1)  # (T, 1)
    c_frames = c[:cells].expand(len(start), -1, -1).flatten(0, 1)  # (T * cells, c_dim)
    if space == "z":
        z_frames = slerp(z[start], z[end], fraction.expand(-1, cells))  # (T, cells, z_dim)
        ws = G.mapping(z_frames.flatten(0, 1), c_frames, truncation_psi=truncation_psi)
    else:
        key_ws = G.mapping(z.flatten(0, 1), c, truncation_psi=truncation_psi).unflatten(0, (num_keys, cells))
        ws = torch.lerp(key_ws[start], key_ws[end], fraction.view(-1, 1, 1, 1)).flatten(0, 1)
    images = synthesize(G, ws, noise_mode)
    return images.unflatten(0, (len(start), cells))


def run(options: argparse.Namespace, model: torch.nn.Module) -> str:
    """Write the animation (and the strip); returns the summary line."""
    check_video_path(options.out)
    frames = interpolation_frames(
        model.G_ema,
        options.seeds,
        options.grid,
        options.frames_per_seed,
        options.space,
        options.class_idx,
        options.truncation_psi,
        options.noise_mode,
    )
    pictures = [picture_grid(cells, options.grid[0]) for cells in frames]
    _, message = write_animation(pictures, options.out, options.fps)
    if options.strip > 0:
        picks = torch.linspace(0, len(frames) - 1, min(options.strip, len(frames))).round().long()
        strip = frames[picks, 0] if options.grid == (1, 1) else frames[picks].flatten(0, 1)
        strip_file = strip_path(options.out)
        save_png(picture_grid(strip, len(picks) if options.grid == (1, 1) else frames.shape[1]), strip_file)
        message += f" and {strip_file}"
    return message[0].upper() + message[1:]


__all__ = ["interpolation_frames", "slerp", "walk_positions"]
