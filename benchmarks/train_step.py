"""Seconds per kimg of a StyleGAN2-ADA training step: ours vs the public reference, side by side.

Both sides train the ``cifar`` config (batch 64, 32x32 RGB, unconditional, R1 every 16 batches,
no path length, no style mixing, EMA) on the same random images in the same process, with the
augmentation pipe at p = 0.2 (``bgc``) and without augmentation. Ours runs as users run it
(``Trainer.fit`` with ``StyleGAN2ADA``); the reference runs its ``training/networks.py`` and
``training/loss.py`` ``StyleGAN2Loss`` in its own phase loop (Gmain, Greg, Dmain, Dreg, then EMA, as
its ``training_loop.py`` does), float32 with its pure-torch fallback ops.

The reference is NVlabs/stylegan2-ada-pytorch, imported at run time from ``--reference PATH``
(never copied here; it is under a non-commercial licence).

Usage::

    python benchmarks/train_step.py --reference ../stylegan2-ada-pytorch
    python benchmarks/train_step.py --reference ... --widths 64 --full-steps 0   # quick

Each side warms up with one batch, then ``--batches`` batches are timed, the four runners (ours /
reference, with / without ADA) taking turns in chunks of ``--chunk`` batches so that they share the
background load; with the default 16 the window holds exactly one lazy R1 phase, so seconds per
kimg include R1 amortised as in training. Only the batches are timed (not ``Trainer`` start-up).
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader, TensorDataset

BATCH = 64
RESOLUTION = 32
CHANNELS = 3
AUGMENT_P = 0.2
# Wall-clock by default; ``--clock cpu`` times the process's CPU seconds, which on a machine shared with
# other jobs measures the work done rather than the time spent waiting for a core (use ``--threads 1``).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]
# The reference's ``bgc`` preset, as keyword arguments of its AugmentPipe.
REFERENCE_BGC = dict(
    xflip=1,
    rotate90=1,
    xint=1,
    scale=1,
    rotate=1,
    aniso=1,
    xfrac=1,
    brightness=1,
    contrast=1,
    lumaflip=1,
    hue=1,
    saturation=1,
)


def ours_runner(
    channel_max: int,
    augment: bool,
    images: torch.Tensor,
    device: str = "cpu",
    config_overrides: dict | None = None,
    *,
    config: str = "cifar",
    **module_kwargs: object,
) -> Callable[[int], list[float]]:
    """A function running ``n`` batches of our module and returning each batch's seconds.

    ``config`` names the preset; ``config_overrides`` and ``module_kwargs`` override the float32
    set-up (e.g. ``autocast_bf16=True``, ``compile=True``, ``config_overrides={"num_fp16_res": 4,
    "conv_clamp": 256}``); ``images`` set the batch shape (``BATCH`` images of ``images.shape[1:]``).
    """
    import lightning.pytorch as pl

    from lightning_genaug.augment import AugmentPipe
    from lightning_genaug.models.stylegan2 import StyleGAN2ADA

    model = StyleGAN2ADA(
        config,
        resolution=images.shape[-1],
        channels=images.shape[1],
        num_classes=0,
        # float32 without activation clamping on both sides: the reference's `--fp32` settings, the ones
        # its networks run with on CPU.
        config_overrides={
            "channel_base": 32768,
            "channel_max": channel_max,
            "num_fp16_res": 0,
            "conv_clamp": None,
            **(config_overrides or {}),
        },
        augment=AugmentPipe("bgc", p=AUGMENT_P) if augment else None,
        **module_kwargs,
    )
    batch = min(BATCH, len(images))

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_train_batch_start(self, *args: object) -> None:
            synchronize(device)
            self._start = clock()

        def on_train_batch_end(self, *args: object) -> None:
            synchronize(device)
            self.seconds.append(clock() - self._start)

    def run(num_batches: int) -> list[float]:
        timer = Timer()
        trainer = pl.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            max_epochs=1,
            limit_train_batches=num_batches,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
        )
        loader = DataLoader(TensorDataset(images), batch_size=batch, shuffle=False, drop_last=True)
        trainer.fit(model, train_dataloaders=loader)
        return timer.seconds

    return run


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so the clock measures it (no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def reference_runner(
    reference: str,
    channel_max: int,
    augment: bool,
    images: torch.Tensor,
    device: str = "cpu",
    mixed_precision: bool = False,
) -> Callable[[int], list[float]]:
    """The same as :func:`ours_runner` for the reference networks and loss, in its phase order.

    ``mixed_precision``: the reference's own ``cifar`` set-up (float16 for the 4 highest resolutions,
    ``conv_clamp=256``) instead of its ``--fp32``.
    """
    if reference not in sys.path:
        sys.path.insert(0, reference)
    from training import augment as ref_augment
    from training import loss as ref_loss
    from training import networks as ref_networks

    common = dict(
        channel_base=32768,
        channel_max=channel_max,
        num_fp16_res=4 if mixed_precision else 0,
        conv_clamp=256 if mixed_precision else None,
    )
    G = ref_networks.Generator(
        z_dim=512,
        c_dim=0,
        w_dim=512,
        img_resolution=images.shape[-1],
        img_channels=images.shape[1],
        mapping_kwargs=dict(num_layers=2),
        synthesis_kwargs=common,
    )
    D = ref_networks.Discriminator(
        c_dim=0,
        img_resolution=images.shape[-1],
        img_channels=images.shape[1],
        architecture="orig",
        epilogue_kwargs=dict(mbstd_group_size=32),
        **common,
    )
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    pipe = None
    if augment:
        pipe = ref_augment.AugmentPipe(**REFERENCE_BGC).to(device)
        pipe.p.copy_(torch.as_tensor(AUGMENT_P))
    loss = ref_loss.StyleGAN2Loss(
        torch.device(device),
        G.mapping,
        G.synthesis,
        D,
        augment_pipe=pipe,
        style_mixing_prob=0,
        r1_gamma=0.01,
        pl_weight=0,
    )
    lr, betas = 0.0025, (0.0, 0.99)
    phases = []
    for name, module, interval in (("G", G, 4), ("D", D, 16)):
        ratio = interval / (interval + 1)
        opt = torch.optim.Adam(
            module.parameters(), lr=lr * ratio, betas=tuple(b**ratio for b in betas), eps=1e-8
        )
        phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
    state = {"batch_idx": 0, "cur_nimg": 0}

    def one_batch(real: torch.Tensor) -> None:
        c = torch.zeros(BATCH, 0, device=device)
        for phase, module, opt, interval in phases:
            if state["batch_idx"] % interval:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            gen_z = torch.randn(BATCH, G.z_dim, device=device)
            loss.accumulate_gradients(phase, real, c, gen_z, c, sync=True, gain=interval)
            module.requires_grad_(False)
            opt.step()
        ema_nimg = min(500_000, state["cur_nimg"] * 0.05)
        beta = 0.5 ** (BATCH / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                b_ema.copy_(b)
        state["batch_idx"] += 1
        state["cur_nimg"] += BATCH

    def run(num_batches: int) -> list[float]:
        seconds = []
        for index in range(num_batches):
            synchronize(device)
            start = clock()
            one_batch(images[index * BATCH : (index + 1) * BATCH].to(device))
            synchronize(device)
            seconds.append(clock() - start)
        return seconds

    return run


def interleaved_seconds_per_kimg(
    runners: dict[str, Callable[[int], list[float]]], batches: int, chunk: int
) -> dict[str, float]:
    """Seconds per 1000 images of each runner, timed in alternating chunks of ``chunk`` batches.

    Each runner first warms up with one batch (which also runs R1); alternating chunks expose
    every runner to the same background load, which matters on a shared machine.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for run in runners.values():
        run(1)
    for start in range(0, batches, chunk):
        for name, run in runners.items():
            seconds[name] += run(min(chunk, batches - start))
    return {name: statistics.fmean(values) * 1000 / BATCH for name, values in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", required=True, help="path of an NVlabs/stylegan2-ada-pytorch checkout")
    parser.add_argument(
        "--widths", type=int, nargs="*", default=[64], help="reduced channel_max values to time"
    )
    parser.add_argument("--batches", type=int, default=16, help="timed batches per reduced-width run")
    parser.add_argument(
        "--full-steps", type=int, default=1, help="timed batches of the full cifar config (0: skip)"
    )
    parser.add_argument("--chunk", type=int, default=4, help="batches per turn when alternating runners")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall or process CPU time")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = [(width, args.batches) for width in args.widths]
    if args.full_steps:
        settings.append((512, args.full_steps))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
        f"{RESOLUTION}x{RESOLUTION}x{CHANNELS}, cifar config; seconds per kimg (lower is better)"
    )
    print(f"{'channel_max':>11} {'augment':>10} {'ours':>9} {'reference':>10} {'ref/ours':>9}")
    for width, batches in settings:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(batches * BATCH, CHANNELS, RESOLUTION, RESOLUTION, generator=generator) * 2 - 1
        runners = {}
        for augment in (False, True):
            torch.manual_seed(0)
            runners["ours", augment] = ours_runner(width, augment, images)
            torch.manual_seed(0)
            runners["reference", augment] = reference_runner(args.reference, width, augment, images)
        timings = interleaved_seconds_per_kimg(runners, batches, args.chunk)
        for augment in (False, True):
            ours, reference = timings["ours", augment], timings["reference", augment]
            label = f"p={AUGMENT_P}" if augment else "none"
            print(
                f"{width:>11} {label:>10} {ours:>9.2f} {reference:>10.2f} {reference / ours:>8.2f}x",
                flush=True,
            )
        overhead = [timings[side, True] / timings[side, False] - 1 for side in ("ours", "reference")]
        print(f"{'':>11} {'ADA cost':>10} {overhead[0]:>+9.1%} {overhead[1]:>+10.1%}", flush=True)


if __name__ == "__main__":
    main()
