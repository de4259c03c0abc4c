"""One script for the day a GPU is lent: every GPU number the docs lack, in about 10 minutes on one H100.

Sections (each row also records the peak GPU memory it allocated):

1. ``augment``: ``AugmentPipe`` vs the reference's, ``bgc`` at p = 0.2 / 0.6, fwd+bwd and R1, at 32x32
   batch 64 and 256x256 batch 32 (images/s);
2. ``stylegan2``: ``StyleGAN2ADA`` ``cifar`` seconds per kimg, float32 vs bf16 autocast vs float16
   blocks (the reference's mixed precision), each in NHWC (``channels_last``, the default) and NCHW,
   vs the reference itself in float32 and in its mixed precision, with ADA (``bgc``, p = 0.2) and
   without;
3. ``compile``: the same step with ``compile=True`` (bf16, ADA) vs eager; the first batch, which
   compiles, is reported apart;
4. ``attention``: Sparse Transformer ``15m`` training tokens/s at sequence 3072 (32x32x3), sparse
   strided/local (flex attention) vs dense causal SDPA (flash);
5. ``sampling``: KV-cache sampling vs full recompute at sequence 3072 (tokens/s).

The reference (NVlabs/stylegan2-ada-pytorch, non-commercial licence, never bundled) is optional:
pass the path of a checkout with ``--reference``; without it its rows are listed as skipped.

Usage::

    python benchmarks/gpu_report.py --reference ../stylegan2-ada-pytorch     # on the GPU machine
    python benchmarks/gpu_report.py --dry-run                                # CPU, tiny sizes, ~1 min

Writes ``OUT/gpu_report.md`` (a markdown table per section, with the device, torch version and
arguments) and ``OUT/gpu_report.json`` (every row); ``--out`` defaults to ``runs/gpu_report``.
``--dry-run`` runs every section at tiny sizes on the CPU so the script is tested in CI and cannot
rot; its numbers mean nothing. There ``torch.compile`` uses the ``eager`` backend (Dynamo captures
the graphs, nothing is compiled): inductor on CPU costs minutes and is tested by
``tests/test_compile.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import augment as augment_bench  # noqa: E402  (the sibling benchmark scripts)
import sampling as sampling_bench  # noqa: E402
import sparse_attention as attention_bench  # noqa: E402
import train_step as train_step_bench  # noqa: E402

from lightning_genaug.augment.ada_pipe import AugmentPipe  # noqa: E402
from lightning_genaug.models.sparse_transformer import SparseTransformer, sparse_transformer_config  # noqa: E402

SECTIONS = ("augment", "stylegan2", "compile", "attention", "sampling")


@dataclass
class Row:
    """One measured (or skipped) cell of the report."""

    section: str
    case: str
    value: float | None
    unit: str
    peak_memory_mib: float | None = None
    note: str = ""


@dataclass
class Sizes:
    """Problem sizes: the GPU defaults, or tiny ones for ``--dry-run``."""

    augment_shapes: list[tuple[int, int]] = field(default_factory=lambda: [(32, 64), (256, 32)])
    augment_repeats: int = 20
    gan_config: str = "cifar"
    gan_resolution: int = 32
    gan_channels: int = 3
    gan_channel_max: int = 512
    gan_batches: int = 20
    transformer_config: str = "15m"
    transformer_resolution: int = 32  # 32x32x3 = sequence 3072
    transformer_layers: int = 0  # 0: the config's depth
    transformer_batch: int = 4
    transformer_steps: int = 5
    sampling_images: int = 1

    @classmethod
    def dry_run(cls) -> Sizes:
        return cls(
            augment_shapes=[(16, 4)],
            augment_repeats=1,
            gan_config="tiny",
            gan_resolution=8,
            gan_channels=1,
            gan_channel_max=16,
            gan_batches=2,
            transformer_config="tiny",
            transformer_resolution=4,
            transformer_layers=2,
            transformer_batch=2,
            transformer_steps=1,
        )


# ------------------------------------------------------------------------------------------ measuring


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """Peak allocated GPU memory since :func:`reset_peak`, MiB; ``None`` on CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


@contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    """``torch.compile`` uses ``backend`` inside the block (the module calls it with no backend)."""
    if backend == "inductor":
        yield
        return
    with mock.patch.object(torch, "compile", partial(torch.compile, backend=backend)):
        yield


# ------------------------------------------------------------------------------------------ sections


def augment_section(args: argparse.Namespace, sizes: Sizes, device: torch.device) -> list[Row]:
    reference = None
    if args.reference:
        reference = augment_bench.load_reference(args.reference, pure_torch=device.type != "cuda")
    disc = augment_bench.SmallDiscriminator(3).to(device)
    rows = []
    for size, batch in sizes.augment_shapes:
        images = augment_bench.smooth_images(batch, size, device)
        for p in (0.2, 0.6):
            pipes = {"ours": AugmentPipe("bgc", p=p).to(device)}
            if reference is not None:
                pipes["reference"] = reference(**augment_bench.reference_kwargs("bgc")).to(device)
                pipes["reference"].p.copy_(torch.as_tensor(p))
            for mode in ("fwd+bwd", "r1"):
                steps = {name: augment_bench.make_step(pipe, mode, disc) for name, pipe in pipes.items()}
                seconds = augment_bench.time_interleaved(steps, images, sizes.augment_repeats, warmup=True)
                for name in ("ours", "reference"):
                    case = f"{name}, {size}x{size} b{batch}, p={p}, {mode}"
                    if name not in steps:
                        rows.append(Row("augment", case, None, "img/s", note="skipped: no --reference"))
                        continue
                    reset_peak(device)
                    steps[name](images)
                    rows.append(Row("augment", case, batch / seconds[name], "img/s", peak_mib(device)))
    return rows


