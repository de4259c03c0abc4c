"""Throughput of ``AugmentPipe`` (images/s), optionally side by side with the StyleGAN2-ADA reference.

Measures, per resolution/batch, preset and strength ``p``:

- ``fwd``: forward only;
- ``fwd+bwd``: forward and backward to the input images;
- ``r1``: the R1 pattern, ``grad(D(aug(x)).sum(), x, create_graph=True)`` then backward of its
  squared norm through a small conv discriminator (double backward through the pipe).

With ``--reference PATH`` (a checkout of NVlabs/stylegan2-ada-pytorch) the reference's
``training/augment.py`` is imported from that path at run time (its pure-torch ops, with the
``grid_sample_gradfix`` / ``conv2d_gradfix`` custom paths switched off), run in the same process on
the same inputs, interleaved with ours, and the ``ours / reference`` throughput ratio is printed per
cell. It also prints output statistics and per-transform touched fractions of both pipes.

With ``--kornia`` it also times ``KorniaAugment`` against ``AugmentPipe`` on the same transform
families (x-flip, quarter turns, rotation + isotropic scale, brightness + contrast + saturation),
each wrapped kornia op gated per sample like ours, in the same process, interleaved.

Examples:
    python benchmarks/augment.py --quick
    python benchmarks/augment.py --reference ../stylegan2-ada-pytorch
    python benchmarks/augment.py --kornia --skip-throughput --skip-distributions
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lightning_genaug.augment.ada_pipe import AUGMENT_PRESETS, GROUPS, TRANSFORMS, AugmentPipe
from lightning_genaug.augment.kornia import KorniaAugment

MODES = ("fwd", "fwd+bwd", "r1")


def load_reference(path: str, pure_torch: bool = True) -> type[nn.Module]:
    """Import the reference ``AugmentPipe`` from a checkout.

    ``pure_torch``: switch off its custom-gradient ops (``grid_sample_gradfix``, ``conv2d_gradfix``), as
    on CPU; ``False`` leaves them as the reference trains with them on CUDA.
    """
    root = Path(path).resolve()
    if not (root / "training" / "augment.py").is_file():
        raise SystemExit(
            f"--reference {path!r}: no training/augment.py there (expected a stylegan2-ada-pytorch checkout)."
        )
    sys.path.insert(0, str(root))
    grid_sample_gradfix = importlib.import_module("torch_utils.ops.grid_sample_gradfix")
    conv2d_gradfix = importlib.import_module("torch_utils.ops.conv2d_gradfix")
    if pure_torch:
        grid_sample_gradfix.enabled = False
        conv2d_gradfix.enabled = False
    return importlib.import_module("training.augment").AugmentPipe


def reference_kwargs(preset: str) -> dict[str, float]:
    """The reference's constructor multipliers for one of our presets."""
    return {name: 1.0 for group in AUGMENT_PRESETS[preset] for name in GROUPS[group]}


