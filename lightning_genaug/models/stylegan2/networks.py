"""StyleGAN2 generator and discriminator in plain PyTorch (no custom CUDA extension).

Written from the StyleGAN2 paper (Karras et al., CVPR 2020, "Analyzing and Improving the Image Quality
of StyleGAN") and the StyleGAN2-ADA paper (Karras et al., NeurIPS 2020, App. D):

- equalised learning rate: weights are stored as N(0, 1) / lr_multiplier and scaled by
  lr_multiplier / sqrt(fan_in) at run time, so Adam sees every layer at the same scale;
- bias + activation with gain (lrelu(0.2) * sqrt(2) keeps unit variance) and optional clamping
  (``conv_clamp``, which keeps float16 activations finite);
- FIR up/down-sampling with the [1, 3, 3, 1] binomial filter (``upfirdn2d`` in plain torch);
- modulated / demodulated 3x3 convolutions, per-pixel noise with a learned per-layer strength;
- a "skip" generator (every resolution adds its ToRGB output to the upsampled image);
- a mapping network (8 or 2 layers, lr multiplier 0.01, optional class embedding, a running mean
  ``w_avg`` for the truncation trick);
- a discriminator with "resnet", "orig" or "skip" architecture, a minibatch standard deviation
  layer and projection conditioning (``cmap``, Miyato & Koyama 2018).

Module and parameter names follow the public reference implementation's checkpoint keys
(``mapping.fc0.weight``, ``synthesis.b4.conv1.affine.weight``, ``b32.conv0.weight``,
``b4.out.bias`` ...) so weights can be converted by renaming nothing; the constant resampling
filters are non-persistent buffers, so a converter drops the reference's ``*.resample_filter`` keys.

Mixed precision: ``num_fp16_res`` runs the blocks of the N highest resolutions under float16
``torch.autocast`` on CUDA (as the reference does with its own casts); on CPU they do so only inside
an enclosing CPU autocast (opt-in), else everything stays float32. Block outputs are cast back to
float32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_genaug._checks import check_choice, check_images, check_positive_int

NOISE_MODES = ("random", "const", "none")
DISCRIMINATOR_ARCHITECTURES = ("resnet", "orig", "skip")
# name -> (function, default gain); the gain restores unit variance after the nonlinearity.
ACTIVATIONS = {
    "linear": (lambda x: x, 1.0),
    "relu": (F.relu, math.sqrt(2)),
    "lrelu": (lambda x: F.leaky_relu(x, 0.2), math.sqrt(2)),
}
DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)


# ----------------------------------------------------------------------------------------------------
# Functional building blocks


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale ``x`` to unit root-mean-square along ``dim`` (pixel norm of the latent codes)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(x: Tensor, bias: Tensor | None, activation: str = "linear", gain: float = 1.0) -> Tensor:
    """``act(x + bias) * gain``, the bias broadcast over dim 1 of ``x`` ((N, C) or (N, C, H, W))."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    act, _ = ACTIVATIONS[activation]
    x = act(x)
    if gain != 1:
        x = x * gain
    return x


def clamp_activations(x: Tensor, limit: float | None) -> Tensor:
    """``x`` clamped to ``[-limit, limit]`` (``conv_clamp`` keeps float16 activations finite); ``None``: x."""
    return x if limit is None else x.clamp(-limit, limit)