def gan_images(sizes: Sizes, batches: int) -> torch.Tensor:
    shape = (batches * train_step_bench.BATCH, sizes.gan_channels, sizes.gan_resolution, sizes.gan_resolution)
    return torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1


def seconds_per_kimg(run: Callable[[int], list[float]], batches: int, batch: int) -> tuple[float, float]:
    """(first batch seconds, mean seconds per kimg of the next ``batches``), one warm-up batch first."""
    first = run(1)[0]
    seconds = run(batches)
    return first, statistics.fmean(seconds) * 1000 / batch


def ours_gan_row(
    section: str, case: str, args: argparse.Namespace, sizes: Sizes, device: torch.device, **kwargs: Any
) -> tuple[Row, float]:
    """Our module's row, and the first (compiling, warming up) batch's seconds."""
    images = gan_images(sizes, sizes.gan_batches + 1)
    config_overrides = kwargs.pop("config_overrides", {})
    if sizes.gan_config != "cifar":
        kwargs["config"] = sizes.gan_config
    augment = kwargs.pop("augment")
    reset_peak(device)
    run = train_step_bench.ours_runner(
        sizes.gan_channel_max, augment, images, device.type, config_overrides, **kwargs
    )
    first, value = seconds_per_kimg(run, sizes.gan_batches, min(train_step_bench.BATCH, len(images)))
    return Row(section, case, value, "s/kimg", peak_mib(device)), first


def stylegan2_section(args: argparse.Namespace, sizes: Sizes, device: torch.device) -> list[Row]:
    precisions = {
        "float32": {"autocast_bf16": False},
        "bf16 autocast": {"autocast_bf16": True},
        "float16 blocks (num_fp16_res 4, conv_clamp 256)": {
            "autocast_bf16": False,
            "config_overrides": {"num_fp16_res": 4, "conv_clamp": 256.0},
        },
    }
    layouts = {"NHWC (channels_last, the default)": True, "NCHW": False}
    rows = []
    for augment in (False, True):
        ada = "ADA p=0.2" if augment else "no augmentation"
        for name, kwargs in precisions.items():
            for layout, channels_last in layouts.items():
                overrides = {**kwargs.get("config_overrides", {}), "channels_last": channels_last}
                row, _ = ours_gan_row(
                    "stylegan2",
                    f"ours, {name}, {layout}, {ada}",
                    args,
                    sizes,
                    device,
                    augment=augment,
                    **{**kwargs, "config_overrides": overrides},
                )
                rows.append(row)
        for reference_precision, mixed in (("float32", False), ("its mixed precision", True)):
            case = f"reference, {reference_precision}, NCHW, {ada}"
            if not args.reference:
                rows.append(Row("stylegan2", case, None, "s/kimg", note="skipped: no --reference"))
                continue
            if sizes.gan_config != "cifar":
                rows.append(Row("stylegan2", case, None, "s/kimg", note="skipped: --dry-run (cifar only)"))
                continue
            reset_peak(device)
            run = train_step_bench.reference_runner(
                args.reference,
                sizes.gan_channel_max,
                augment,
                gan_images(sizes, sizes.gan_batches + 1),
                device.type,
                mixed_precision=mixed,
            )
            _, value = seconds_per_kimg(run, sizes.gan_batches, train_step_bench.BATCH)
            rows.append(Row("stylegan2", case, value, "s/kimg", peak_mib(device)))
    return rows


def compile_section(args: argparse.Namespace, sizes: Sizes, device: torch.device) -> list[Row]:
    rows = []
    for compiled in (False, True):
        case = f"ours, bf16, ADA p=0.2, {'compile=True' if compiled else 'eager'}"
        with compile_backend(args.compile_backend if compiled else "inductor"):
            row, first = ours_gan_row(
                "compile", case, args, sizes, device, augment=True, autocast_bf16=True, compile=compiled
            )
        row.note = f"first batch {first:.1f} s" + (f" (backend {args.compile_backend})" if compiled else "")
        rows.append(row)
    torch._dynamo.reset()
    return rows


