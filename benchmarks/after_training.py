"""After-training speed: ``generate`` and ``project`` vs plain loops written like the reference scripts.

Same network, same process, interleaved repeats. The baselines re-implement what NVlabs'
``generate.py`` and ``projector.py`` do per image / per step (written here from their published
behaviour, not copied): ``generate.py`` maps and synthesises one seed at a time
(``G(z, label, truncation_psi, noise_mode)`` per seed); ``projector.py`` runs the same optimisation as
ours, so that ratio checks that our loop adds nothing. Both projection sides use the same image
distance (pixels + discriminator features: VGG16 weights are not available offline), so only the loop
differs. Generation is timed without PNG writing (the same Pillow call on both sides).

    OMP_NUM_THREADS=1 python benchmarks/after_training.py --config cifar --resolution 32 --n 64
    OMP_NUM_THREADS=1 python benchmarks/after_training.py --config paper256 --resolution 256 --project-steps 0
    OMP_NUM_THREADS=1 python benchmarks/after_training.py --config cifar --n 0 --project-steps 100
    OMP_NUM_THREADS=1 python benchmarks/after_training.py --config cifar --channel-max 64 --n 64   # busy CPU
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from lightning_genaug.models.stylegan2.configs import build_networks, stylegan2_config
from lightning_genaug.tools.generate import generate_stylegan
from lightning_genaug.tools.project import DiscriminatorFeatureDistance, project

CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


@torch.no_grad()
def reference_generate(G: torch.nn.Module, seeds: list[int], truncation_psi: float) -> torch.Tensor:
    """The per-seed loop of the reference's ``generate.py``: one seed, one forward pass, one uint8 image."""
    images = []
    for seed in seeds:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
        image = G(z, torch.zeros(1, 0), truncation_psi=truncation_psi, noise_mode="const")
        images.append((image.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8))
    return torch.cat(images)


def ours_generate(G: torch.nn.Module, seeds: list[int], truncation_psi: float) -> torch.Tensor:
    """What ``lightning-genaug generate`` computes before writing PNG files."""
    images = generate_stylegan(G, seeds, truncation_psi=truncation_psi)
    return (images.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def reference_project(
    G: torch.nn.Module, D: torch.nn.Module, target: torch.Tensor, num_steps: int
) -> torch.Tensor:
    """The optimisation loop of the reference's ``projector.py`` (same schedule and regulariser)."""
    G = copy.deepcopy(G).eval().requires_grad_(False)
    z_samples = torch.randn(10_000, G.z_dim, generator=torch.Generator().manual_seed(0))
    w_samples = G.mapping(z_samples, None)[:, :1]
    w_avg = w_samples.mean(0, keepdim=True)
    w_std = (torch.sum((w_samples - w_avg) ** 2) / 10_000) ** 0.5
    noise_bufs = {name: buf for name, buf in G.synthesis.named_buffers() if "noise_const" in name}
    distance = DiscriminatorFeatureDistance(D, target)
    w_opt = w_avg.clone().requires_grad_(True)
    for buf in noise_bufs.values():
        buf[:] = torch.randn_like(buf)
        buf.requires_grad = True
    optimizer = torch.optim.Adam([w_opt, *noise_bufs.values()], betas=(0.9, 0.999), lr=0.1)
    for step in range(num_steps):
        t = step / num_steps
        w_noise_scale = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
        lr_ramp = min(1.0, (1.0 - t) / 0.25)
        lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
        lr_ramp = lr_ramp * min(1.0, t / 0.05)
        for group in optimizer.param_groups:
            group["lr"] = 0.1 * lr_ramp
        w_noise = torch.randn_like(w_opt) * w_noise_scale
        ws = (w_opt + w_noise).repeat([1, G.mapping.num_ws, 1])
        synth_images = G.synthesis(ws, noise_mode="const")
        dist = distance(synth_images).sum()
        reg_loss = 0.0
        for v in noise_bufs.values():
            noise = v[None, None, :, :]
            while True:
                reg_loss += (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
                reg_loss += (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
                if noise.shape[2] <= 8:
                    break
                noise = F.avg_pool2d(noise, kernel_size=2)
        loss = dist + reg_loss * 1e5
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for buf in noise_bufs.values():
                buf -= buf.mean()
                buf *= buf.square().mean().rsqrt()
    return w_opt.detach()


def timed(function: Callable[[], object], clock: Callable[[], float]) -> float:
    start = clock()
    function()
    return clock() - start


def compare(
    name: str, ours: Callable[[], object], reference: Callable[[], object], repeats: int, clock
) -> None:
    ours(), reference()  # warm-up
    ours_times, reference_times = [], []
    for _ in range(repeats):  # interleaved, so load changes hit both sides
        ours_times.append(timed(ours, clock))
        reference_times.append(timed(reference, clock))
    ours_s, reference_s = statistics.median(ours_times), statistics.median(reference_times)
    speed = reference_s / ours_s
    print(f"  {name}: ours {ours_s:.3f} s, reference loop {reference_s:.3f} s, ref / ours {speed:.2f}x")
    return ours_s, reference_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="cifar", help="StyleGAN2 preset of the (random) network")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument(
        "--channel-max", type=int, default=None, help="cap the feature maps (a cheaper network on a busy CPU)"
    )
    parser.add_argument("--n", type=int, default=64, help="images generated (ours: one batch of n); 0: skip")
    parser.add_argument("--project-steps", type=int, default=100, help="projection steps; 0: skip")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu", help="process CPU time or wall time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    overrides = {} if args.channel_max is None else {"channel_max": args.channel_max}
    G, D = build_networks(stylegan2_config(args.config, args.resolution, **overrides), args.resolution, 3, 0)
    G, D = G.eval().requires_grad_(False), D.eval().requires_grad_(False)
    clock = CLOCKS[args.clock]
    print(
        f"{platform.machine()}, {platform.processor() or 'cpu'}, threads {torch.get_num_threads()}, "
        f"torch {torch.__version__}, clock {args.clock}"
    )
    print(
        f"network: {args.config} (channel_max {G.synthesis.b4.conv1.weight.shape[0]}) at "
        f"{args.resolution}x{args.resolution}x3, "
        f"G {sum(p.numel() for p in G.parameters()) / 1e6:.1f}M parameters"
    )
    if args.n:
        seeds = list(range(args.n))
        ours_s, reference_s = compare(
            f"generate {args.n} images (psi 0.7)",
            lambda: ours_generate(G, seeds, 0.7),
            lambda: reference_generate(G, seeds, 0.7),
            args.repeats,
            clock,
        )
        print(f"    images/s: ours {args.n / ours_s:.2f}, reference loop {args.n / reference_s:.2f}")
    if args.project_steps:
        target = torch.rand(1, 3, args.resolution, args.resolution) * 2 - 1
        compare(
            f"project {args.project_steps} steps",
            lambda: project(G, D, target, args.project_steps),
            lambda: reference_project(G, D, target, args.project_steps),
            max(1, args.repeats - 2),
            clock,
        )


if __name__ == "__main__":
    main()
