"""ADA's controller, ours vs the reference's own training loop, on the same 200 CIFAR-10 photographs.

Both sides train the ``cifar-overfit`` setting's GAN (the ``cifar`` preset narrowed to 64 channels,
batch 32, unconditional, R1 gamma 0.01 every 16 batches, no path length, no style mixing) with the
``bgc`` pipe and the controller at target 0.6, adjusting every 4 batches, p able to move by 1 in
``--ada-kimg`` kimg (20, the setting's speed). They record, every 1,024 images (the reference's tick at
``kimg_per_tick=1``): p at the end of the tick and r_t = E[sign(D(augmented reals))] over the tick.

- ``--side ours``: ``StyleGAN2ADA`` + ``AdaptiveAugmentation`` through ``Trainer.fit``, exactly as the
  ``ada`` arm of ``benchmarks/limited_data.py --setting cifar-overfit`` builds them. Resumable: a
  checkpoint every 5 kimg (written atomically) holds the recorded rows too.
- ``--side reference``: NVlabs/stylegan2-ada-pytorch's ``training_loop.training_loop`` itself, imported
  from a copy of ``--reference PATH`` patched to run on the CPU (the copy is made in ``--out`` and never
  leaves it: the reference is under a non-commercial licence). float32 (its ``--fp32``: no float16
  layers, no activation clamp). The 200 photographs are written as a dataset zip in its layout. Its
  ``stats.jsonl`` is converted to the same rows. Not resumable: the reference's own resume reloads
  the networks only (not Adam's state, p or the data order), which would change the trajectory; an
  interrupted reference job starts again.
- ``--report``: the table and the plot of every finished job in ``--out``.

Usage (one thread per job; four jobs fit two cores in about 2 hours)::

    python benchmarks/ada_parity.py --side reference --seed 0 --reference ../stylegan2-ada-pytorch \
        --out runs/parity
    python benchmarks/ada_parity.py --side ours --seed 0 --out runs/parity
    python benchmarks/ada_parity.py --report --out runs/parity --plot docs/img/results/cifar/parity.png
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overfit import build_overfit_gan, cifar_overfit_setting  # noqa: E402
from overfit_data import DEFAULT_CIFAR_ROOT, TensorDataModule, load_dataset, training_subset  # noqa: E402
from overfit_probe import save_atomically  # noqa: E402
from train_step import REFERENCE_BGC  # noqa: E402

from lightning_genaug.callbacks import AdaptiveAugmentation, training_progress  # noqa: E402

TICK_IMAGES = 1024  # the reference's tick at kimg_per_tick=1 and batch 32: 32 batches
CHECKPOINT_KIMG = 5.0

# Source lines of the reference that assume CUDA (or the torch of 2021), and what the CPU copy runs
# instead. Each must be found (a reference that changed fails here, not half-way through a run).
LOOP = "training/training_loop.py"
CPU_PATCHES = (
    (LOOP, "device = torch.device('cuda', rank)", "device = torch.device('cpu')"),
    (LOOP, "torch.cuda.Event(enable_timing=True)", "None"),
    (LOOP, ".pin_memory()", ""),
    (LOOP, "torch.cuda.max_memory_allocated(device) / 2**30", "0.0"),
    (LOOP, "torch.cuda.reset_peak_memory_stats()", "pass"),
    # Its gradfix for grid_sample supports torch 1.7-1.9 only and warns at every call, then falls back.
    (LOOP, "grid_sample_gradfix.enabled = True", "grid_sample_gradfix.enabled = False"),
    # torch's Sampler.__init__ no longer takes the data source.
    ("torch_utils/misc.py", "super().__init__(dataset)", "super().__init__()"),
)


def parity_setting(data_root: str, kimg: float, ada_kimg: float):
    """The ``cifar-overfit`` setting at ``kimg`` with p able to move by 1 in ``ada_kimg`` kimg."""
    return replace(cifar_overfit_setting(data_root), kimg=kimg, ada_speed_kimg=ada_kimg)


def training_photographs(setting) -> tuple[torch.Tensor, torch.Tensor]:
    """The setting's 200 training photographs (uint8 ``(200, 3, 32, 32)``) and their labels."""
    images, labels, _, _ = load_dataset(setting.dataset, setting.data_root, setting.resolution)
    train_index, _ = training_subset(setting.train_images, len(images))
    return images[train_index], labels[train_index]


