"""``lightning-genaug generate``: one PNG per seed (and a grid) from a StyleGAN2 or Sparse Transformer.

The image of a seed is the one ``predict`` writes for the same seed and class, drawn by the model
family's one function: :func:`~lightning_genaug.models.stylegan2.generation.seed_images` (the reference
scripts' latents) for StyleGAN2, ``sample_seeds`` of the module for the Sparse Transformer; the PNG
files and ``grid.png`` come from the same writer as ``predict``'s.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from lightning_genaug.images import save_picture_grid, save_seed_images
from lightning_genaug.models.stylegan2.generation import seed_images
from lightning_genaug.tools.arguments import ToolArgumentError, class_labels

TRANSFORM_ALIASES: dict[str, tuple[str, int]] = {
    "rot90": ("rotation", 1),
    "rot180": ("rotation", 2),
    "rot270": ("rotation", 3),
    "transpose": ("transposition", 1),
    "reverse": ("reverse", 1),
}
"""Short names of single DistAug options for ``--transform`` (``KIND=ID`` names any option)."""


def write_images(images: torch.Tensor, seeds: Sequence[int], outdir: Path, grid: bool) -> None:
    """``seedNNNNNN.png`` per image and, with ``grid``, ``grid.png``: what ``predict`` writes.

    Args:
        images: ``(N, C, H, W)`` in [-1, 1].
        seeds: the ``N`` images' seeds.
        outdir: folder (created).
        grid: also write ``grid.png``.
    """
    save_seed_images(images, seeds, outdir)
    if grid:
        save_picture_grid(images, outdir / "grid.png")


@torch.no_grad()
def generate_stylegan(
    G: torch.nn.Module,
    seeds: Sequence[int],
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> torch.Tensor:
    """The image of each seed, of class ``class_idx`` (latents as the reference's ``generate.py`` draws them).

    :func:`~lightning_genaug.models.stylegan2.generation.seed_images` with one class for every seed.

    Returns:
        ``(len(seeds), C, H, W)`` in [-1, 1].

    Raises:
        ToolArgumentError: ``class_idx`` missing for a conditional ``G``, out of range, or given to an
            unconditional one.
    """
    labels = class_labels(class_idx, G.c_dim, len(seeds))
    return seed_images(G, seeds, labels, truncation_psi, noise_mode)


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
            raise ToolArgumentError(
                "transform",
                f"{{name}} {text!r}: {part!r} is not an option of this model; use identity, "
                f"{', '.join(choices + ranges)}",
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

    The module's ``sample_seeds`` (what ``predict`` writes for the same seed, class and
    ``sample_kwargs``): image ``i`` is ``sample(1, generator=torch.Generator(device).manual_seed(seed))``.

    Returns:
        ``(len(seeds), C, H, W)`` in [-1, 1], in the transform's frame (``rot90`` gives rotated images).

    Raises:
        ToolArgumentError: a bad ``class_idx``, ``temperature`` or ``transform``, named.
    """
    labels = class_labels(class_idx, int(model.hparams.num_classes or 0), len(seeds))
    if not temperature > 0:
        raise ToolArgumentError("temperature", f"{{name}} must be > 0, got {temperature}")
    ids = None
    if model.augment_pipe is not None:
        ids = parse_transform(transform, model.augment_pipe.transforms, model.augment_pipe.num_options)
    elif transform != "identity":
        raise ToolArgumentError(
            "transform", f"{{name}} {transform!r}: the network was trained without DistAug; leave it out"
        )
    return model.sample_seeds(seeds, labels, temperature=temperature, transform=ids)


STYLEGAN_OPTIONS = {"truncation_psi": "--truncation-psi", "noise_mode": "--noise-mode"}
"""Options of ``generate`` that only a StyleGAN2 network takes (``None`` unless given)."""

DISTAUG_OPTIONS = {"temperature": "--temperature", "transform": "--transform"}
"""Options of ``generate`` that only a Sparse Transformer takes (``None`` unless given)."""


def check_family_options(options: argparse.Namespace, model: torch.nn.Module) -> None:
    """Refuse an option the network's family does not use, rather than ignore it.

    Raises:
        ValueError: naming the option, the network's class and what to leave out.
    """
    foreign = DISTAUG_OPTIONS if hasattr(model, "G_ema") else STYLEGAN_OPTIONS
    given = [option for dest, option in foreign.items() if getattr(options, dest, None) is not None]
    if given:
        family = "SparseTransformerDistAug" if hasattr(model, "G_ema") else "StyleGAN2"
        raise ValueError(
            f"{' and '.join(given)} only apply to {family} networks and {options.network} holds a "
            f"{type(model).__name__}; leave {'them' if len(given) > 1 else 'it'} out"
        )


def check_finite_images(images: torch.Tensor, network: str) -> None:
    """Refuse to write images with NaN or infinite pixels (they would be saved black).

    Raises:
        ValueError: how many images are not finite.
    """
    finite = torch.isfinite(images.flatten(1)).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(
            f"{int((~finite).sum())} of the {len(images)} images of {network} have NaN or infinite pixels, "
            "so nothing was written; the network's weights are broken: use an earlier checkpoint"
        )


def run(options: argparse.Namespace, model: torch.nn.Module) -> str:
    """Write the images of ``options.seeds``; returns the summary line."""
    check_family_options(options, model)
    if hasattr(model, "G_ema"):
        psi = 1.0 if options.truncation_psi is None else options.truncation_psi
        noise_mode = options.noise_mode or "const"
        images = generate_stylegan(model.G_ema, options.seeds, options.class_idx, psi, noise_mode)
    else:
        temperature = 1.0 if options.temperature is None else options.temperature
        transform = options.transform or "identity"
        images = generate_sparse_transformer(model, options.seeds, options.class_idx, temperature, transform)
    check_finite_images(images, options.network)
    write_images(images, options.seeds, options.outdir, options.grid)
    shape = "x".join(map(str, images.shape[1:]))
    return (
        f"Wrote {len(images)} images ({shape}){' and grid.png' if options.grid else ''} to {options.outdir}"
    )


__all__ = [
    "check_family_options",
    "check_finite_images",
    "generate_sparse_transformer",
    "generate_stylegan",
    "parse_transform",
    "write_images",
]
