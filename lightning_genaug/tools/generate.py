"""``lightning-genaug generate``: one PNG per seed (and a grid) from a StyleGAN2 or Sparse Transformer."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from lightning_genaug.images import picture_grid, save_png
from lightning_genaug.tools.arguments import (
    add_generation_arguments,
    add_network_arguments,
    check_class,
    parse_int_list,
)
from lightning_genaug.tools.latents import map_seeds, synthesize

TRANSFORM_ALIASES: dict[str, tuple[str, int]] = {
    "rot90": ("rotation", 1),
    "rot180": ("rotation", 2),
    "rot270": ("rotation", 3),
    "transpose": ("transposition", 1),
    "reverse": ("reverse", 1),
}
"""Short names of single DistAug options for ``--transform`` (``KIND=ID`` names any option)."""


def image_name(seed: int) -> str:
    """File name of the image of ``seed`` (the same as ``predict`` writes)."""
    return f"seed{seed:06d}.png"


def write_images(images: torch.Tensor, names: Sequence[str], outdir: Path, grid: bool) -> None:
    """One PNG per image and, with ``grid``, ``grid.png`` (rows of ``ceil(sqrt(N))``).

    Args:
        images: ``(N, C, H, W)`` in [-1, 1].
        names: ``N`` file names.
        outdir: folder (created).
        grid: also write ``grid.png``.
    """
    for image, name in zip(images.cpu(), names, strict=True):
        save_png((image + 1) / 2, outdir / name)
    if grid:
        save_png(picture_grid(images, math.ceil(math.sqrt(len(images)))), outdir / "grid.png")


@torch.no_grad()
def generate_stylegan(
    G: torch.nn.Module,
    seeds: Sequence[int],
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> torch.Tensor:
    """The image of each seed (latents as the reference's ``generate.py`` draws them).

    Returns:
        ``(len(seeds), C, H, W)`` in [-1, 1].
    """
    ws = map_seeds(G, seeds, class_idx, truncation_psi)
    return synthesize(G, ws, noise_mode, noise_seeds=seeds)


def parse_transform(text: str, kinds: Sequence[str], counts: Sequence[int]) -> list[int]:
    """``--transform`` to one option id per DistAug kind of the model (0, the identity, where unnamed).

    Args:
        text: ``identity``, an alias (``rot90``, ``rot180``, ``rot270``, ``transpose``, ``reverse``) or
            ``KIND=ID``, several joined by commas.
        kinds: the model's DistAug kinds, in order.
        counts: number of options of each kind.

    >>> parse_transform("rot90", ["rotation", "transposition"], [4, 2])
    [1, 0]
    """
    ids = [0] * len(kinds)
    for part in filter(None, (piece.strip().lower() for piece in text.split(","))):
        if part == "identity":
            continue
        kind, _, option = part.partition("=")
        kind, option = TRANSFORM_ALIASES.get(part, (kind, option))
        if kind not in kinds or not str(option).isdigit() or int(option) >= counts[list(kinds).index(kind)]:
            choices = [name for name, (alias_kind, _) in TRANSFORM_ALIASES.items() if alias_kind in kinds]
            ranges = [f"{name}=0..{count - 1}" for name, count in zip(kinds, counts, strict=True)]
            raise ValueError(
                f"--transform {text!r}: {part!r} is not an option of this model; use identity, "
                f"{', '.join(choices + ranges)}"
            )
        ids[list(kinds).index(kind)] = int(option)
    return ids


@torch.no_grad()
def generate_sparse_transformer(
    model: torch.nn.Module,
    seeds: Sequence[int],
    class_idx: int | None = None,
    temperature: float = 1.0,
    transform: str = "identity",
) -> torch.Tensor:
    """One image per seed from a ``SparseTransformerDistAug``, under the DistAug condition ``transform``.

    Returns:
        ``(len(seeds), C, H, W)`` in [-1, 1], in the transform's frame (``rot90`` gives rotated images).
    """
    check_class(class_idx, int(model.hparams.num_classes or 0))
    ids = None
    if model.augment is not None:
        ids = parse_transform(transform, model.augment.transforms, model.augment.num_options)
    elif transform != "identity":
        raise ValueError(f"--transform {transform!r}: the network was trained without DistAug; leave it out")
    labels = None if class_idx is None else torch.tensor([class_idx], device=model.device)
    return torch.cat(
        [
            model.sample(
                1,
                labels=labels,
                generator=torch.Generator(model.device).manual_seed(seed),
                temperature=temperature,
                transform=ids,
            )
            for seed in seeds
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument("--seeds", type=parse_int_list, required=True, help="seeds, e.g. 0-99 or 0,1,4-6")
    parser.add_argument("--outdir", type=Path, required=True, metavar="DIR", help="where to save the images")
    parser.add_argument("--grid", action="store_true", help="also write grid.png with every image")
    add_generation_arguments(parser)
    distaug = parser.add_argument_group("SparseTransformerDistAug networks")
    distaug.add_argument(
        "--temperature", type=float, default=1.0, help="softmax temperature (default: %(default)s)"
    )
    distaug.add_argument(
        "--transform",
        default="identity",
        help="DistAug condition to sample under: identity (default), rot90, rot180, rot270, transpose, "
        "reverse, or KIND=ID",
    )


def run(options: argparse.Namespace, model: torch.nn.Module) -> str:
    """Write the images of ``options.seeds``; returns the summary line."""
    if hasattr(model, "G_ema"):
        images = generate_stylegan(
            model.G_ema, options.seeds, options.class_idx, options.truncation_psi, options.noise_mode
        )
    else:
        if not options.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {options.temperature}")
        images = generate_sparse_transformer(
            model, options.seeds, options.class_idx, options.temperature, options.transform
        )
    write_images(images, [image_name(seed) for seed in options.seeds], options.outdir, options.grid)
    shape = "x".join(map(str, images.shape[1:]))
    return (
        f"Wrote {len(images)} images ({shape}){' and grid.png' if options.grid else ''} to {options.outdir}"
    )


__all__ = ["generate_sparse_transformer", "generate_stylegan", "parse_transform", "write_images"]