def attention_section(args: argparse.Namespace, sizes: Sizes, device: torch.device) -> list[Row]:
    config_args = argparse.Namespace(
        config=sizes.transformer_config,
        channels=3,
        resolution=sizes.transformer_resolution,
        n_layer=sizes.transformer_layers,
        bf16=True,
    )
    seq_len = 3 * sizes.transformer_resolution**2
    tokens = torch.randint(256, (sizes.transformer_batch, seq_len), device=device)
    positions = torch.arange(seq_len, device=device).expand(sizes.transformer_batch, -1)
    variants = {
        "sparse strided/local (flex on CUDA)": (("strided", "local"), "auto"),
        "dense causal SDPA (flash on CUDA)": (("dense",), "sdpa"),
    }
    rows = []
    for name, (layers, kernel) in variants.items():
        net, optimizer = attention_bench.build(config_args, layers, kernel, device)
        attention_bench.time_steps(net, optimizer, tokens, positions, 1)  # compile, masks, allocator
        reset_peak(device)
        seconds = attention_bench.time_steps(net, optimizer, tokens, positions, sizes.transformer_steps)
        rows.append(
            Row(
                "attention",
                f"{name}, sequence {seq_len}, batch {sizes.transformer_batch}, {net.config.n_layer} layers",
                sizes.transformer_batch * seq_len / seconds,
                "tokens/s",
                peak_mib(device),
            )
        )
    return rows


def sampling_section(args: argparse.Namespace, sizes: Sizes, device: torch.device) -> list[Row]:
    overrides = dict(
        channels=3, resolution=sizes.transformer_resolution, kernel="sdpa", bf16=device.type == "cuda"
    )
    if sizes.transformer_layers:
        overrides["n_layer"] = sizes.transformer_layers
    torch.manual_seed(0)
    config = sparse_transformer_config(sizes.transformer_config, **overrides)
    net = SparseTransformer(config).to(device).eval()
    sampling_bench.images_per_second(net, 1, True, device)  # warm-up
    rows = []
    for use_cache in (True, False):
        reset_peak(device)
        images_per_second = sampling_bench.images_per_second(net, sizes.sampling_images, use_cache, device)
        rows.append(
            Row(
                "sampling",
                f"{'KV cache' if use_cache else 'full recompute'}, sequence {net.config.seq_len}, "
                f"batch {sizes.sampling_images}",
                images_per_second * net.config.seq_len,
                "tokens/s",
                peak_mib(device),
            )
        )
    return rows


RUNNERS: dict[str, Callable[[argparse.Namespace, Sizes, torch.device], list[Row]]] = {
    "augment": augment_section,
    "stylegan2": stylegan2_section,
    "compile": compile_section,
    "attention": attention_section,
    "sampling": sampling_section,
}


# ------------------------------------------------------------------------------------------ report


def environment(device: torch.device) -> dict[str, str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": f"{device.type}: {name}",
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "python": platform.python_version(),
        "threads": str(torch.get_num_threads()),
    }


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def markdown(
    rows: list[Row], env: dict[str, str], args: argparse.Namespace, seconds: dict[str, float]
) -> str:
    lines = ["# GPU report", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    lines += [f"- arguments: `{' '.join(sys.argv[1:]) or '(none)'}`", ""]
    if args.dry_run:
        lines += ["**Dry run** (tiny sizes on the CPU): these numbers only show that every section runs.", ""]
    for section in SECTIONS:
        section_rows = [row for row in rows if row.section == section]
        if not section_rows:
            continue
        lines += [f"## {section} ({seconds[section]:.0f} s)", ""]
        lines += ["| case | value | unit | peak GPU MiB | note |", "| --- | --- | --- | --- | --- |"]
        for row in section_rows:
            memory = "-" if row.peak_memory_mib is None else f"{row.peak_memory_mib:,.0f}"
            lines.append(f"| {row.case} | {format_value(row.value)} | {row.unit} | {memory} | {row.note} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", default=None, help="path of an NVlabs/stylegan2-ada-pytorch checkout")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CI)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_report"))
    parser.add_argument(
        "--compile-backend",
        default=None,
        help="torch.compile backend (default: inductor; eager with --dry-run)",
    )
    args = parser.parse_args(argv)
    if args.compile_backend is None:
        args.compile_backend = "eager" if args.dry_run else "inductor"
    if args.reference and not (Path(args.reference) / "training" / "augment.py").is_file():
        parser.error(
            f"--reference {args.reference!r} is not a stylegan2-ada-pytorch checkout (no training/augment.py)"
        )
    device = torch.device("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.dry_run:
        parser.error("no CUDA device: run on a GPU machine, or pass --dry-run to check the script on the CPU")
    sizes = Sizes.dry_run() if args.dry_run else Sizes()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for section in args.sections:
        start = time.perf_counter()
        rows += RUNNERS[section](args, sizes, device)
        seconds[section] = time.perf_counter() - start
        print(f"{section}: {seconds[section]:.0f} s", flush=True)
    env = environment(device)
    args.out.mkdir(parents=True, exist_ok=True)
    report = markdown(rows, env, args, seconds)
    (args.out / "gpu_report.md").write_text(report)
    payload = {
        "environment": env,
        "dry_run": args.dry_run,
        "seconds": seconds,
        "rows": [asdict(r) for r in rows],
    }
    (args.out / "gpu_report.json").write_text(json.dumps(payload, indent=1))
    print(report)
    return rows


if __name__ == "__main__":
    main()