class SmallDiscriminator(nn.Module):
    """Three strided convs and a linear head: enough to make R1's double backward realistic."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).view(-1)


def make_step(augment: Callable[[torch.Tensor], torch.Tensor], mode: str, disc: nn.Module) -> Callable:
    """One timed unit of work for ``mode`` on input ``x``."""

    def fwd(x: torch.Tensor) -> None:
        with torch.no_grad():
            augment(x)

    def fwd_bwd(x: torch.Tensor) -> None:
        x = x.detach().requires_grad_(True)
        augment(x).square().sum().backward()

    def r1(x: torch.Tensor) -> None:
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(disc(augment(x)).sum(), x, create_graph=True)
        grad.square().sum().backward()

    return {"fwd": fwd, "fwd+bwd": fwd_bwd, "r1": r1}[mode]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    steps: dict[str, Callable], x: torch.Tensor, repeats: int, warmup: bool
) -> dict[str, float]:
    """Median seconds per call of each step, alternating between them every repeat."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values() if warmup else ():
        step(x)
    for _ in range(repeats):
        for name, step in steps.items():
            sync(x.device)
            start = time.perf_counter()
            step(x)
            sync(x.device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def rate(images: int, seconds: float) -> str:
    """Images per second with 3 significant digits below 1000."""
    value = images / seconds
    return f"{value:.0f}" if value >= 1000 else f"{value:.3g}"


def smooth_images(batch: int, size: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Random smooth images in [-1, 1]: low-resolution noise upsampled bicubically."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(batch, 3, max(size // 4, 2), max(size // 4, 2), generator=generator) * 2 - 1
    images = nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return images.clamp(-1, 1).to(device)


def run_throughput(args: argparse.Namespace, device: torch.device, reference: type[nn.Module] | None) -> None:
    shapes = [(32, 64)] if args.quick else [(size, {32: 64, 256: 32}.get(size, 32)) for size in args.sizes]
    presets = ["bgc"] if args.quick else args.presets
    strengths = [0.0, 0.6] if args.quick else args.p
    disc = SmallDiscriminator(3).to(device)
    print(f"\n## throughput on {device} (images/s, median of repeats; ratio = ours / reference)")
    header = "| size x batch | preset | p | mode | ours img/s |" + (
        " ref img/s | ratio |" if reference else ""
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for size, batch in shapes:
        x = smooth_images(batch, size, device)
        repeats = args.repeats if size <= 64 else args.large_repeats
        for preset in presets:
            ours = AugmentPipe(preset).to(device)
            theirs = reference(**reference_kwargs(preset)).to(device) if reference else None
            generator = torch.Generator(device=device).manual_seed(0)
            for p in strengths:
                ours.set_p(p)
                if theirs is not None:
                    theirs.p.copy_(torch.as_tensor(p))
                for mode in args.modes:
                    steps = {
                        "ours": make_step(lambda t, pipe=ours, g=generator: pipe(t, generator=g), mode, disc)
                    }
                    if theirs is not None:
                        steps["ref"] = make_step(theirs, mode, disc)
                    seconds = time_interleaved(steps, x, repeats, warmup=size <= 64)
                    cell = f"| {size}x{size} x {batch} | {preset} | {p:.1f} | {mode} |"
                    row = f"{cell} {rate(batch, seconds['ours'])} |"
                    if theirs is not None:
                        ratio = seconds["ref"] / seconds["ours"]
                        row += f" {rate(batch, seconds['ref'])} | {ratio:.2f}x |"
                    print(row, flush=True)


def touched_fraction(pipe: nn.Module, x: torch.Tensor, ours: bool) -> float:
    """Fraction of samples whose output differs from the input by more than resampling error."""
    with torch.no_grad():
        out = pipe(x, generator=torch.Generator(device=x.device).manual_seed(1)) if ours else pipe(x)
    return float(((out - x).abs().amax(dim=(1, 2, 3)) > 1e-3).float().mean())


def run_distributions(device: torch.device, reference: type[nn.Module] | None, p: float, batch: int) -> None:
    """Per-transform touched fraction and per-channel output statistics, ours vs reference."""
    torch.manual_seed(0)
    x = smooth_images(batch, 32, device, seed=1)
    print(f"\n## touched fraction per transform alone at p={p} ({batch} images 32x32 on {device})")
    print("| transform | expected | ours |" + (" reference |" if reference else ""))
    print("|---|---|---|" + ("---|" if reference else ""))
    for name in TRANSFORMS:
        expected = p * {"xflip": 0.5, "rotate90": 0.75, "lumaflip": 0.5}.get(name, 1.0)
        if name == "imgfilter":  # 4 bands, each amplified with probability p
            expected = 1 - (1 - p) ** 4
        ours = AugmentPipe(None, p=p, **{name: 1.0}).to(device)
        row = f"| {name} | {expected:.3f} | {touched_fraction(ours, x, True):.3f} |"
        if reference:
            theirs = reference(**{name: 1.0}).to(device)
            theirs.p.copy_(torch.as_tensor(p))
            row += f" {touched_fraction(theirs, x, False):.3f} |"
        print(row)
    print(f"\n## output statistics at p={p} (per channel R, G, B: mean / std; input: {batch} smooth images)")
    print("| preset | pipe | mean | std |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for preset in ("bgc", "bgcfnc"):
            pipes = {"ours": AugmentPipe(preset, p=p).to(device)}
            if reference:
                pipes["reference"] = reference(**reference_kwargs(preset)).to(device)
                pipes["reference"].p.copy_(torch.as_tensor(p))
            for name, pipe in pipes.items():
                out = (
                    pipe(x, generator=torch.Generator(device=device).manual_seed(2))
                    if name == "ours"
                    else pipe(x)
                )
                mean = ", ".join(f"{v:+.3f}" for v in out.mean(dim=(0, 2, 3)).tolist())
                std = ", ".join(f"{v:.3f}" for v in out.std(dim=(0, 2, 3)).tolist())
                print(f"| {preset} | {name} | {mean} | {std} |")
    mean = ", ".join(f"{v:+.3f}" for v in x.mean(dim=(0, 2, 3)).tolist())
    std = ", ".join(f"{v:.3f}" for v in x.std(dim=(0, 2, 3)).tolist())
    print(f"| (input) | - | {mean} | {std} |")


KORNIA_MAX_P = 0.8  # kornia's uniform parameter ranges leak from p = 0.82 (lightning_genaug.augment.kornia)


def matching_pipes(device: torch.device) -> tuple[AugmentPipe, KorniaAugment]:
    """``AugmentPipe`` and ``KorniaAugment`` with the same transform families, one op per family group.

    ADA's x-flip flips half the gated samples: kornia's flip at strength 0.5. Quarter turns: a random
    number of turns in both. ADA's separate rotation and log-normal scale: one kornia ``RandomAffine``
    (uniform angle and scale). ADA's brightness, contrast, saturation: one kornia ``ColorJiggle``.
    """
    import kornia.augmentation as K

    ours = AugmentPipe(
        None, xflip=1.0, rotate90=1.0, scale=1.0, rotate=1.0, brightness=1.0, contrast=1.0, saturation=1.0
    )
    theirs = KorniaAugment(
        [
            K.RandomHorizontalFlip(),
            K.RandomRotation90(times=(0, 3)),
            K.RandomAffine(degrees=180.0, scale=(0.75, 1.33), padding_mode="reflection"),
            K.ColorJiggle(brightness=0.2, contrast=0.5, saturation=0.5),
        ],
        strengths=[0.5, 1.0, 1.0, 1.0],
        max_p=KORNIA_MAX_P,
    )
    return ours.to(device), theirs.to(device)


def run_kornia(args: argparse.Namespace, device: torch.device) -> None:
    ours, theirs = matching_pipes(device)
    disc = SmallDiscriminator(3).to(device)
    batch = 64
    x = smooth_images(batch, 32, device)
    print(
        f"\n## KorniaAugment vs AugmentPipe on {device}, same transform families, 32x32 x {batch} "
        "(images/s, median of repeats; ratio = AugmentPipe / KorniaAugment throughput)"
    )
    print("| p | mode | AugmentPipe img/s | KorniaAugment img/s | ratio |")
    print("|---|---|---|---|---|")
    for p in [value for value in args.p if value <= KORNIA_MAX_P]:
        ours.set_p(p)
        theirs.set_p(p)
        for mode in args.modes:
            generator = torch.Generator(device=device).manual_seed(0)
            steps = {
                name: make_step(lambda t, pipe=pipe, g=generator: pipe(t, generator=g), mode, disc)
                for name, pipe in (("ours", ours), ("kornia", theirs))
            }
            seconds = time_interleaved(steps, x, args.repeats, warmup=True)
            ratio = seconds["kornia"] / seconds["ours"]
            print(
                f"| {p:.1f} | {mode} | {rate(batch, seconds['ours'])} | {rate(batch, seconds['kornia'])} | "
                f"{ratio:.2f}x |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", help="path to a stylegan2-ada-pytorch checkout to compare against")
    parser.add_argument("--quick", action="store_true", help="small grid: 32x32, bgc, p in {0, 0.6}")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per cell at 32x32")
    parser.add_argument("--large-repeats", type=int, default=2,
                        help="timed repeats per cell above 64x64 (no warm-up)")  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: CPU, then CUDA when available")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for the CPU runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256],
                        help="square sizes (batch 64 at 32, 32 otherwise)")  # fmt: skip
    parser.add_argument("--presets", nargs="+", default=["bgc", "bgcfnc"], choices=sorted(AUGMENT_PRESETS))
    parser.add_argument(
        "--p", type=float, nargs="+", default=[0.0, 0.2, 0.6, 1.0], help="strengths to measure"
    )
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--skip-distributions", action="store_true", help="only measure throughput")
    parser.add_argument("--skip-throughput", action="store_true", help="skip the AugmentPipe throughput grid")
    parser.add_argument("--kornia", action="store_true", help="also time KorniaAugment vs AugmentPipe")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reference = load_reference(args.reference) if args.reference else None
    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    names = [str(device) for device in devices]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, devices: {names}")
    for device in devices:
        if not args.skip_throughput:
            run_throughput(args, device, reference)
        if args.kornia:
            run_kornia(args, device)
        if not args.skip_distributions:
            run_distributions(device, reference, p=0.6, batch=256 if args.quick else 1024)


if __name__ == "__main__":
    main()
