"""Resampling and filtering kernels of :class:`~lightning_genaug.augment.ada_pipe.AugmentPipe`.

What the pipe does to pixels once its parameters are drawn, as pure functions of tensors:

- :func:`blit`: pixel copies along an integer lattice map (flips, quarter turns, integer shifts), exact;
- :func:`warp`: any other per-sample affine map, anti-aliased: reflect-pad, 2x upsample with the
  orthogonal 12-tap ``sym6`` wavelet low-pass filter (:func:`lowpass_filter`), bilinear
  ``grid_sample``, 2x downsample with the same filter, so that the identity is exact;
- :func:`filter_bands`: the image-space filter, a per-sample gain on each of the 4 frequency bands
  of :func:`band_filter_bank`.

All of them are differentiable torch ops with double backward (R1 is computed through the pipe).
Geometry is in pixels with the origin at the image centre, x right, y down; :func:`scale2d`,
:func:`translate2d` and :func:`rotate2d` build its per-sample ``(B, 3, 3)`` matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Orthogonal scaling filter of the Symlet-6 wavelet (Daubechies, "Ten Lectures on Wavelets", 1992;
# the same values are tabulated by PyWavelets as ``sym6``): sum = sqrt(2), sum of squares = 1.
_SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip
# Tap of the sym6 filter that lands on an input sample when upsampling (near its centre of mass).
_SYM6_ALIGN = 5
# Axes up to this length are up/downsampled with one dense matrix, longer ones block by block.
_DENSE_AXIS_LIMIT = 160
_BLOCK = 32
# Sub-pixel phase of the up/down-sampled grid (same on input and output, so identity stays exact):
# half the distance from the aligned tap to the filter's centre of mass.
_SYM6_MOMENT = float(
    (torch.arange(len(_SYM6), dtype=torch.float64) * torch.tensor(_SYM6, dtype=torch.float64)).sum()
)
_PHASE = (_SYM6_ALIGN - _SYM6_MOMENT / math.sqrt(2.0)) / 2


def lowpass_filter() -> torch.Tensor:
    """The ``sym6`` low-pass filter normalised to sum 1, float64. Shape ``(12,)``."""
    return torch.tensor(_SYM6, dtype=torch.float64) / math.sqrt(2.0)


def _daubechies2() -> torch.Tensor:
    """The 4-tap Daubechies (= ``sym2``) orthogonal scaling filter, in closed form. Shape ``(4,)``."""
    r3 = math.sqrt(3.0)
    taps = [1 + r3, 3 + r3, 3 - r3, 1 - r3]
    return torch.tensor(taps, dtype=torch.float64) / (4 * math.sqrt(2.0))


def _conv1d_full(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Full linear convolution of two 1-D float64 tensors. Shape ``(len(a) + len(b) - 1,)``."""
    return F.conv1d(a.view(1, 1, -1), b.flip(0).view(1, 1, -1), padding=b.numel() - 1).view(-1)


def _dilate(taps: torch.Tensor, factor: int) -> torch.Tensor:
    """Insert ``factor - 1`` zeros between taps: ``H(z) -> H(z^factor)``."""
    out = torch.zeros((taps.numel() - 1) * factor + 1, dtype=taps.dtype)
    out[::factor] = taps
    return out