def rows_path(out: Path, side: str, seed: int) -> Path:
    return out / f"{side}-seed{seed}.json"


def write_json_atomically(path: Path, data: Any) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1))
    os.replace(partial, path)


# ---------------------------------------------------------------------------------------------- ours
class TickRecorder(pl.Callback):
    """Every ``TICK_IMAGES`` images: p, the mean of the controller's r_t readings in the tick, kimg.

    Its rows are part of the checkpoint, so a resumed job continues the same record.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []
        self._readings: list[float] = []
        self._tick_start = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        (controller,) = [c for c in trainer.callbacks if isinstance(c, AdaptiveAugmentation)]
        if training_progress(trainer).batches % controller.every_n_batches == 0:
            self._readings.append(controller.rt)
        nimg = int(pl_module.cur_nimg)
        if nimg - self._tick_start >= TICK_IMAGES:
            self.rows.append({"kimg": nimg / 1000, "p": controller.p, "rt": statistics.fmean(self._readings)})
            self._readings, self._tick_start = [], nimg
            write_json_atomically(self.path, {"side": "ours", "rows": self.rows})

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "readings": self._readings, "tick_start": self._tick_start}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = state_dict["rows"]
        self._readings = state_dict["readings"]
        self._tick_start = state_dict["tick_start"]


class PeriodicCheckpoint(pl.Callback):
    """A checkpoint at every ``every_kimg`` (atomic), so an interrupted job continues where it was."""

    def __init__(self, path: Path, every_kimg: float) -> None:
        self.path, self.every_images = path, int(every_kimg * 1000)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        nimg, batch_size = int(pl_module.cur_nimg), batch[0].shape[0]
        if nimg // self.every_images != (nimg - batch_size) // self.every_images:
            save_atomically(trainer, self.path)


def run_ours(args: argparse.Namespace) -> None:
    setting = parity_setting(args.data_root, args.kimg, args.ada_kimg)
    images, labels = training_photographs(setting)
    pl.seed_everything(args.seed, workers=True)
    module, callbacks = build_overfit_gan("ada", setting)
    checkpoint = args.out / "checkpoints" / f"ours-seed{args.seed}.ckpt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=-1,
        logger=False,
        callbacks=[
            *callbacks,
            TickRecorder(rows_path(args.out, "ours", args.seed)),
            PeriodicCheckpoint(checkpoint, CHECKPOINT_KIMG),
        ],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(
        module,
        datamodule=TensorDataModule(images, labels, setting.batch_size),
        ckpt_path=checkpoint if checkpoint.exists() else None,
    )
    result = json.loads(rows_path(args.out, "ours", args.seed).read_text())
    result["seconds_this_invocation"] = time.perf_counter() - started
    write_json_atomically(rows_path(args.out, "ours", args.seed), result)


# ----------------------------------------------------------------------------------------- reference
def cpu_copy_of_reference(reference: Path, into: Path) -> Path:
    """A copy of the reference's importable code with the CUDA-only lines of its training loop replaced."""
    if not (reference / "training" / "training_loop.py").is_file():
        raise FileNotFoundError(
            f"{str(reference)!r} is not a stylegan2-ada-pytorch checkout (no training/training_loop.py)."
        )
    if into.exists():
        shutil.rmtree(into)
    for name in ("dnnlib", "torch_utils", "training", "metrics"):
        shutil.copytree(reference / name, into / name)
    shutil.copy(reference / "legacy.py", into / "legacy.py")
    for name, old, new in CPU_PATCHES:
        source = (into / name).read_text()
        if old not in source:
            raise RuntimeError(f"The reference's {name} has no line with {old!r} to patch for the CPU.")
        (into / name).write_text(source.replace(old, new))
    return into


def write_dataset_zip(images: torch.Tensor, path: Path) -> None:
    """uint8 ``(N, 3, R, R)`` images as the PNG zip the reference's ``ImageFolderDataset`` reads."""
    from PIL import Image

    with zipfile.ZipFile(path, "w") as archive:
        for index, image in enumerate(images):
            buffer = io.BytesIO()
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
            archive.writestr(f"{index:05d}.png", buffer.getvalue())


