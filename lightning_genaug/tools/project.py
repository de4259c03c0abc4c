"""``lightning-genaug project``: find the latent ``w`` whose image reproduces a real one.

The optimisation of the StyleGAN2 paper (Karras et al., CVPR 2020, App. D), as the reference's
``projector.py`` runs it: start at the average ``w``; optimise ``w`` (one for every layer, or one per
layer with ``w_plus``) and the per-layer noise maps with Adam; the learning rate ramps up over the
first 5 % of the steps and down (cosine) over the last 25 %; Gaussian noise of scale
``0.05 * sigma_w * max(0, 1 - t / 0.75)^2`` is added to ``w`` early on; the noise maps are kept
at zero mean and unit variance and their autocorrelation at every scale is penalised (weight 1e5).

The image distance: with a TorchScript VGG16 feature extractor file (``vgg16.pt`` as the
reference uses it, called ``vgg(x, resize_images=False, return_lpips=True)`` on [0, 255] images), the
squared distance of its LPIPS features; without one (nothing is ever downloaded), the fallback
*pixel + discriminator features*: the mean squared pixel error plus, for every block of the
network's own discriminator, the mean squared difference of its channel-normalised features (an
LPIPS-like distance in D's feature space).
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_genaug.data.files import CorruptImageError, ImageDecoder
from lightning_genaug.images import from_uint8, picture_grid, save_png
from lightning_genaug.models.stylegan2.generation import class_condition, generator_device
from lightning_genaug.tools.arguments import ToolArgumentError, class_labels
from lightning_genaug.tools.parsers import check_vgg16_file
from lightning_genaug.tools.video import write_animation

NUM_W_SAMPLES = 10_000
INITIAL_LR = 0.1
LR_RAMPUP = 0.05  # fraction of the steps
LR_RAMPDOWN = 0.25
INITIAL_NOISE_FACTOR = 0.05
NOISE_RAMP = 0.75
NOISE_REGULARIZE_WEIGHT = 1e5
VGG_RESOLUTION = 256
VIDEO_FRAMES = 100
"""At most this many steps are kept as frames of the progress video."""

IMAGE_MODES = {1: "grey", 3: "RGB"}


def load_target(path: Path, channels: int, resolution: int) -> tuple[torch.Tensor, str]:
    """Read an image for projection: centre-cropped to a square and resized to ``resolution``.

    Decoded as training images are (:class:`~lightning_genaug.data.files.ImageDecoder`: EXIF
    orientation applied, 16-bit and float pixels read by the shared bit-depth policy, palette and
    CMYK images made RGB, an alpha channel dropped with a warning).

    Returns:
        ``(1, channels, resolution, resolution)`` in [-1, 1], and a sentence saying what was done.

    Raises:
        ValueError: not an image, another channel count than the network's, or smaller than the
            network's resolution (each message says how to fix the file).
    """
    name = str(path)
    try:
        data = path.read_bytes()
        pixels = ImageDecoder(channels=None)(data, name)  # (H, W, C) at the file's own size
    except (OSError, CorruptImageError) as error:
        raise ValueError(f"--target {name!r} is not a readable image ({error})") from error
    height, width, found_channels = pixels.shape
    if found_channels != channels:
        wanted = "L" if channels == 1 else "RGB"
        raise ValueError(
            f"--target {name!r} is a {found_channels}-channel ({IMAGE_MODES[found_channels]}) image but the "
            f"network makes {channels}-channel images; convert it, "
            f"e.g. PIL.Image.open(path).convert({wanted!r}).save('target.png')"
        )
    if min(width, height) < resolution:
        raise ValueError(
            f"--target {name!r} is {width}x{height}, smaller than the network's "
            f"{resolution}x{resolution}; give an image at least that large"
        )
    side = min(width, height)
    if (width, height) != (resolution, resolution):
        pixels = ImageDecoder(resolution, "center_crop", channels)(data, name)
    message = f"target {width}x{height}"
    if width != height:
        message += f" centre-cropped to {side}x{side}"
    if side != resolution:
        message += f"{' and' if width != height else ''} resized to {resolution}x{resolution}"
    return from_uint8(torch.from_numpy(pixels).permute(2, 0, 1)).unsqueeze(0), message


class DiscriminatorFeatureDistance(nn.Module):
    """Pixel MSE plus the LPIPS-like distance of a StyleGAN2 discriminator's block features to ``target``.

    Shape:
        ``target`` ``(1, C, H, W)`` in [-1, 1]; ``images`` ``(N, C, H, W)`` in [-1, 1] -> ``(N,)``.
    """

    def __init__(self, D: nn.Module, target: torch.Tensor) -> None:
        super().__init__()
        self.D = D
        self.target = target
        with torch.no_grad():
            self.target_features = self.features(target)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x, img = None, images
        features = []
        for res in self.D.block_resolutions:
            x, img = getattr(self.D, f"b{res}")(x, img)
            features.append(F.normalize(x, dim=1))  # unit length over channels, as LPIPS
        return features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = (self.target - images).square().flatten(1).mean(1)
        feature_terms = [
            (target - image).square().sum(1).flatten(1).mean(1)
            for target, image in zip(self.target_features, self.features(images), strict=True)
        ]
        return pixels + torch.stack(feature_terms).sum(0)


class VGGFeatureDistance(nn.Module):
    """Squared distance of the LPIPS features of a TorchScript VGG16 (the reference's ``vgg16.pt``).

    Shape:
        ``target`` ``(1, C, H, W)``; ``images`` ``(N, C, H, W)``; both in [-1, 1], C = 1 or 3 -> ``(N,)``.
    """

    def __init__(self, vgg16: nn.Module, target: torch.Tensor) -> None:
        super().__init__()
        self.vgg16 = vgg16
        with torch.no_grad():
            self.target_features = self.features(target)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        images = (images.expand(-1, 3, -1, -1) + 1) * 127.5
        mode = "area" if images.shape[-1] > VGG_RESOLUTION else "bilinear"
        images = F.interpolate(images, size=(VGG_RESOLUTION, VGG_RESOLUTION), mode=mode)
        return self.vgg16(images, resize_images=False, return_lpips=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.target_features - self.features(images)).square().flatten(1).sum(1)


def image_distance(
    D: nn.Module, target: torch.Tensor, vgg16_path: Path | None = None
) -> tuple[nn.Module, str]:
    """The distance to ``target`` that :func:`project` minimises, and its name (for the user's message)."""
    if vgg16_path is None:
        return DiscriminatorFeatureDistance(
            D, target
        ), "pixels + discriminator features (no --vgg16 file given)"
    check_vgg16_file(vgg16_path)
    try:
        vgg16 = torch.jit.load(str(vgg16_path), map_location=target.device).eval()
    except RuntimeError as error:  # a zip archive that is not a TorchScript module
        raise ToolArgumentError(
            "vgg16",
            f"{{name}} {str(vgg16_path)!r} cannot be read by torch.jit.load ({str(error).splitlines()[0]}); "
            "give the reference's vgg16.pt, or leave --vgg16 out for the discriminator-feature distance",
        ) from error
    return VGGFeatureDistance(vgg16, target), "VGG16 LPIPS features"


def noise_regularization(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Squared autocorrelation of every noise map with its 1-pixel shifts, at every scale down to 8x8.

    >>> noise_regularization([torch.ones(8, 8)])
    tensor(2.)
    """
    loss = noise_maps[0].new_zeros(())
    for noise in noise_maps:
        noise = noise[None, None]  # (1, 1, H, W)
        while True:
            loss = loss + (noise * noise.roll(1, dims=3)).mean().square()
            loss = loss + (noise * noise.roll(1, dims=2)).mean().square()
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return loss


def learning_rate(step: int, num_steps: int, initial_lr: float = INITIAL_LR) -> float:
    """Linear ramp-up over the first ``LR_RAMPUP``, cosine ramp-down over the last ``LR_RAMPDOWN``.

    >>> [round(learning_rate(s, 100), 3) for s in (0, 50, 99)]
    [0.0, 0.1, 0.0]
    """
    t = step / num_steps
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return initial_lr * ramp * min(1.0, t / LR_RAMPUP)


@dataclass
class Projection:
    """What :func:`project` found.

    Attributes:
        ws: ``(1, num_ws, w_dim)`` the final latent (the same ``w`` on every layer unless ``w_plus``).
        image: ``(1, C, H, W)`` in [-1, 1], its image with the optimised noise maps.
        noise: the optimised noise maps, by buffer name.
        frames: ``(F, C, H, W)`` images at evenly spaced steps, the last one final.
        frame_steps: the step of each frame.
        distance_name: which image distance was optimised.
    """

    ws: torch.Tensor
    image: torch.Tensor
    noise: dict[str, torch.Tensor]
    frames: torch.Tensor
    frame_steps: list[int]
    distance_name: str


def w_statistics(
    G: nn.Module, c: torch.Tensor, num_samples: int = NUM_W_SAMPLES, seed: int = 0
) -> tuple[torch.Tensor, float]:
    """Mean ``(1, 1, w_dim)`` and scalar spread ``sqrt(E||w - mean||^2)`` of ``G``'s ``w`` for class ``c``.

    Args:
        G: a StyleGAN2 ``Generator``.
        c: ``(1, c_dim)`` one-hot (``(1, 0)`` when unconditional).
        num_samples: latents drawn.
        seed: seed of the latents.
    """
    z = torch.randn(num_samples, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(c.device)
    w = G.mapping(z, c[:1].expand(num_samples, -1))[:, :1]  # (N, 1, w_dim)
    w_avg = w.mean(0, keepdim=True)
    return w_avg, float((w - w_avg).square().sum() / num_samples) ** 0.5


def project(
    G: nn.Module,
    D: nn.Module,
    target: torch.Tensor,
    num_steps: int = 1000,
    class_idx: int | None = None,
    w_plus: bool = False,
    vgg16_path: Path | None = None,
    seed: int = 303,
) -> Projection:
    """Optimise ``w`` (and the noise maps) so that ``G``'s image matches ``target``.

    Args:
        G: a StyleGAN2 ``Generator`` (not modified: a copy is optimised).
        D: the network's discriminator (its features are the fallback distance).
        target: ``(1, C, H, W)`` in [-1, 1] at ``G``'s resolution.
        num_steps: optimisation steps.
        class_idx: class of a conditional ``G``.
        w_plus: one ``w`` per layer (W+) instead of one for all.
        vgg16_path: a TorchScript VGG16 for LPIPS features (else the fallback).
        seed: seed of the noise maps' start and the ``w`` noise.

    Returns:
        The :class:`Projection`.
    """
    generator = torch.Generator().manual_seed(seed)
    G = copy.deepcopy(G).eval().requires_grad_(False)
    device = generator_device(G)
    target = target.to(device)
    distance, distance_name = image_distance(D, target, vgg16_path)
    with torch.no_grad():
        c = class_condition(class_labels(class_idx, G.c_dim, 1), G.c_dim, 1, device)
        w_avg, w_std = w_statistics(G, c)
    noise = {name: buffer for name, buffer in G.synthesis.named_buffers() if name.endswith("noise_const")}
    for buffer in noise.values():
        buffer.copy_(torch.randn(buffer.shape, generator=generator))
        buffer.requires_grad_(True)
    w_opt = w_avg.repeat(1, G.num_ws if w_plus else 1, 1).requires_grad_(True)  # (1, num_ws or 1, w_dim)
    optimizer = torch.optim.Adam([w_opt, *noise.values()], betas=(0.9, 0.999), lr=INITIAL_LR)
    keep_every = max(1, math.ceil(num_steps / VIDEO_FRAMES))
    frames, frame_steps = [], []
    with torch.enable_grad():
        for step in range(num_steps):
            t = step / num_steps
            w_noise_scale = w_std * INITIAL_NOISE_FACTOR * max(0.0, 1.0 - t / NOISE_RAMP) ** 2
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, num_steps)
            w_noise = torch.randn(w_opt.shape, generator=generator).to(device) * w_noise_scale
            ws = (w_opt + w_noise).expand(1, G.num_ws, -1)
            images = G.synthesis(ws, noise_mode="const")
            loss = distance(images).sum()
            loss = loss + NOISE_REGULARIZE_WEIGHT * noise_regularization(list(noise.values()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                for buffer in noise.values():
                    buffer.sub_(buffer.mean()).mul_(buffer.square().mean().rsqrt())
            if step % keep_every == 0:
                frames.append(images.detach().clamp(-1, 1).cpu())
                frame_steps.append(step)
    with torch.no_grad():
        final_ws = w_opt.detach().expand(1, G.num_ws, -1).clone()
        image = G.synthesis(final_ws, noise_mode="const").clamp(-1, 1)
    frames.append(image.cpu())
    frame_steps.append(num_steps)
    return Projection(
        ws=final_ws,
        image=image,
        noise={name: buffer.detach().clone() for name, buffer in noise.items()},
        frames=torch.cat(frames),
        frame_steps=frame_steps,
        distance_name=distance_name,
    )


def run(options: argparse.Namespace, model: torch.nn.Module) -> str:
    """Project the target; write target.png, proj.png, projected_w.npz, progress.png and the video."""
    G = model.G_ema
    target, target_message = load_target(options.target, G.img_channels, G.img_resolution)
    print(f"Projecting: {target_message}.")
    result = project(
        G, model.D, target, options.steps, options.class_idx, options.w_plus, options.vgg16, options.seed
    )
    outdir = options.outdir
    save_png((target[0] + 1) / 2, outdir / "target.png")
    save_png((result.image[0].cpu() + 1) / 2, outdir / "proj.png")
    noise = {f"noise/{name}": tensor.cpu().numpy() for name, tensor in result.noise.items()}
    np.savez(outdir / "projected_w.npz", w=result.ws.cpu().numpy(), **noise)
    picks = torch.linspace(0, len(result.frames) - 1, min(8, len(result.frames))).round().long()
    save_png(
        picture_grid(torch.cat([target.cpu(), result.frames[picks]]), len(picks) + 1), outdir / "progress.png"
    )
    written = "target.png, proj.png, projected_w.npz, progress.png"
    if options.save_video:
        pairs = [picture_grid(torch.stack([target[0].cpu(), frame]), 2) for frame in result.frames]
        video, _ = write_animation(pairs, outdir / "proj.mp4", fps=10)
        written += f", {video.name}"
    return f"Wrote {written} to {outdir} ({options.steps} steps, distance: {result.distance_name})"


__all__ = ["Projection", "load_target", "noise_regularization", "project", "learning_rate"]
