"""Distribution Augmentation transforms (Jun et al., ICML 2020), as batched tensor gathers.

DistAug trains a likelihood model on ``t(x)`` *conditioned on* ``t``; sampling and evaluation use the
identity. This module draws ``t`` per example and applies it; the model consumes the returned ids.

Every transform except RandAugment is a permutation of the ``C*H*W`` sub-pixel positions of the
image read in raster order, channels last: the token index of sub-pixel ``(row, col, ch)`` is
``(row * W + col) * C + ch``. Option ``i`` of a kind is an index table ``perm`` with
``augmented[k] = original[perm[k]]``; all tables are precomputed once per image shape and applied
with one ``gather`` per batch (no Python loop over samples).

Kinds, option counts and option order (id 0 is always the identity):

* ``"rotation"`` (4): clockwise rotation by ``id * 90`` degrees (``torch.rot90`` clockwise, as the
  paper's reference code does with ``np.rot90(x, k, axes=(1, 0))``). Square images only.
* ``"transposition"`` (2): swap rows and columns. Square images only.
* ``"color"`` (6): output channel ``c`` holds input channel ``order[c]``, with ``order`` the
  ``id``-th of ``itertools.permutations(range(3))``. Three channels only.
* ``"jigsaw"`` (24): the image is cut into 2x2 tiles numbered row-major; output tile ``j`` holds
  input tile ``order[j]``, ``order`` the ``id``-th of ``itertools.permutations(range(4))``. Even
  height and width only.
* ``"reverse"`` (2): reverse the sub-pixel raster sequence (the last sub-pixel first). This also
  reverses the channel order inside each pixel, which makes it differ from a 180-degree rotation.
* ``"randaugment"`` (``1 + len(RANDAUGMENT_OPS) ** randaugment_n``): ``randaugment_n`` value
  operations drawn from :data:`RANDAUGMENT_OPS` at magnitude ``randaugment_m``; the id encodes the
  ordered sequence of operations (``1 + sum_i op_i * n_ops ** i``), which is the conditioning
  signal. It changes values, not positions, and is applied before the permutations.

Compositions apply the kinds in the order given; their option counts multiply.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from lightning_genaug._checks import check_choice, check_positive_int, check_range
from lightning_genaug.images import from_uint8, to_uint8

PERMUTATION_KINDS: dict[str, int] = {
    "rotation": 4,
    "transposition": 2,
    "color": 6,
    "jigsaw": 24,
    "reverse": 2,
}
"""Option counts of the transforms that permute sub-pixel positions."""

RANDAUGMENT_OPS: tuple[str, ...] = (
    "brightness",
    "contrast",
    "solarize",
    "posterize",
    "translate_x",
    "translate_y",
    "cutout",
    "invert",
)
"""The RandAugment operations implemented here, in id order (all act on values in [-1, 1])."""

TRANSFORM_KINDS: tuple[str, ...] = (*PERMUTATION_KINDS, "randaugment")

_ALIASES = {"rot": "rotation", "tr": "transposition", "col": "color", "colour": "color", "js": "jigsaw"}


def _tile_permutation(channels: int, height: int, width: int) -> torch.Tensor:
    """Sub-pixel indices laid out as an image: ``(H, W, C)`` int64, value ``(row*W+col)*C+ch``."""
    return torch.arange(height * width * channels).view(height, width, channels)


def _check_shape_for(kind: str, channels: int, height: int, width: int) -> None:
    if kind in ("rotation", "transposition") and height != width:
        raise ValueError(
            f"DistAug `{kind}` needs square images, got height {height} and width {width}; "
            "crop or resize to a square, or drop this transform."
        )
    if kind == "color" and channels != 3:
        raise ValueError(
            f"DistAug `color` permutes the 3 colour channels, got {channels} channel(s); "
            "use RGB images or drop `color` from `transforms`."
        )
    if kind == "jigsaw" and (height % 2 or width % 2):
        raise ValueError(
            f"DistAug `jigsaw` cuts the image into 2x2 tiles and needs even height and width, got "
            f"{height}x{width}; pad or crop to an even size, or drop `jigsaw`."
        )


@lru_cache(maxsize=64)
def _kind_tables(kind: str, channels: int, height: int, width: int) -> torch.Tensor:
    """All options of one permutation kind: ``(n_options, C*H*W)`` int64, row ``i`` is ``perm_i``."""
    _check_shape_for(kind, channels, height, width)
    grid = _tile_permutation(channels, height, width)  # (H, W, C) holding source indices
    if kind == "rotation":  # clockwise: dims (col, row) of the (H, W, C) grid
        options = [torch.rot90(grid, k, dims=(1, 0)) for k in range(4)]
    elif kind == "transposition":
        options = [grid, grid.transpose(0, 1)]
    elif kind == "color":
        options = [grid[..., list(order)] for order in itertools.permutations(range(3))]
    elif kind == "jigsaw":
        half_h, half_w = height // 2, width // 2
        # (tile_row, row_in_tile, tile_col, col_in_tile, C) -> (4 tiles row-major, half_h, half_w, C)
        tiles = grid.view(2, half_h, 2, half_w, channels).permute(0, 2, 1, 3, 4)
        tiles = tiles.reshape(4, half_h, half_w, channels)
        options = []
        for order in itertools.permutations(range(4)):
            moved = tiles[list(order)].view(2, 2, half_h, half_w, channels).permute(0, 2, 1, 3, 4)
            options.append(moved.reshape(height, width, channels))
    else:  # reverse
        options = [grid, grid.flip(0, 1, 2)]
    return torch.stack([option.reshape(-1) for option in options])


def normalise_transforms(transforms: Sequence[str]) -> tuple[str, ...]:
    """Validate transform kind names (aliases ``rot``, ``tr``, ``col``, ``js`` accepted), keep order.

    >>> normalise_transforms(["rot", "tr"])
    ('rotation', 'transposition')
    """
    if isinstance(transforms, str):
        transforms = (transforms,)
    names = []
    for name in transforms:
        key = name.lower() if isinstance(name, str) else name
        names.append(check_choice("transforms", _ALIASES.get(key, key), TRANSFORM_KINDS))
    if len(set(names)) != len(names):
        raise ValueError(f"`transforms` lists a kind twice: {list(transforms)}; give each kind once.")
    return tuple(names)


def subpixel_permutation(
    transforms: Sequence[str], transform_ids: torch.Tensor, channels: int, height: int, width: int
) -> torch.Tensor:
    """Per-example permutation of sub-pixel positions for given transform ids.

    ``augmented_sequence[b, k] == original_sequence[b, perm[b, k]]`` where sequences are the raster
    order, channels last. Kinds that do not move positions (``randaugment``) contribute the identity.
    The model uses ``perm`` to give each token the position embedding of its original position.

    Args:
        transforms: kind names, one per column of ``transform_ids``.
        transform_ids: ``(B, K)`` int64 option ids.
        channels, height, width: the image shape.

    Returns:
        ``(B, C*H*W)`` int64 on ``transform_ids.device``.

    >>> subpixel_permutation(["rotation"], torch.tensor([[1]]), 1, 2, 2)  # clockwise quarter turn
    tensor([[2, 0, 3, 1]])
    """
    transforms = normalise_transforms(transforms)
    if transform_ids.ndim != 2 or transform_ids.shape[1] != len(transforms):
        raise ValueError(
            f"`transform_ids` must have shape (B, {len(transforms)}) for transforms {list(transforms)}, "
            f"got {tuple(transform_ids.shape)}."
        )
    batch = transform_ids.shape[0]
    perm = torch.arange(channels * height * width, device=transform_ids.device).expand(batch, -1)
    for column, kind in enumerate(transforms):
        if kind not in PERMUTATION_KINDS:
            continue
        table = _kind_tables(kind, channels, height, width).to(transform_ids.device)
        step = table[transform_ids[:, column]]  # (B, L)
        perm = perm.gather(1, step)  # applying `kind` after the earlier kinds: perm_prev[perm_kind]
    return perm


def to_sequence(images: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, H*W*C)`` raster order, channels last."""
    return images.permute(0, 2, 3, 1).reshape(images.shape[0], -1)