def reference_kwargs(setting, dataset: Path, seed: int, ada_kimg: float, run_dir: Path) -> dict[str, Any]:
    """``training_loop`` arguments: train.py's ``cifar`` config with the setting's width, batch and EMA."""
    from dnnlib import EasyDict

    overrides = dict(setting.config_overrides)
    width = dict(channel_base=int(overrides["channel_base"]), channel_max=int(overrides["channel_max"]))
    fp32 = dict(num_fp16_res=0, conv_clamp=None)
    adam = EasyDict(class_name="torch.optim.Adam", lr=0.0025, betas=[0, 0.99], eps=1e-8)
    return dict(
        run_dir=str(run_dir),
        training_set_kwargs=EasyDict(
            class_name="training.dataset.ImageFolderDataset",
            path=str(dataset),
            use_labels=False,
            max_size=None,
            xflip=False,
            resolution=setting.resolution,
        ),
        data_loader_kwargs=EasyDict(pin_memory=False, num_workers=0),
        G_kwargs=EasyDict(
            class_name="training.networks.Generator",
            z_dim=512,
            w_dim=512,
            mapping_kwargs=EasyDict(num_layers=2),
            synthesis_kwargs=EasyDict(**width, **fp32),
        ),
        D_kwargs=EasyDict(
            class_name="training.networks.Discriminator",
            architecture="orig",
            block_kwargs=EasyDict(),
            mapping_kwargs=EasyDict(),
            epilogue_kwargs=EasyDict(mbstd_group_size=32),
            **width,
            **fp32,
        ),
        G_opt_kwargs=adam,
        D_opt_kwargs=EasyDict(adam),
        augment_kwargs=EasyDict(class_name="training.augment.AugmentPipe", **REFERENCE_BGC),
        loss_kwargs=EasyDict(
            class_name="training.loss.StyleGAN2Loss", r1_gamma=0.01, style_mixing_prob=0, pl_weight=0
        ),
        metrics=[],
        random_seed=seed,
        num_gpus=1,
        rank=0,
        batch_size=setting.batch_size,
        batch_gpu=setting.batch_size,
        ema_kimg=setting.ema_kimg,
        ema_rampup=setting.ema_rampup,
        G_reg_interval=4,
        D_reg_interval=16,
        augment_p=0,
        ada_target=0.6,
        ada_interval=4,
        ada_kimg=ada_kimg,
        total_kimg=setting.kimg,
        kimg_per_tick=TICK_IMAGES / 1000,
        image_snapshot_ticks=20,
        network_snapshot_ticks=None,
    )


def reference_rows(stats_jsonl: Path) -> list[dict[str, float]]:
    """The reference's ticks as rows: kimg, p at the tick's end, mean sign of D on augmented reals."""
    rows = []
    for line in stats_jsonl.read_text().splitlines():
        stats = json.loads(line)
        if stats["Progress/tick"]["mean"] == 0:
            continue  # tick 0 closes after the first batch
        rows.append(
            {
                "kimg": stats["Progress/kimg"]["mean"],
                "p": stats["Progress/augment"]["mean"],
                "rt": stats["Loss/signs/real"]["mean"],
            }
        )
    return rows


def run_reference(args: argparse.Namespace) -> None:
    if args.reference is None:
        raise SystemExit("--side reference needs --reference PATH (a stylegan2-ada-pytorch checkout).")
    setting = parity_setting(args.data_root, args.kimg, args.ada_kimg)
    images, _ = training_photographs(setting)
    scratch = args.out / "reference"
    scratch.mkdir(parents=True, exist_ok=True)
    dataset = scratch / "photographs.zip"
    if not dataset.exists():
        write_dataset_zip(images, dataset)
    source = cpu_copy_of_reference(Path(args.reference).resolve(), scratch / f"src-seed{args.seed}")
    sys.path.insert(0, str(source))
    from training import training_loop

    run_dir = scratch / f"run-seed{args.seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir()
    started = time.perf_counter()
    training_loop.training_loop(**reference_kwargs(setting, dataset, args.seed, args.ada_kimg, run_dir))
    write_json_atomically(
        rows_path(args.out, "reference", args.seed),
        {
            "side": "reference",
            "rows": reference_rows(run_dir / "stats.jsonl"),
            "seconds_this_invocation": time.perf_counter() - started,
        },
    )


