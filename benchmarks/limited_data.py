"""Limited-data proof: the papers' central claims, side by side at one budget, honestly reported.

GAN arms (same data, seed, kimg, metric): no augmentation, ADA (adaptive p), fixed p = 0.2 (bgc)
and ScaleGAN. Likelihood arms: a Sparse Transformer without augmentation vs rotation DistAug, val
bits-per-dim at an equal number of steps.

The metric is FID/KID with Inception when ``--inception-weights`` names the weights file;
otherwise (as on machines without it) the same computation on the penultimate features of a small
classifier trained on the real training split, labelled "classifier-FID"/"classifier-KID": those
numbers compare the arms of one run, never published FIDs.

Examples:
    # CPU, minutes, no data needed (the digits bundled with scikit-learn):
    python benchmarks/limited_data.py --quick --out runs/limited_data_quick
    # a real run on a GPU, on the 10k-image CIFAR-10 subset:
    python benchmarks/limited_data.py --data /path/to/train-10k-jpeg.zip --val-data /path/to/test-jpeg.zip \
        --kimg 500 --eval-kimg 50 --out runs/limited_data
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the setting modules beside this script

import overfit  # noqa: E402  (beside this script)
from overfit_data import DEFAULT_CIFAR_ROOT  # noqa: E402

from lightning_genaug.augment import DistAugTransforms
from lightning_genaug.callbacks.generative_metrics import GenerativeMetrics
from lightning_genaug.data import CIFAR10DataModule, DigitsDataModule, ImageDataModule
from lightning_genaug.data.base import InMemoryImageDataModule
from lightning_genaug.images import from_uint8
from lightning_genaug.metrics import KID, InceptionV3Compat, RealData
from lightning_genaug.metrics.trained_extractor import classifier_accuracy, train_classifier_features
from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug

log = logging.getLogger("limited_data")

GAN_ARMS = ("no-augmentation", "ada", "fixed-p0.2", "scalegan")
OVERFIT_SETTINGS = ("digits-overfit", "cifar-overfit")
# The CIFAR-10 JPEG zips beside a checkout of this repository (a user passes --data-root).
CIFAR_ZIPS = ("train-10k-jpeg.zip", "test-jpeg.zip")
DISTAUG_ARMS = ("no-augmentation", "rotation-distaug")


@dataclass
class ArmResult:
    """What one arm produced: its metric curve, its p curve, the final figures and the wall time."""

    arm: str
    history: list[dict[str, float]] = field(default_factory=list)
    p_history: list[tuple[float, float]] = field(default_factory=list)
    final: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class MetricRecorder(pl.Callback):
    """Copies each new ``metrics/*`` value and the augmentation p, with the kimg they belong to."""

    def __init__(self, result: ArmResult, p_every_n_batches: int = 4) -> None:
        self.result = result
        self.p_every_n_batches = p_every_n_batches
        self._last_seen: dict[str, float] = {}

    def _kimg(self, pl_module: pl.LightningModule) -> float:
        return float(pl_module.cur_nimg) / 1000.0

    def _record_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        current = {
            key.split("/", 1)[1]: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("metrics/")
        }
        if current and current != self._last_seen:
            self._last_seen = current
            self.result.history.append({"kimg": self._kimg(pl_module), **current})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._record_metrics(trainer, pl_module)
        pipe = getattr(pl_module, "augment_pipe", None)
        if pipe is not None and batch_idx % self.p_every_n_batches == 0:
            self.result.p_history.append((self._kimg(pl_module), float(pipe.p)))

    def on_fit_end(self, trainer, pl_module) -> None:
        self._record_metrics(trainer, pl_module)


def build_datamodule(args: argparse.Namespace) -> InMemoryImageDataModule:
    """The limited training set: the digits in ``--quick`` mode, else the images at ``--data``."""
    common = {
        "batch_size": args.batch_size,
        "max_images": args.max_images,
        "xflip": args.xflip,
        "seed": args.seed,
    }
    if args.data is None:
        return DigitsDataModule(resolution=args.resolution, channels=3, **common)
    return CIFAR10DataModule(args.data, **common)


def real_tensors(datamodule: InMemoryImageDataModule) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All training images as float ``(N, C, H, W)`` in [-1, 1], and their labels."""
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    return from_uint8(dataset.images), dataset.labels


def build_extractor(
    args: argparse.Namespace, images: torch.Tensor, labels: torch.Tensor | None
) -> tuple[Any, str]:
    """Inception from a local file, or a classifier trained on the real training split."""
    if args.inception_weights is not None:
        return InceptionV3Compat(args.inception_weights), "Inception FID/KID"
    if labels is None:
        raise ValueError("The classifier feature extractor needs labelled data; pass --inception-weights.")
    started = time.perf_counter()
    extractor = train_classifier_features(
        images, labels, steps=args.extractor_steps, width=args.extractor_width, seed=args.seed
    )
    accuracy = classifier_accuracy(extractor, images, labels)
    log.info("classifier extractor: %.0f s, training accuracy %.3f", time.perf_counter() - started, accuracy)
    return (
        extractor,
        f"classifier-FID/KID (penultimate layer of a CNN trained on the real split, acc {accuracy:.2f})",
    )


def build_gan_arm(arm: str, args: argparse.Namespace) -> tuple[pl.LightningModule, list[pl.Callback]]:
    """The module and the extra callbacks of one GAN arm; everything else is shared."""
    module_kwargs = {"config": args.config, "max_kimg": args.kimg, "autocast_bf16": args.bf16}
    return overfit.build_gan_arm(arm, module_kwargs, args.ada_speed_kimg)


def run_gan_arm(
    arm: str, args: argparse.Namespace, extractor: Any, real_images: torch.Tensor, out: Path
) -> ArmResult:
    """Train one arm for ``args.kimg`` and evaluate it every ``args.eval_kimg``."""
    pl.seed_everything(args.seed, workers=True)
    result = ArmResult(arm)
    module, extra_callbacks = build_gan_arm(arm, args)
    metrics = GenerativeMetrics(
        metrics=("fid", KID(subsets=args.kid_subsets, subset_size=min(1000, args.num_gen, len(real_images)))),
        num_gen=args.num_gen,
        every_n_batches=max(1, math.ceil(args.eval_kimg * 1000 / args.batch_size)),
        feature_extractor=extractor,
        real=RealData(
            real_images,
            fingerprint=f"limited-data-{args.data or 'digits'}-{args.max_images}-{args.seed}",
            cache_dir=out / "cache",
        ),
        progress_bar=False,
    )
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_epochs=-1,
        logger=pl.loggers.CSVLogger(out, name=arm),
        callbacks=[*extra_callbacks, metrics, MetricRecorder(result)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=False,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=build_datamodule(args))
    result.seconds = time.perf_counter() - started
    if result.history:
        result.final = {k: v for k, v in result.history[-1].items()}
    pipe = getattr(module, "augment_pipe", None)
    if pipe is not None:
        result.final["p"] = float(pipe.p)
    return result


def distaug_datamodules(args: argparse.Namespace) -> InMemoryImageDataModule:
    """Data for the likelihood arms (small images: the sequence is C*H*W sub-pixels)."""
    common = {"batch_size": args.distaug_batch_size, "val_fraction": 0.1, "seed": args.seed}
    if args.data is None:
        return DigitsDataModule(
            resolution=args.distaug_resolution, channels=1, max_images=args.max_images, **common
        )
    return ImageDataModule(
        args.data,
        resolution=args.distaug_resolution,
        resize_mode="resize",
        max_images=args.max_images,
        **common,
    )


def run_distaug_arm(arm: str, args: argparse.Namespace, out: Path) -> ArmResult:
    """Train a Sparse Transformer for ``args.distaug_steps`` steps; record val bits-per-dim."""
    pl.seed_everything(args.seed, workers=True)
    result = ArmResult(arm)
    augment = None if arm == "no-augmentation" else DistAugTransforms(["rotation"])
    module = SparseTransformerDistAug(
        config=args.distaug_config,
        config_overrides={
            "schedule_steps": args.distaug_steps,
            "warmup_steps": min(100, args.distaug_steps // 10),
        },
        augment=augment,
    )
    trainer = pl.Trainer(
        accelerator=args.accelerator,
        devices=1,
        max_steps=args.distaug_steps,
        val_check_interval=max(1, args.distaug_steps // 4),
        check_val_every_n_epoch=None,
        logger=pl.loggers.CSVLogger(out, name=f"distaug-{arm}"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    started = time.perf_counter()
    datamodule = distaug_datamodules(args)
    trainer.fit(module, datamodule=datamodule)
    result.seconds = time.perf_counter() - started
    result.final["val_bpd"] = float(
        trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val/bpd"]
    )
    result.history = read_csv_metric(Path(trainer.logger.log_dir) / "metrics.csv", "val/bpd", "step")
    return result


def read_csv_metric(path: Path, metric: str, x: str) -> list[dict[str, float]]:
    """The rows of a CSVLogger file that hold ``metric``, as ``{x, metric}`` dicts."""
    import csv

    rows = []
    with path.open() as handle:
        for row in csv.DictReader(handle):
            if row.get(metric):
                rows.append({x: float(row[x]), metric: float(row[metric])})
    return rows


def line_plot(series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, path: Path) -> Path:
    """Save one line per named series of ``(x, y)`` points as a PNG; empty series are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, points in series.items():
        if points:
            ax.plot(*zip(*points, strict=True), marker="o" if len(points) < 30 else None, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_results(gan: list[ArmResult], distaug: list[ArmResult], metric_label: str, out: Path) -> list[Path]:
    """PNG plots: metric vs kimg per GAN arm, p vs kimg, and val bpd vs step per DistAug arm."""
    extractor = metric_label.split(" ")[0]
    paths = [
        line_plot(
            {r.arm: [(h["kimg"], h[metric]) for h in r.history if metric in h] for r in gan},
            "kimg",
            f"{metric.upper()} ({extractor})",
            out / f"{metric}_vs_kimg.png",
        )
        for metric in ("fid", "kid")
    ]
    paths.append(
        line_plot({r.arm: r.p_history for r in gan}, "kimg", "augmentation p", out / "p_vs_kimg.png")
    )
    if distaug:
        series = {r.arm: [(h["step"], h["val/bpd"]) for h in r.history] for r in distaug}
        paths.append(line_plot(series, "step", "val bits per dim", out / "distaug_val_bpd.png"))
    return paths


def markdown_report(gan: list[ArmResult], distaug: list[ArmResult], metric_label: str, args) -> str:
    """The results tables as Markdown."""
    lines = [f"Metric: {metric_label}. Budget: {args.kimg} kimg per GAN arm, config `{args.config}`.", ""]
    lines += ["| arm | FID | KID | final p | wall s |", "| --- | --- | --- | --- | --- |"]
    for result in gan:
        final = result.final
        p = f"{final['p']:.3f}" if "p" in final else "-"
        lines.append(
            f"| {result.arm} | {final.get('fid', math.nan):.4g} | {final.get('kid', math.nan):.3g} | {p} | "
            f"{result.seconds:.0f} |"
        )
    if distaug:
        lines += ["", f"Sparse Transformer `{args.distaug_config}`, {args.distaug_steps} steps per arm:", ""]
        lines += ["| arm | val bpd | wall s |", "| --- | --- | --- |"]
        lines += [f"| {r.arm} | {r.final['val_bpd']:.3f} | {r.seconds:.0f} |" for r in distaug]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", help="CIFAR-10 path (pickles, folder or zip); omit with --quick (digits)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes on the bundled digits: minutes on a CPU"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/limited_data"))
    parser.add_argument(
        "--arms", nargs="*", default=None, help="GAN arms (default: the setting's; none: no GAN arm)"
    )
    parser.add_argument(
        "--distaug-arms",
        nargs="*",
        default=None,
        help="DistAug arms (default: all of the setting's; none: none)",
    )
    parser.add_argument("--config", default="cifar", help="StyleGAN2 config")
    parser.add_argument("--kimg", type=float, default=500.0)
    parser.add_argument("--eval-kimg", type=float, default=50.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--xflip", action="store_true")
    parser.add_argument("--resolution", type=int, default=32, help="digits resolution in --quick mode")
    parser.add_argument("--num-gen", type=int, default=10_000, help="generated images per evaluation")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--ada-speed-kimg", type=float, default=500.0)
    parser.add_argument("--inception-weights", help="local pt_inception-2015-12-05 weights file")
    parser.add_argument("--extractor-steps", type=int, default=3000)
    parser.add_argument("--extractor-width", type=int, default=32)
    parser.add_argument("--distaug-config", default="tiny")
    parser.add_argument("--distaug-resolution", type=int, default=8)
    parser.add_argument("--distaug-steps", type=int, default=2000)
    parser.add_argument("--distaug-batch-size", type=int, default=32)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--setting",
        choices=("default", *OVERFIT_SETTINGS),
        default="default",
        help="digits-overfit / cifar-overfit: the regimes in which the un-augmented GAN over-fits "
        "(benchmarks/overfit.py); every other option but --quick, --out, --jobs, --plots, --arms, "
        "--distaug-arms, --seeds, --until-kimg, --conditional, --data-root and --inception-weights is "
        "then ignored",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=DEFAULT_CIFAR_ROOT,
        help="cifar-overfit: folder holding train-10k-jpeg.zip and test-jpeg.zip (default: %(default)s)",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="digits-overfit: parallel processes (1 thread each)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="overfit settings: run nothing; tables and plots of the jobs finished so far",
    )
    parser.add_argument("--plots", type=Path, default=None, help="digits-overfit: folder for the PNG plots")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="overfit settings: the seeds (default: 0 1 2)"
    )
    parser.add_argument(
        "--until-kimg",
        type=float,
        default=None,
        help="overfit settings: train the GAN jobs to this kimg (default: the setting's); a later run with "
        "a larger value extends them from their checkpoints",
    )
    parser.add_argument(
        "--conditional",
        action="store_true",
        help="digits-overfit: class-conditional GAN (default: unconditional)",
    )
    args = parser.parse_args(argv)
    if args.setting in OVERFIT_SETTINGS:
        gan_arms, distaug_arms = overfit.OVERFIT_GAN_ARMS, overfit.OVERFIT_DISTAUG_ARMS
        if args.setting == "cifar-overfit":  # fewer default arms: each costs ~4x a digits arm
            default_gan, default_distaug = overfit.CIFAR_GAN_ARMS, overfit.CIFAR_DISTAUG_ARMS
        else:
            default_gan, default_distaug = overfit.DIGITS_GAN_ARMS, distaug_arms
    else:
        gan_arms, distaug_arms = GAN_ARMS, DISTAUG_ARMS
        default_gan, default_distaug = gan_arms, distaug_arms
    for option, chosen, valid in (
        ("--arms", args.arms, gan_arms),
        ("--distaug-arms", args.distaug_arms, distaug_arms),
    ):
        unknown = [arm for arm in chosen or () if arm not in valid]
        if unknown:
            parser.error(
                f"{option}: unknown arms {unknown} for --setting {args.setting}; choose from {valid}"
            )
    args.arms = list(default_gan) if args.arms is None else args.arms
    args.distaug_arms = list(default_distaug) if args.distaug_arms is None else args.distaug_arms
    if args.setting == "cifar-overfit" and not args.report_only:
        missing = [name for name in CIFAR_ZIPS if not (args.data_root / name).is_file()]
        if missing:
            parser.error(
                f"--data-root {args.data_root} has no {' or '.join(missing)}; name the folder holding both"
            )
    if args.setting in OVERFIT_SETTINGS:
        return args
    if args.quick:
        defaults = {
            "config": "tiny",
            "kimg": 6.0,
            "eval_kimg": 2.0,
            "batch_size": 32,
            "resolution": 16,
            "num_gen": 500,
            "kid_subsets": 20,
            "ada_speed_kimg": 5.0,
            "extractor_steps": 400,
            "extractor_width": 16,
            "distaug_steps": 60,
            "distaug_batch_size": 16,
            "max_images": 500,
        }
        for key, value in defaults.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    elif args.data is None:
        parser.error("--data is required unless --quick is given")
    return args


def run_overfit_setting(args: argparse.Namespace) -> dict[str, Any]:
    """``--setting digits-overfit|cifar-overfit``: every arm x seed in parallel processes, resumable."""
    if args.setting == "cifar-overfit":
        setting = overfit.cifar_overfit_setting(args.data_root, quick=args.quick)
    else:
        setting = overfit.OverfitSetting().quick() if args.quick else overfit.OverfitSetting()
    if args.inception_weights is not None:
        setting = replace(setting, inception_weights=args.inception_weights)
    if args.jobs is not None:
        setting = replace(setting, jobs=args.jobs)
    setting = replace(
        setting,
        conditional=args.conditional,
        gan_arms=tuple(args.arms),
        distaug_arms=tuple(args.distaug_arms),
        seeds=setting.seeds if args.seeds is None else tuple(args.seeds),
        kimg=setting.kimg if args.until_kimg is None else args.until_kimg,
    )
    summary = overfit.run_overfit(setting, args.out, args.plots, report_only=args.report_only)
    print((args.out / "results.md").read_text())
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.setting in OVERFIT_SETTINGS:
        return run_overfit_setting(args)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    images, labels = real_tensors(build_datamodule(args))
    extractor, metric_label = build_extractor(args, images, labels)
    gan_results = [run_gan_arm(arm, args, extractor, images, out) for arm in args.arms]
    distaug_results = [run_distaug_arm(arm, args, out) for arm in args.distaug_arms]
    plots = plot_results(gan_results, distaug_results, metric_label, out)
    report = markdown_report(gan_results, distaug_results, metric_label, args)
    (out / "results.md").write_text(report + "\n")
    summary = {
        "metric": metric_label,
        "args": {k: str(v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "gan": [asdict(r) for r in gan_results],
        "distaug": [asdict(r) for r in distaug_results],
        "plots": [str(p) for p in plots],
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(report)
    return summary


if __name__ == "__main__":
    main()