def from_sequence(sequence: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """``(B, H*W*C)`` raster sequence, channels last -> ``(B, C, H, W)``."""
    return sequence.view(sequence.shape[0], height, width, channels).permute(0, 3, 1, 2)


def _shift(images: torch.Tensor, pixels: torch.Tensor, dim: int) -> torch.Tensor:
    """Translate each image by ``pixels[b]`` (may be negative) along ``dim``, filling with -1 (black)."""
    size = images.shape[dim]
    index = torch.arange(size, device=images.device)
    shape = [1, 1, 1, 1]
    shape[0], shape[dim] = -1, size
    source = index.view(shape) - pixels.view(-1, 1, 1, 1)
    inside = (source >= 0) & (source < size)
    gathered = images.gather(dim, source.clamp(0, size - 1).expand_as(images))
    return torch.where(inside, gathered, torch.full_like(images, -1.0))


def _randaugment_op(
    name: str, images: torch.Tensor, level: float, sign: torch.Tensor, centre: torch.Tensor
) -> torch.Tensor:
    """One RandAugment operation on float images in [-1, 1].

    Args:
        name: one of :data:`RANDAUGMENT_OPS`.
        images: ``(B, C, H, W)``.
        level: magnitude / 30 in [0, 1].
        sign: ``(B,)`` of +-1, the random direction of signed operations.
        centre: ``(B, 2)`` in [0, 1), the cutout centre (fractions of height and width).
    """
    height, width = images.shape[-2:]
    if name == "brightness":
        return (images + 0.9 * level * sign.view(-1, 1, 1, 1)).clamp(-1, 1)
    if name == "contrast":
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return (mean + (images - mean) * (1 + 0.9 * level * sign.view(-1, 1, 1, 1))).clamp(-1, 1)
    if name == "solarize":  # invert values above a threshold that falls from 1 to -1 with the level
        threshold = 1.0 - 2.0 * level
        return torch.where(images >= threshold, -images, images)
    if name == "posterize":  # keep 8 - round(4 * level) bits
        step = 2 ** round(4 * level)
        values = torch.floor((images + 1) * 127.5 / step) * step
        return values / 127.5 - 1
    if name in ("translate_x", "translate_y"):  # up to half the size at level 1 (paper: 50 of 100)
        size = width if name == "translate_x" else height
        pixels = (sign * round(level * size / 2)).long()
        return _shift(images, pixels, 3 if name == "translate_x" else 2)
    if name == "cutout":  # a grey square of side up to size/2 (paper: 20 instead of 40)
        half = round(level * min(height, width) / 4)
        rows = torch.arange(height, device=images.device).view(1, -1, 1)
        cols = torch.arange(width, device=images.device).view(1, 1, -1)
        centre_row = (centre[:, 0] * height).long().view(-1, 1, 1)
        centre_col = (centre[:, 1] * width).long().view(-1, 1, 1)
        hole = ((rows - centre_row).abs() < half) & ((cols - centre_col).abs() < half)
        return images.masked_fill(hole.unsqueeze(1), 0.0)
    return -images  # invert


class DistAugTransforms(nn.Module):
    """Draw and apply DistAug transforms per example; return the images and the transform ids.

    Each example draws one option per enabled kind. With ``aug_prob=None`` every combination is
    equally likely (the paper's setting, identity included); otherwise the all-identity combination
    has probability ``1 - aug_prob`` and the other combinations share ``aug_prob`` uniformly.

    Args:
        transforms: kinds, in application order: any of ``rotation``, ``transposition``, ``color``,
            ``jigsaw``, ``reverse``, ``randaugment`` (aliases ``rot``, ``tr``, ``col``, ``js``).
        aug_prob: probability of a non-identity draw, in [0, 1], or ``None`` for uniform draws.
        randaugment_n: number of RandAugment operations per augmented image.
        randaugment_m: RandAugment magnitude in [0, 30].

    Shape:
        - images: ``(B, C, H, W)``; float in [-1, 1] or integer tokens in [0, 255] (uint8/int64).
        - output: same shape and dtype, and ``transform_ids`` ``(B, K)`` int64, one column per kind
          in ``transforms`` order, 0 meaning identity.

    Example:
        >>> aug = DistAugTransforms(["rotation", "transposition"])
        >>> aug.num_options
        (4, 2)
        >>> images, ids = aug(torch.rand(5, 3, 8, 8) * 2 - 1, torch.Generator().manual_seed(0))
        >>> ids.shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        transforms: Sequence[str] = ("rotation",),
        aug_prob: float | None = None,
        randaugment_n: int = 2,
        randaugment_m: float = 10.0,
    ) -> None:
        super().__init__()
        self.transforms = normalise_transforms(transforms)
        if not self.transforms:
            raise ValueError("`transforms` is empty; give at least one kind, e.g. ['rotation'].")
        if aug_prob is not None:
            check_range("aug_prob", aug_prob, 0.0, 1.0)
        self.aug_prob = aug_prob
        self.randaugment_n = check_positive_int("randaugment_n", randaugment_n)
        self.randaugment_m = check_range("randaugment_m", randaugment_m, 0.0, 30.0)

    @property
    def num_options(self) -> tuple[int, ...]:
        """Option count per kind, in ``transforms`` order (including the identity option 0)."""
        counts = dict(PERMUTATION_KINDS, randaugment=1 + len(RANDAUGMENT_OPS) ** self.randaugment_n)
        return tuple(counts[kind] for kind in self.transforms)

    def as_config(self) -> dict[str, Any]:
        """The ``class_path``/``init_args`` form that rebuilds this object (what a checkpoint records).

        Example:
            >>> config = DistAugTransforms(["rot"], aug_prob=0.5).as_config()
            >>> config.get("init_args").get("transforms")
            ['rotation']
        """
        return {
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "init_args": {
                "transforms": list(self.transforms),
                "aug_prob": self.aug_prob,
                "randaugment_n": self.randaugment_n,
                "randaugment_m": self.randaugment_m,
            },
        }

    def check_shape(self, channels: int, height: int, width: int) -> None:
        """Raise a ``ValueError`` naming the transform if the image shape cannot be handled."""
        for kind in self.transforms:
            _check_shape_for(kind, channels, height, width)

    def sample_params(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Draw the transforms of a batch.

        Returns:
            ``transform_ids`` ``(B, K)`` int64; with RandAugment also ``randaugment_signs``
            ``(B, N)`` (+-1) and ``randaugment_centres`` ``(B, N, 2)`` in [0, 1).
        """
        counts = torch.tensor(self.num_options)
        total = int(counts.prod())
        if self.aug_prob is None:
            combined = torch.randint(total, (batch_size,), generator=generator)
        else:
            non_identity = torch.randint(1, total, (batch_size,), generator=generator)  # every kind has >= 2
            augment = torch.rand(batch_size, generator=generator) < self.aug_prob
            combined = torch.where(augment, non_identity, torch.zeros_like(non_identity))
        radix = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), counts[:-1]]), 0)
        params = {"transform_ids": ((combined.unsqueeze(1) // radix) % counts).to(device)}
        if "randaugment" in self.transforms:
            n = self.randaugment_n
            signs = torch.randint(2, (batch_size, n), generator=generator) * 2 - 1
            params["randaugment_signs"] = signs.to(device)
            params["randaugment_centres"] = torch.rand(batch_size, n, 2, generator=generator).to(device)
        return params

    def identity_params(self, batch_size: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Parameters of the identity transform for every example (``transform_ids`` all zero)."""
        ids = torch.zeros(batch_size, len(self.transforms), dtype=torch.long, device=device)
        return {"transform_ids": ids}

    def permutation(
        self, transform_ids: torch.Tensor, channels: int, height: int, width: int
    ) -> torch.Tensor:
        """``(B, C*H*W)`` sub-pixel permutation of ``transform_ids``; see :func:`subpixel_permutation`."""
        return subpixel_permutation(self.transforms, transform_ids, channels, height, width)

    def _apply_randaugment(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        column = self.transforms.index("randaugment")
        ids = params["transform_ids"][:, column]
        if not bool((ids > 0).any()):
            return images
        integer = not images.is_floating_point()
        work = from_uint8(images) if integer else images
        n_ops = len(RANDAUGMENT_OPS)
        level = self.randaugment_m / 30.0
        code = (ids - 1).clamp(min=0)
        for step in range(self.randaugment_n):
            op_ids = torch.where(ids > 0, (code // n_ops**step) % n_ops, torch.full_like(ids, -1))
            for op_index, name in enumerate(RANDAUGMENT_OPS):
                chosen = op_ids == op_index
                if not bool(chosen.any()):
                    continue
                sign = params["randaugment_signs"][:, step].to(work.dtype)
                changed = _randaugment_op(name, work, level, sign, params["randaugment_centres"][:, step])
                work = torch.where(chosen.view(-1, 1, 1, 1), changed, work)
        if integer:
            return to_uint8(work).to(images.dtype)
        return work

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Apply drawn (or given) transforms. ``images``: ``(B, C, H, W)``, float or integer tokens."""
        if images.ndim != 4:
            raise ValueError(f"`images` must be 4-D (B, C, H, W), got shape {tuple(images.shape)}.")
        batch, channels, height, width = images.shape
        self.check_shape(channels, height, width)
        if "randaugment" in self.transforms:
            images = self._apply_randaugment(images, params)
        perm = self.permutation(params["transform_ids"].to(images.device), channels, height, width)
        return from_sequence(to_sequence(images).gather(1, perm), channels, height, width)

    def forward(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        params: dict[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw (unless ``params`` is given) and apply transforms; ``aug(x, generator)`` like every pipe.

        Args:
            images: ``(B, C, H, W)`` float in [-1, 1] or integer tokens.
            generator: optional ``torch.Generator`` for a reproducible draw.
            params: a previous draw (:meth:`sample_params` / :meth:`identity_params`) to replay.

        Returns:
            ``(augmented images (B, C, H, W), transform_ids (B, K) int64)``.
        """
        if params is None:
            params = self.sample_params(images.shape[0], generator=generator, device=images.device)
        return self.apply(images, params), params["transform_ids"]

    def extra_repr(self) -> str:
        return f"transforms={list(self.transforms)}, num_options={self.num_options}, aug_prob={self.aug_prob}"