# -------------------------------------------------------------------------------------------- report
def load_runs(out: Path) -> dict[str, dict[int, list[dict[str, float]]]]:
    """Every job's rows by side and seed; a reference job still running is read from its ``stats.jsonl``."""
    runs: dict[str, dict[int, list[dict[str, float]]]] = {"ours": {}, "reference": {}}
    for side in runs:
        for path in sorted(out.glob(f"{side}-seed*.json")):
            runs[side][int(path.stem.split("seed")[1])] = json.loads(path.read_text())["rows"]
    for stats in sorted((out / "reference").glob("run-seed*/stats.jsonl")):
        seed = int(stats.parent.name.split("seed")[1])
        if seed not in runs["reference"]:
            runs["reference"][seed] = reference_rows(stats)
    return runs


def window_means(rows: list[dict[str, float]], key: str, start: float, stop: float) -> float:
    values = [row[key] for row in rows if start < row["kimg"] <= stop]
    return statistics.fmean(values) if values else float("nan")


def report(out: Path, plot: Path | None) -> str:
    """A markdown table of p and r_t per 10-kimg window, per side (mean ± sd over seeds), and a plot."""
    runs = load_runs(out)
    last = min((rows[-1]["kimg"] for side in runs.values() for rows in side.values()), default=0.0)
    windows = [(start, min(start + 10.0, last)) for start in range(0, int(last), 10)]
    lines = [
        "| kimg | p, ours | p, reference | r_t, ours | r_t, reference |",
        "| --- | --- | --- | --- | --- |",
    ]

    def cell(side: str, key: str, start: float, stop: float) -> str:
        values = [window_means(rows, key, start, stop) for rows in runs[side].values()]
        if not values:
            return "-"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.3f} ± {spread:.3f}"

    for start, stop in windows:
        cells = [cell(side, key, start, stop) for key in ("p", "rt") for side in ("ours", "reference")]
        lines.append(f"| {start:.0f}-{stop:.0f} | " + " | ".join(cells) + " |")
    seeds = {side: sorted(found) for side, found in runs.items()}
    lines.append("")
    lines.append(f"Seeds: ours {seeds['ours']}, reference {seeds['reference']}; up to {last:.1f} kimg.")
    if plot is not None:
        draw(runs, plot)
    return "\n".join(lines)


def draw(runs: dict[str, dict[int, list[dict[str, float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = {"ours": "tab:blue", "reference": "tab:orange"}
    for side, by_seed in runs.items():
        for index, (_, rows) in enumerate(sorted(by_seed.items())):
            kimg = [row["kimg"] for row in rows]
            label = side if index == 0 else None
            axes[0].plot(kimg, [row["p"] for row in rows], color=colours[side], alpha=0.8, label=label)
            axes[1].plot(
                kimg, [row["rt"] for row in rows], color=colours[side], alpha=0.5, lw=0.8, label=label
            )
    axes[0].set(xlabel="kimg", ylabel="p", title="augmentation strength p")
    axes[1].axhline(0.6, color="black", lw=0.8, ls="--")
    axes[1].set(xlabel="kimg", ylabel="r_t (per 1,024 images)", title="r_t = E[sign(D(augmented reals))]")
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--side", choices=("ours", "reference"))
    parser.add_argument("--report", action="store_true", help="tabulate and plot the finished jobs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kimg", type=float, default=60.0)
    parser.add_argument("--ada-kimg", type=float, default=20.0, help="kimg for p to move by 1 (both sides)")
    parser.add_argument("--reference", help="path of an NVlabs/stylegan2-ada-pytorch checkout")
    parser.add_argument("--data-root", default=str(DEFAULT_CIFAR_ROOT))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    if not args.report and args.side is None:
        parser.error("give --side ours|reference, or --report")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(report(args.out, args.plot))
        return
    torch.set_num_threads(1)
    run_ours(args) if args.side == "ours" else run_reference(args)


if __name__ == "__main__":
    main()
