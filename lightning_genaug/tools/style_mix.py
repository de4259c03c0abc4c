"""``lightning-genaug style-mix``: the style-mixing figure of the StyleGAN papers.

Row ``r``, column ``c`` of the grid is row seed ``r``'s ``w`` with the layers in ``styles`` taken
from column seed ``c``: coarse layers (the first ones) carry pose and shape, fine layers colour and
texture. The first row shows the column seeds, the first column the row seeds.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from lightning_genaug.images import picture_grid, save_png
from lightning_genaug.models.stylegan2.generation import seed_ws, synthesize
from lightning_genaug.tools.arguments import ToolArgumentError, class_labels

REFERENCE_STYLES = range(7)
"""The reference's default mixed layers, ``0-6``: coarse and middle styles of its 18-layer 1024px networks."""


def default_styles(num_ws: int) -> list[int]:
    """``0-6`` when the network has at least twice as many layers, else its first (coarse) half.

    >>> default_styles(18), default_styles(6)
    ([0, 1, 2, 3, 4, 5, 6], [0, 1, 2])
    """
    if num_ws >= 2 * len(REFERENCE_STYLES):
        return list(REFERENCE_STYLES)
    return list(range(max(1, num_ws // 2)))


def mix_styles(row_ws: torch.Tensor, col_ws: torch.Tensor, styles: Sequence[int]) -> torch.Tensor:
    """Every row ``w`` with the layers ``styles`` replaced by those of every column ``w``.

    Args:
        row_ws: ``(R, num_ws, w_dim)``.
        col_ws: ``(K, num_ws, w_dim)``.
        styles: layer indices in ``[0, num_ws)``.

    Returns:
        ``(R, K, num_ws, w_dim)``: entry ``[r, k]`` is row ``r`` mixed with column ``k``.

    >>> mix_styles(torch.zeros(1, 3, 1), torch.ones(2, 3, 1), [0])[0, :, :, 0]
    tensor([[1., 0., 0.],
            [1., 0., 0.]])
    """
    num_ws = row_ws.shape[1]
    if not styles or min(styles) < 0 or max(styles) >= num_ws:
        raise ToolArgumentError(
            "styles",
            f"{{name}} must name layers in [0, {num_ws - 1}] (this network has {num_ws}), got {list(styles)}",
        )
    mixed = row_ws.unsqueeze(1).repeat(1, col_ws.shape[0], 1, 1)
    mixed[:, :, list(styles)] = col_ws[:, list(styles)].unsqueeze(0)
    return mixed


@torch.no_grad()
def style_mixing_grid(
    G: torch.nn.Module,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    styles: Sequence[int] | None = None,
    class_idx: int | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> torch.Tensor:
    """All images of the figure, row by row, with an empty top-left cell.

    Returns:
        ``((R + 1) * (K + 1), C, H, W)`` in [-1, 1]: cell ``(0, 0)`` is white, row 0 the column
        seeds, column 0 the row seeds, cell ``(r + 1, k + 1)`` row ``r`` mixed with column ``k``.
    """
    seeds = [*row_seeds, *col_seeds]
    ws = seed_ws(G, seeds, class_labels(class_idx, G.c_dim, len(seeds)), truncation_psi)
    row_ws, col_ws = ws[: len(row_seeds)], ws[len(row_seeds) :]
    if styles is None:
        styles = default_styles(ws.shape[1])
    mixed = mix_styles(row_ws, col_ws, styles).flatten(0, 1)
    images = synthesize(G, torch.cat([ws, mixed]), noise_mode)
    rows, cols = images[: len(row_seeds)], images[len(row_seeds) : len(ws)]
    cells = images[len(ws) :].unflatten(0, (len(row_seeds), len(col_seeds)))
    blank = torch.ones_like(images[:1])
    top = torch.cat([blank, cols])
    body = torch.cat([rows.unsqueeze(1), cells], dim=1).flatten(0, 1)
    return torch.cat([top, body])


def run(options: argparse.Namespace, model: torch.nn.Module) -> str:
    """Write ``{row}-{col}.png`` for every mixed image and ``grid.png``; returns the summary line."""
    cells = style_mixing_grid(
        model.G_ema,
        options.rows,
        options.cols,
        options.styles,
        options.class_idx,
        options.truncation_psi,
        options.noise_mode,
    )
    columns = len(options.cols) + 1
    for index, image in enumerate(cells.cpu()):
        row, col = divmod(index, columns)
        if row and col:
            save_png((image + 1) / 2, options.outdir / f"{options.rows[row - 1]}-{options.cols[col - 1]}.png")
    save_png(picture_grid(cells, columns), options.outdir / "grid.png")
    count = len(options.rows) * len(options.cols)
    cells_shape = f"{len(options.rows) + 1}x{columns} cells"
    return f"Wrote {count} mixed images and grid.png ({cells_shape}) to {options.outdir}"


__all__ = ["default_styles", "mix_styles", "style_mixing_grid"]