def band_filter_bank() -> torch.Tensor:
    """Zero-phase 1-D filters that split a signal into the 4 bands of App. B.2 (they sum to a delta).

    With ``h`` the orthogonal ``sym2`` filter, ``L = h * reverse(h) / 2`` (half-band low-pass) and
    ``Hi = delta - L`` (its complement, the top octave): band 4 = ``Hi(z)``, band 3 =
    ``L(z) Hi(z^2)``, band 2 = ``L(z) L(z^2) Hi(z^4)``, band 1 = ``L(z) L(z^2) L(z^4)``.

    Returns:
        ``(4, 43)`` float64 tensor, rows ordered from the lowest band to the highest.
    """
    h = _daubechies2()
    low = _conv1d_full(h, h.flip(0)) / 2
    high = -low
    high[low.numel() // 2] += 1.0
    chains = (
        (low, _dilate(low, 2), _dilate(low, 4)),
        (low, _dilate(low, 2), _dilate(high, 4)),
        (low, _dilate(high, 2)),
        (high,),
    )
    bands = []
    for chain in chains:
        taps = chain[0]
        for factor in chain[1:]:
            taps = _conv1d_full(taps, factor)
        bands.append(taps)
    length = max(taps.numel() for taps in bands)
    return torch.stack([F.pad(taps, ((length - taps.numel()) // 2,) * 2) for taps in bands])


def _matrix3(rows: Sequence[Sequence[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """Stack per-sample entries into ``(B, 3, 3)``; entries are ``(B,)`` tensors or Python floats."""
    entries = [
        e if isinstance(e, torch.Tensor) else torch.full_like(like, float(e)) for row in rows for e in row
    ]
    return torch.stack(entries, dim=-1).view(-1, 3, 3)


def scale2d(sx: torch.Tensor | float, sy: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` scaling by ``(sx, sy)``; float entries are broadcast to ``like`` ``(B,)``."""
    return _matrix3([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def translate2d(tx: torch.Tensor | float, ty: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` translation by ``(tx, ty)``; float entries are broadcast to ``like`` ``(B,)``."""
    return _matrix3([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def rotate2d(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` rotation given the angle's cosine and sine ``(B,)``."""
    return _matrix3([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], cos)


def _reflect_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map integer coordinates onto ``[0, size)`` by mirror reflection (edge pixel not repeated)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def _reflect_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Reflect-pad the last two dims of ``(N, C, H, W)``; pads larger than the image reflect again."""
    height, width = x.shape[-2:]
    if max(left, right) < width and max(top, bottom) < height:
        return F.pad(x, (left, right, top, bottom), mode="reflect")
    cols = _reflect_index(torch.arange(-left, width + right, device=x.device), width)
    rows = _reflect_index(torch.arange(-top, height + bottom, device=x.device), height)
    return x.index_select(3, cols).index_select(2, rows)


def _band_matrix(taps: torch.Tensor, rows: int, cols: int, upsample: bool, shift: int = 0) -> torch.Tensor:
    """Dense ``(rows, cols)`` matrix of a 2x up- or downsampling FIR filter along one axis.

    Upsampling (transposed convolution): ``y[o] = sum_i x[i] taps[o - 2 i + shift]``;
    downsampling (strided correlation): ``y[o] = sum_i x[i] taps[i - 2 o]``; so ``y = x @ matrix``.
    """
    i = torch.arange(rows, device=taps.device)[:, None]
    o = torch.arange(cols, device=taps.device)[None, :]
    k = o - 2 * i + shift if upsample else i - 2 * o
    inside = (k >= 0) & (k < taps.numel())
    return torch.where(
        inside, taps[k.clamp(0, taps.numel() - 1)], torch.zeros((), dtype=taps.dtype, device=taps.device)
    )


def _resample_last_axis(x: torch.Tensor, taps: torch.Tensor, upsample: bool, out_len: int) -> torch.Tensor:
    """2x up/downsample the last axis of ``x`` with ``taps`` as matrix products (fast on CPU and GPU).

    Short axes use one dense banded matrix; long ones are cut into overlapping windows
    (``unfold``, a view) multiplied by one small block, which skips most of the band's zeros.
    Upsampling returns the full transposed convolution, ``2 L + len(taps) - 2`` samples; downsampling
    the valid strided correlation, ``(L - len(taps)) // 2 + 1`` samples (``out_len``).
    """
    length = x.shape[-1]
    if length <= _DENSE_AXIS_LIMIT:
        return x @ _band_matrix(taps, length, out_len, upsample)
    reach = taps.numel() - 2  # input samples beyond the block one output block depends on
    if upsample:
        block = _band_matrix(taps, _BLOCK + reach // 2, 2 * _BLOCK, True, shift=reach)
        step, left = _BLOCK, reach // 2
    else:
        block = _band_matrix(taps, 2 * _BLOCK + reach, _BLOCK, False)
        step, left = 2 * _BLOCK, 0
    blocks = -(-out_len // block.shape[1])
    needed = (blocks - 1) * step + block.shape[0]
    windows = F.pad(x, (left, needed - left - length)).unfold(-1, block.shape[0], step)
    # One 2-D product: a batched matmul on the overlapping view would loop over its rows.
    out = windows.reshape(-1, block.shape[0]) @ block
    return out.view(*windows.shape[:-1], block.shape[1]).flatten(-2)[..., :out_len]


def _resample2x(x: torch.Tensor, taps: torch.Tensor, upsample: bool) -> torch.Tensor:
    """Separable 2x up/downsampling of ``(N, C, H, W)`` along W then H (see :func:`_resample_last_axis`)."""
    height, width = x.shape[-2:]
    extra = taps.numel() - 2
    out_h, out_w = (
        (2 * height + extra, 2 * width + extra) if upsample else ((height - extra) // 2, (width - extra) // 2)
    )
    y = _resample_last_axis(x, taps, upsample, out_w)
    if height <= _DENSE_AXIS_LIMIT:
        return torch.matmul(_band_matrix(taps, height, out_h, upsample).T, y)
    return _resample_last_axis(y.transpose(-1, -2), taps, upsample, out_h).transpose(-1, -2)


def blit(x: torch.Tensor, index_map: torch.Tensor) -> torch.Tensor:
    """Copy pixels along an integer lattice map, reflecting at the borders (exact, no blending).

    Args:
        x: ``(n, C, H, W)``.
        index_map: ``(n, 3, 3)`` int64, output pixel index -> input pixel index.

    Returns:
        ``(n, C, H, W)``.
    """
    n, channels, height, width = x.shape
    cols = torch.arange(width, device=x.device).view(1, 1, width)
    rows = torch.arange(height, device=x.device).view(1, height, 1)
    src_x = index_map[:, 0, 0, None, None] * cols + index_map[:, 0, 1, None, None] * rows
    src_y = index_map[:, 1, 0, None, None] * cols + index_map[:, 1, 1, None, None] * rows
    src_x = _reflect_index(src_x + index_map[:, 0, 2, None, None], width)
    src_y = _reflect_index(src_y + index_map[:, 1, 2, None, None], height)
    flat = (src_y * width + src_x).view(n, 1, height * width).expand(n, channels, height * width)
    return x.reshape(n, channels, height * width).gather(2, flat).view(n, channels, height, width)


def warp(x: torch.Tensor, g_inv: torch.Tensor, lowpass: torch.Tensor) -> torch.Tensor:
    """Apply general per-sample transforms with one anti-aliased bilinear resampling.

    Reflect-pad so no output pixel sees outside the image, upsample 2x (sym6), ``grid_sample``
    on a canvas slightly larger than the 2x output, downsample 2x (sym6) back to ``(H, W)``.

    Args:
        x: ``(n, C, H, W)`` float32/float64.
        g_inv: ``(n, 3, 3)`` float64, centred output pixel -> centred input pixel.
        lowpass: ``(12,)`` the :func:`lowpass_filter` taps, on ``x``'s device and in its dtype.

    Returns:
        ``(n, C, H, W)``, contiguous.
    """
    # Not kornia.geometry.warp_affine: that is one bilinear grid_sample without anti-aliasing
    # (faster, see benchmarks/augment.py --kornia), and aliasing is a cue D learns and G copies.
    n, channels, height, width = x.shape
    taps = len(_SYM6)
    align, phase = _SYM6_ALIGN, _PHASE
    cx, cy = (width - 1) / 2, (height - 1) / 2
    canvas_w, canvas_h = 2 * width + taps - 2, 2 * height + taps - 2
    # Canvas pixel q sits at output pixel-index coordinate (q - align) / 2 + phase.
    to_output = translate2d(phase - align / 2 - cx, phase - align / 2 - cy, g_inv[:, 0, 0]) @ scale2d(
        0.5, 0.5, g_inv[:, 0, 0]
    )
    # Padding: where the canvas corners land in the input, plus the filter's reach (taps / 4 pixels).
    corners = torch.tensor(
        [[0, 0, 1], [canvas_w - 1, 0, 1], [0, canvas_h - 1, 1], [canvas_w - 1, canvas_h - 1, 1]],
        dtype=torch.float64,
        device=x.device,
    ).T
    landed = (g_inv @ to_output @ corners)[:, :2, :]  # (n, xy, corner), centred input pixels
    reach = taps / 4 + 1
    low = -landed.amin(dim=(0, 2)) - torch.tensor([cx, cy], dtype=torch.float64, device=x.device) + reach
    high = landed.amax(dim=(0, 2)) - torch.tensor([cx, cy], dtype=torch.float64, device=x.device) + reach
    limit = torch.tensor([width - 1, height - 1], dtype=torch.float64, device=x.device)
    pad_x0, pad_y0 = low.ceil().clamp(min=0).minimum(limit).long().tolist()
    pad_x1, pad_y1 = high.ceil().clamp(min=0).minimum(limit).long().tolist()
    padded = _reflect_pad(x, pad_x0, pad_x1, pad_y0, pad_y1)
    upsampled = _resample2x(padded, lowpass * 2, upsample=True)
    # Input pixel-index coordinate c lies at upsampled index 2 * (c + pad - phase) + align.
    to_upsampled = translate2d(
        2 * (cx + pad_x0 - phase) + align, 2 * (cy + pad_y0 - phase) + align, g_inv[:, 0, 0]
    ) @ scale2d(2.0, 2.0, g_inv[:, 0, 0])
    up_h, up_w = upsampled.shape[-2:]
    # grid_sample's normalised coordinates (align_corners=False): u = (2 i + 1) / size - 1.
    normalise = translate2d(1 / up_w - 1, 1 / up_h - 1, g_inv[:, 0, 0]) @ scale2d(
        2 / up_w, 2 / up_h, g_inv[:, 0, 0]
    )
    denormalise = scale2d(canvas_w / 2, canvas_h / 2, g_inv[:, 0, 0]) @ translate2d(
        1 - 1 / canvas_w, 1 - 1 / canvas_h, g_inv[:, 0, 0]
    )
    theta = (normalise @ to_upsampled @ g_inv @ to_output @ denormalise)[:, :2, :].to(x.dtype)
    grid = F.affine_grid(theta, [n, channels, canvas_h, canvas_w], align_corners=False)
    canvas = F.grid_sample(upsampled, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _resample2x(canvas, lowpass, upsample=False).contiguous()


def filter_bands(x: torch.Tensor, gains: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """Separable per-sample filter ``sum_i gains_i * band_i`` with reflect padding.

    Args:
        x: ``(n, C, H, W)``.
        gains: ``(n, 4)`` band gains.
        bands: ``(4, L)`` the :func:`band_filter_bank`, on ``x``'s device and in its dtype.

    Returns:
        ``(n, C, H, W)``.
    """
    n, channels, height, width = x.shape
    taps = gains.to(x.dtype) @ bands  # (n, L)
    taps = taps.repeat_interleave(channels, dim=0)  # (n * C, L)
    half = taps.shape[1] // 2
    padded = _reflect_pad(x, half, half, half, half).reshape(
        1, n * channels, height + 2 * half, width + 2 * half
    )
    y = F.conv2d(padded, taps[:, None, None, :], groups=n * channels)
    y = F.conv2d(y, taps[:, None, :, None], groups=n * channels)
    return y.view(n, channels, height, width)