def setup_filter(taps: Sequence[float]) -> Tensor:
    """1-D FIR taps normalised to sum 1; the 2-D filter is their outer product (it is separable)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"`resample_filter` must be a non-empty 1-D sequence of taps, got {taps!r}.")
    return f / f.sum()


def upfirdn2d(
    x: Tensor, taps: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0), gain: float = 1.0
) -> Tensor:
    """Upsample by zero insertion, pad, filter with the separable FIR ``taps``, downsample by striding.

    Args:
        x: (N, C, H, W).
        taps: (K,) 1-D filter from :func:`setup_filter`; applied along H and W (true convolution).
        up: upsampling factor.
        down: downsampling factor.
        pad: (before, after) padding of the upsampled image on both axes; negative values crop.
        gain: overall signal gain (``up ** 2`` keeps the mean after zero insertion).

    Returns:
        (N, C, (H * up + before + after - K + 1) // down, same for W).
    """
    n, c, h, w = x.shape
    if up > 1:  # insert up - 1 zeros after every pixel
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1]).reshape(n, c, h * up, w * up)
    # Equal non-negative padding (every resampling inside the networks) is the convolutions' own
    # zero padding: no padded copy of the activations, forward or backward.
    same = pad[0] if pad[0] == pad[1] and pad[0] >= 0 else 0
    if not same:
        x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    f = (taps * math.sqrt(gain)).flip(0).to(x.dtype)  # flip: convolution, not correlation
    x = F.conv2d(x, f.view(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(down, 1), padding=(same, 0), groups=c)
    return F.conv2d(x, f.view(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, down), padding=(0, same), groups=c)


def upsample2d(x: Tensor, taps: Tensor) -> Tensor:
    """2x FIR upsampling: (N, C, H, W) -> (N, C, 2H, 2W)."""
    k = taps.numel()
    return upfirdn2d(x, taps, up=2, pad=((k + 1) // 2, (k - 2) // 2), gain=4.0)


def downsample2d(x: Tensor, taps: Tensor) -> Tensor:
    """2x FIR downsampling: (N, C, H, W) -> (N, C, H/2, W/2)."""
    k = taps.numel()
    return upfirdn2d(x, taps, down=2, pad=((k - 1) // 2, (k - 2) // 2))


def conv2d_resample(
    x: Tensor,
    weight: Tensor,
    taps: Tensor | None,
    up: int = 1,
    down: int = 1,
    groups: int = 1,
    bias: Tensor | None = None,
) -> Tensor:
    """'Same' convolution (correlation, padding k // 2) with optional 2x FIR up- or downsampling.

    Upsampling is a stride-2 transposed convolution followed by the FIR filter; downsampling
    filters first and then convolves with stride 2, so the convolution always runs at the lower
    resolution.

    Args:
        x: (N, C_in, H, W).
        weight: (C_out, C_in / groups, k, k).
        taps: 1-D FIR filter (needed when ``up`` or ``down`` is 2).
        up: 1 or 2.
        down: 1 or 2.
        groups: convolution groups (the batch size for fused modulated convolutions).
        bias: (C_out,) added to the output (inside the convolution kernel unless upsampling).

    Returns:
        (N, C_out, H * up / down, W * up / down).
    """
    k, pad = weight.shape[-1], weight.shape[-1] // 2
    bias = None if bias is None else bias.to(weight.dtype)
    if up == 1 and down == 1:
        return F.conv2d(x, weight, bias, padding=pad, groups=groups)
    n_taps = taps.numel()
    if down == 2:
        before, after = pad + (n_taps - 1) // 2, pad + (n_taps - 2) // 2
        if k == 1:  # filter with stride 2, then a 1x1 convolution on the small image
            return F.conv2d(upfirdn2d(x, taps, down=2, pad=(before, after)), weight, bias, groups=groups)
        return F.conv2d(upfirdn2d(x, taps, pad=(before, after)), weight, bias, stride=2, groups=groups)
    # up == 2: conv_transpose2d takes (C_in, C_out / groups, k, k) weights, per group.
    c_out, c_in_per_group = weight.shape[:2]
    weight = weight.reshape(groups, c_out // groups, c_in_per_group, k, k).transpose(1, 2)
    x = F.conv_transpose2d(
        x, weight.reshape(groups * c_in_per_group, c_out // groups, k, k), stride=2, groups=groups
    )
    before = pad + (n_taps + 1) // 2 - (k - 1)
    after = pad + (n_taps - 2) // 2 - (k - 2)
    x = upfirdn2d(x, taps, pad=(before, after), gain=4.0)
    return x if bias is None else x + bias.to(x.dtype).reshape(1, -1, 1, 1)


def modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    demodulate: bool = True,
    up: int = 1,
    taps: Tensor | None = None,
    fused: bool = True,
    gain: float = 1.0,
    bias: Tensor | None = None,
) -> Tensor:
    """Convolution whose weights are scaled per sample by ``styles`` and (optionally) renormalised.

    w'_{n,o,i,k} = w_{o,i,k} * s_{n,i};  w''_{n,o,i,k} = w'_{n,o,i,k} / sqrt(sum_{i,k} w'^2 + 1e-8).

    ``fused`` runs one grouped convolution with per-sample weights; otherwise the input is scaled
    by the styles, convolved with the shared weight and the output scaled by the demodulation
    coefficients (the same result, faster when training with large batches). The output is
    ``gain * conv + bias``, with ``gain`` folded into the per-sample coefficients and the bias added
    in the same pass (the layers' activation gain and bias cost no pass of their own).

    Args:
        x: (N, C_in, H, W).
        weight: (C_out, C_in, k, k).
        styles: (N, C_in).
        demodulate: renormalise each output channel to unit expected variance.
        up: 1, or 2 for a 2x FIR-upsampling convolution.
        taps: FIR filter for ``up == 2``.
        fused: grouped convolution (True) or scale-convolve-scale (False).
        gain: scalar applied to the convolution's output.
        bias: (C_out,) added after the gain.

    Returns:
        (N, C_out, H * up, W * up).
    """
    n, c_in = styles.shape
    c_out = weight.shape[0]
    if demodulate:
        # Demodulation is invariant to the scale of the weight and of each sample's styles; bringing
        # both to O(1) keeps the float16 products below from overflowing.
        weight = weight * weight[0].numel() ** -0.5
        styles = styles / styles.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        coefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt() * gain  # (N, C_out)
    else:
        coefs = None
        styles = styles * gain
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, c_in, 1, 1)
        if coefs is None:
            return conv2d_resample(x, weight.to(x.dtype), taps, up=up, bias=bias)
        x = conv2d_resample(x, weight.to(x.dtype), taps, up=up)
        coefs = coefs.to(x.dtype).reshape(n, c_out, 1, 1)  # x's dtype after the convolution (autocast)
        return (
            x * coefs if bias is None else torch.addcmul(bias.to(x.dtype).reshape(1, c_out, 1, 1), x, coefs)
        )
    w = weight.unsqueeze(0) * styles.reshape(n, 1, c_in, 1, 1)  # (N, C_out, C_in, k, k)
    if coefs is not None:
        w = w * coefs.reshape(n, c_out, 1, 1, 1)
    # The batch becomes conv groups. Both in NCHW: grouped convolutions measured no faster in
    # channels_last, and oneDNN's single-thread backward of one with channels_last weights was wrong.
    x = x.reshape(1, n * c_in, *x.shape[2:]).contiguous()
    w = w.reshape(n * c_out, c_in, *w.shape[3:]).contiguous().to(x.dtype)
    x = conv2d_resample(x, w, taps, up=up, groups=n, bias=None if bias is None else bias.repeat(n))
    return x.reshape(n, c_out, *x.shape[2:])


def _fp16_context(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """float16 autocast for the blocks marked fp16: always on CUDA, elsewhere only inside an autocast.

    On CPU the blocks stay float32 unless the caller already runs under ``torch.autocast("cpu")``
    (``StyleGAN2ADA(autocast_bf16=True)``, Lightning's ``bf16-mixed``): mixed precision on CPU is
    opt-in, and then it takes the same path as on CUDA (float16 blocks, ``conv_clamp``).
    """
    if not enabled or (device.type != "cuda" and not torch.is_autocast_enabled(device.type)):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16)


def _fp16_resolution(img_resolution: int, num_fp16_res: int) -> int:
    """Lowest resolution that runs in float16 (the ``num_fp16_res`` highest ones, never 4x4)."""
    return max(2 ** (int(math.log2(img_resolution)) + 1 - num_fp16_res), 8)


def _check_resolution(img_resolution: int, minimum: int) -> None:
    check_positive_int("img_resolution", img_resolution)
    if img_resolution < minimum or img_resolution & (img_resolution - 1):
        raise ValueError(
            f"`img_resolution` must be a power of two >= {minimum}, got {img_resolution}; "
            "resize or pad the dataset."
        )


def _check_labels(c: Tensor | None, c_dim: int, batch_size: int | None) -> None:
    if c_dim == 0:
        return
    if (
        c is None
        or c.ndim != 2
        or c.shape[1] != c_dim
        or (batch_size is not None and c.shape[0] != batch_size)
    ):
        shape = None if c is None else tuple(c.shape)
        raise ValueError(
            f"`c` must be a float tensor of shape ({batch_size or 'N'}, {c_dim}) (one-hot labels), "
            f"got {shape}; use `torch.nn.functional.one_hot(labels, {c_dim}).float()`."
        )


# ----------------------------------------------------------------------------------------------------
# Layers with equalised learning rate


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate: y = act(x @ (W * lr_mul / sqrt(in)).T + b * lr_mul)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:  # (N, in) -> (N, out)
        x = F.linear(x, self.weight.to(x.dtype) * self.weight_gain)
        bias = self.bias * self.bias_gain if self.bias is not None else None
        return bias_act(x, bias, self.activation, gain=ACTIVATIONS[self.activation][1])


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate, optional 2x FIR resampling, bias, activation, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        up: int = 1,
        down: int = 1,
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.up, self.down, self.conv_clamp = up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        act, act_gain = ACTIVATIONS[self.activation]
        # act(y + b) * g == act(g * y + g * b) for g > 0 (every activation here is positively
        # homogeneous): the gain scales the small weight and bias, not the activations.
        out_gain = act_gain * gain
        w = (self.weight * (self.weight_gain * out_gain)).to(x.dtype)
        bias = None if self.bias is None else self.bias * out_gain  # cast with the weight's dtype
        x = act(conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down, bias=bias))
        return clamp_activations(x, None if self.conv_clamp is None else self.conv_clamp * gain)


class MappingNetwork(nn.Module):
    """z (and optional one-hot c) -> w: an MLP on the normalised latent, with a running mean of w.

    Also used, with ``z_dim=0`` and ``num_ws=None``, as the discriminator's label mapping.
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        activation: str = "lrelu",
        lr_multiplier: float = 0.01,  # the paper's 100x smaller learning rate for the mapping MLP
        w_avg_beta: float | None = 0.995,  # decay of the running mean of w; None = no truncation
    ) -> None:
        super().__init__()
        check_positive_int("num_layers", num_layers)
        if z_dim == 0 and c_dim == 0:
            raise ValueError("MappingNetwork needs `z_dim > 0` or `c_dim > 0`, got both 0.")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: Tensor | None,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> Tensor:
        """Map latents (and labels) to intermediate latents.

        Args:
            z: (N, z_dim) latents, or None when ``z_dim == 0``.
            c: (N, c_dim) one-hot float labels; ignored when ``c_dim == 0``.
            truncation_psi: w <- w_avg + psi * (w - w_avg); 1 disables truncation, 0 gives w_avg.
            truncation_cutoff: truncate only the first this many of the ``num_ws`` copies.
            update_emas: move ``w_avg`` towards this batch's mean w (pass True in training steps).

        Returns:
            (N, num_ws, w_dim), or (N, w_dim) when ``num_ws`` is None.
        """
        parts = []
        if self.z_dim > 0:
            if z is None or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(
                    f"`z` must have shape (N, {self.z_dim}), got {None if z is None else tuple(z.shape)}."
                )
            parts.append(normalize_2nd_moment(z.float()))  # (N, z_dim)
        if self.c_dim > 0:
            _check_labels(c, self.c_dim, z.shape[0] if z is not None and self.z_dim > 0 else None)
            parts.append(normalize_2nd_moment(self.embed(c.float())))  # (N, embed_features)
        x = torch.cat(parts, dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)  # (N, w_dim) after the last layer
        x = x.float()  # bfloat16 under an autocast: w, like the blocks' outputs, is float32
        if update_emas and hasattr(self, "w_avg"):
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # (N, num_ws, w_dim); a copy, so callers may edit it
        if truncation_psi != 1:
            if not hasattr(self, "w_avg"):
                raise ValueError(
                    "Truncation needs a tracked `w_avg`; build the mapping with `w_avg_beta` set."
                )
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            psi = torch.where(torch.arange(self.num_ws, device=x.device) < cutoff, truncation_psi, 1.0)
            x = self.w_avg.lerp(x, psi.to(x.dtype).unsqueeze(1))  # psi = 0 gives exactly w_avg
        return x


# ----------------------------------------------------------------------------------------------------
# Synthesis network


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling) + noise + bias + lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", fused: bool = True) -> Tensor:
        """(N, C_in, R / up, R / up), w (N, w_dim) -> (N, C_out, R, R)."""
        styles = self.affine(w)  # (N, C_in)
        # lrelu(y + noise + b) * g == lrelu(g * y + g * noise + g * b) (g > 0): the gain rides on the
        # convolution's per-sample coefficients, the bias on its output pass.
        act, gain = ACTIVATIONS["lrelu"]
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            taps=self.resample_filter,
            fused=fused,
            gain=gain,
            bias=self.bias * gain,
        )
        if self.use_noise and noise_mode == "random":
            noise = torch.randn(
                x.shape[0], 1, self.resolution, self.resolution, device=x.device, dtype=x.dtype
            )
            x = x + noise * (self.noise_strength * gain).to(x.dtype)
        elif self.use_noise and noise_mode == "const":
            x = x + (self.noise_const * (self.noise_strength * gain)).to(x.dtype)
        return clamp_activations(act(x), self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None = None
    ) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor, fused: bool = True) -> Tensor:
        """(N, C, R, R), w (N, w_dim) -> (N, img_channels, R, R)."""
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused, bias=self.bias)
        return clamp_activations(x, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const or conv0 up) -> conv1 -> ToRGB added to the image."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_fp16: bool = False,
        use_noise: bool = True,
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.use_fp16 = in_channels, resolution, use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        layer_kwargs = dict(w_dim=w_dim, resolution=resolution, use_noise=use_noise, conv_clamp=conv_clamp)
        if in_channels == 0:  # the 4x4 block starts from a learned constant
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, up=2, resample_filter=resample_filter, **layer_kwargs
            )
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kwargs)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str, fused: bool
    ) -> tuple[Tensor, Tensor]:
        """x (N, C_in, R/2, R/2) or None, img (N, C_img, R/2, R/2) or None, ws (N, num_conv + 1, w_dim)
        -> x (N, C_out, R, R), img (N, C_img, R, R), both float32."""
        with _fp16_context(self.use_fp16, ws.device):
            if self.in_channels == 0:
                x = self.conv1(
                    self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1), ws[:, 0], noise_mode, fused
                )
            else:
                x = self.conv0(x, ws[:, 0], noise_mode, fused)
                x = self.conv1(x, ws[:, 1], noise_mode, fused)
            y = self.torgb(x, ws[:, self.num_conv], fused).float()
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x.float(), img


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image (N, img_channels, R, R); blocks ``b4``, ``b8``, ..., ``b{R}``.

    Channels at resolution r: ``min(channel_base // r, channel_max)``.
    """

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        use_noise: bool = True,
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
    ) -> None:
        super().__init__()
        _check_resolution(img_resolution, minimum=4)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = _fp16_resolution(img_resolution, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                use_fp16=res >= fp16_resolution,
                use_noise=use_noise,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
            )
            self.num_ws += block.num_conv  # a block's ToRGB shares its w with the next block's conv0
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last ToRGB

    def forward(self, ws: Tensor, noise_mode: str = "random", fused_modconv: bool | None = None) -> Tensor:
        """Synthesise images.

        Args:
            ws: (N, num_ws, w_dim) intermediate latents, one per layer.
            noise_mode: "random" (fresh noise), "const" (the stored ``noise_const``) or "none".
            fused_modconv: grouped per-sample convolutions; default: fused in eval on CUDA (the
                reference's choice there), unfused otherwise (on CPU the fused form measured 1.5-3x
                slower than scale-convolve-scale at batch 4-64, widths 64-256: docs/performance.md).

        Returns:
            (N, img_channels, img_resolution, img_resolution) float32 image, about [-1, 1], contiguous
            (NCHW) even when the layers run in ``channels_last``.
        """
        noise_mode = check_choice("noise_mode", noise_mode, NOISE_MODES)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"`ws` must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}.")
        fused = (not self.training and ws.device.type == "cuda") if fused_modconv is None else fused_modconv
        ws = ws.float()
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws[:, w_idx : w_idx + block.num_conv + 1], noise_mode, fused)
            w_idx += block.num_conv
        return img.contiguous()  # NCHW whatever the layers' layout (a copy of the image channels only)


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network z, c -> ws, synthesis network ws -> image.

    Args:
        z_dim: latent dimensionality.
        c_dim: number of classes (one-hot label size), 0 for unconditional.
        w_dim: intermediate latent dimensionality.
        img_resolution: output resolution, a power of two >= 4.
        img_channels: output channels.
        mapping_kwargs: extra :class:`MappingNetwork` arguments (``num_layers``, ``lr_multiplier``, ...).
        synthesis_kwargs: extra :class:`SynthesisNetwork` arguments (``channel_base``, ``channel_max``,
            ``num_fp16_res``, ``conv_clamp``, ...).

    Example:
        >>> G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=8, img_channels=3,
        ...               synthesis_kwargs=dict(channel_base=64, channel_max=16))
        >>> G(torch.randn(2, 16), torch.zeros(2, 0)).shape
        torch.Size([2, 3, 8, 8])
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        check_positive_int("z_dim", z_dim)
        check_positive_int("c_dim", c_dim, allow_zero=True)
        check_positive_int("w_dim", w_dim)
        check_positive_int("img_channels", img_channels)
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **(synthesis_kwargs or {}))
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws=self.num_ws, **(mapping_kwargs or {}))

    def forward(
        self,
        z: Tensor,
        c: Tensor | None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        update_emas: bool = False,
    ) -> Tensor:
        """Generate images.

        Args:
            z: (N, z_dim) latents, N(0, I).
            c: (N, c_dim) one-hot float labels; (N, 0) or None when unconditional.
            truncation_psi: truncation strength (1 = none, 0 = the average image).
            truncation_cutoff: truncate only the first this many ws (coarse layers).
            noise_mode: "random", "const" or "none".
            update_emas: update the mapping's ``w_avg`` with this batch.

        Returns:
            (N, img_channels, img_resolution, img_resolution) float32 images, about [-1, 1].
        """
        # (N, num_ws, w_dim)
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas=update_emas)
        return self.synthesis(ws, noise_mode=noise_mode)


# ----------------------------------------------------------------------------------------------------
# Discriminator


class DiscriminatorBlock(nn.Module):
    """One resolution of D: [FromRGB] -> conv0 3x3 -> conv1 3x3 down 2 [+ 1x1 down-2 skip, resnet]."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        use_fp16: bool = False,
        resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER,
        conv_clamp: float | None = None,
        activation: str = "lrelu",
    ) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        self.architecture, self.use_fp16 = architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        conv_kwargs = dict(activation=activation, conv_clamp=conv_clamp)
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, **conv_kwargs)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, **conv_kwargs)
        self.conv1 = Conv2dLayer(
            tmp_channels, out_channels, 3, down=2, resample_filter=resample_filter, **conv_kwargs
        )
        if architecture == "resnet":
            self.skip = Conv2dLayer(
                tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter
            )

    def forward(self, x: Tensor | None, img: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """x (N, C_in, R, R) or None, img (N, C_img, R, R) -> x (N, C_out, R/2, R/2), img for the next
        block ("skip": downsampled, else None)."""
        with _fp16_context(self.use_fp16, (x if x is not None else img).device):
            if self.in_channels == 0 or self.architecture == "skip":
                y = self.fromrgb(img)
                x = y if x is None else x + y
                img = downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
            if self.architecture == "resnet":
                y = self.skip(x, gain=math.sqrt(0.5))  # sqrt(1/2) on both branches keeps the variance
                x = y + self.conv1(self.conv0(x), gain=math.sqrt(0.5))
            else:
                x = self.conv1(self.conv0(x))
        return x.float(), img


class MinibatchStdLayer(nn.Module):
    """Append the average standard deviation over groups of samples as extra feature maps.

    Splits the batch into groups of ``group_size`` (sample i belongs to group i % (N / G)) and the
    channels into ``num_channels`` parts; each part's std over the group, averaged over channels and
    pixels, becomes one constant feature map. Lets D see the variety of a minibatch.
    """

    def __init__(self, group_size: int | None, num_channels: int = 1) -> None:
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C + num_channels, H, W)
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        if n % g:
            raise ValueError(
                f"The discriminator's batch size {n} is not divisible by the minibatch-std group size {g}; "
                "use a batch size that is a multiple of `mbstd_group_size` (and `drop_last=True`)."
            )
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # (G, N/G, F, C/F, H, W)
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over the group, (N/G, F, C/F, H, W)
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (N/G, F)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """The 4x4 head: [FromRGB] -> minibatch std -> conv 3x3 -> fc -> out (1 logit, or cmap_dim)."""

    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        mbstd_group_size: int | None = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
        activation: str = "lrelu",
    ) -> None:
        super().__init__()
        check_positive_int("mbstd_num_channels", mbstd_num_channels, allow_zero=True)
        if mbstd_group_size is not None:
            check_positive_int("mbstd_group_size", mbstd_group_size)
        if mbstd_num_channels and in_channels % mbstd_num_channels:
            raise ValueError(
                f"`mbstd_num_channels` ({mbstd_num_channels}) must divide the 4x4 channel count "
                f"({in_channels}); use 1 or a divisor of it."
            )
        self.in_channels, self.cmap_dim, self.resolution, self.architecture = (
            in_channels,
            cmap_dim,
            resolution,
            architecture,
        )
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation=activation)
        self.mbstd = (
            MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        )
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, 3, activation=activation, conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        """x (N, C, 4, 4), img (N, C_img, 4, 4) for "skip", cmap (N, cmap_dim) or None -> logits (N, 1)."""
        if self.architecture == "skip":
            x = x + self.fromrgb(img)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))  # (N, 1) or (N, cmap_dim)
        if self.cmap_dim > 0:  # projection: <features, embedding of c> / sqrt(cmap_dim)
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: blocks ``b{R}``, ..., ``b8`` halve the resolution, ``b4`` is the head.

    Args:
        c_dim: number of classes (one-hot label size), 0 for unconditional.
        img_resolution: input resolution, a power of two >= 8.
        img_channels: input channels.
        architecture: "resnet" (residual blocks, StyleGAN2 default), "orig" (plain) or "skip"
            (FromRGB at every resolution).
        channel_base: channels at resolution r are ``min(channel_base // r, channel_max)``.
        channel_max: see ``channel_base``.
        num_fp16_res: run the blocks of this many highest resolutions in float16 (see ``_fp16_context``).
        conv_clamp: clamp convolution outputs to +-conv_clamp (None: no clamping).
        cmap_dim: projection-conditioning dimensionality (default: the 4x4 channel count).
        block_kwargs: extra :class:`DiscriminatorBlock` arguments (``activation``, ``resample_filter``).
        mapping_kwargs: extra :class:`MappingNetwork` arguments for the label mapping.
        epilogue_kwargs: extra :class:`DiscriminatorEpilogue` arguments (``mbstd_group_size``,
            ``mbstd_num_channels``).

    Example:
        >>> D = Discriminator(c_dim=0, img_resolution=8, img_channels=3, channel_base=64, channel_max=16)
        >>> D(torch.randn(4, 3, 8, 8), torch.zeros(4, 0)).shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        c_dim: int,
        img_resolution: int,
        img_channels: int,
        architecture: str = "resnet",
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        cmap_dim: int | None = None,
        block_kwargs: dict | None = None,
        mapping_kwargs: dict | None = None,
        epilogue_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        _check_resolution(img_resolution, minimum=8)
        check_positive_int("c_dim", c_dim, allow_zero=True)
        check_positive_int("img_channels", img_channels)
        architecture = check_choice("architecture", architecture, DISCRIMINATOR_ARCHITECTURES)
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(int(math.log2(img_resolution)), 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in [*self.block_resolutions, 4]}
        cmap_dim = 0 if c_dim == 0 else (channels[4] if cmap_dim is None else cmap_dim)
        fp16_resolution = _fp16_resolution(img_resolution, num_fp16_res)
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        for res in self.block_resolutions:
            block = DiscriminatorBlock(
                channels[res] if res < img_resolution else 0,
                channels[res],
                channels[res // 2],
                resolution=res,
                use_fp16=res >= fp16_resolution,
                **(block_kwargs or {}),
                **common,
            )
            setattr(self, f"b{res}", block)
        if c_dim > 0:
            self.mapping = MappingNetwork(
                0, c_dim, cmap_dim, num_ws=None, w_avg_beta=None, **(mapping_kwargs or {})
            )
        self.b4 = DiscriminatorEpilogue(
            channels[4], cmap_dim, resolution=4, **(epilogue_kwargs or {}), **common
        )

    def discriminator_blocks(self) -> list[nn.Module]:
        """The blocks in the order the image goes through them: ``b{R}``, ..., ``b8``, then the ``b4``
        head. Freeze-D freezes the first k of them (the label mapping is not a block)."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions] + [self.b4]

    def forward(self, img: Tensor, c: Tensor | None) -> Tensor:
        """Score images.

        Args:
            img: (N, img_channels, img_resolution, img_resolution) float images in [-1, 1].
            c: (N, c_dim) one-hot float labels; (N, 0) or None when unconditional.

        Returns:
            (N, 1) float32 logits (real > 0).
        """
        check_images(img, "img", channels=[self.img_channels])
        if img.shape[-2:] != (self.img_resolution, self.img_resolution):
            raise ValueError(
                f"`img` must be {self.img_resolution}x{self.img_resolution}, got {tuple(img.shape)}; "
                "resize the images or build the discriminator for this resolution."
            )
        _check_labels(c, self.c_dim, img.shape[0])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None  # (N, cmap_dim)
        return self.b4(x, img, cmap)
