"""The ``digits-overfit`` setting of ``limited_data.py``: a regime where the un-augmented GAN over-fits.

A small training subset of scikit-learn's digits (50 images at 16x16 by default) is shown to every
arm for the same number of images, several seeds each. At fixed kimg the probe measures what the
ADA paper's Figure 1 shows:

- classifier-FID of generated images against the **full** set of 1,797 digits (which the model
  mostly never saw) and against the **training subset** (memorisation);
- D's mean raw output on the training reals and on held-out reals (both un-augmented): their gap
  opens when D memorises the training set;
- r_t = E[sign(D(A(x)))] over the training reals as D sees them in training (for every arm, also
  those without augmentation), and the augmentation strength p.

The likelihood half trains the Sparse Transformer on a small split of 8x8 digits with a constant
learning rate, without augmentation and with DistAug, and records train and val bits per dim (both on
the identity transform, EMA weights).

Jobs (arm x seed) run in separate processes, one thread each; each writes one JSON file, so an
interrupted experiment resumes where it stopped. The parent aggregates them into tables and plots.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from operator import itemgetter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_genaug.images import from_uint8, make_grid, save_png
from lightning_genaug.metrics.extractors import extract_features
from lightning_genaug.metrics.functional import frechet_distance, gaussian_statistics
from lightning_genaug.metrics.trained_extractor import (
    ClassifierFeatures,
    classifier_accuracy,
    train_classifier_features,
)

log = logging.getLogger("limited_data.overfit")

OVERFIT_GAN_ARMS = ("no-augmentation", "ada", "fixed-p0.2", "diffaugment", "scalegan")
OVERFIT_DISTAUG_ARMS = ("no-augmentation", "rotation", "rotation+transposition")


@dataclass(frozen=True)
class OverfitSetting:
    """Every number of the experiment; ``quick()`` shrinks it to a CI smoke run."""

    # The GAN's training subset (the rest of the 1,797 digits is held out). Measured: with 100 digits
    # (class-conditional) no arm's FID turned back up within 180 kimg; with 50, unconditional, the
    # un-augmented FID bottoms out near 100 kimg and climbs back while D's train/held-out gap opens.
    train_images: int = 50
    resolution: int = 16
    config: str = "tiny"
    batch_size: int = 32
    # Unconditional, as in the ADA paper's small-data figures. With the digit labels (``True``) the
    # generator did not degrade within 200 kimg although D memorised as much (3 seeds per arm).
    conditional: bool = False
    kimg: float = 200.0
    eval_kimg: float = 10.0
    # ``tiny``'s EMA half-life is 10 images (G_ema = G): a pilot's FID then jumped 2x between
    # evaluations. A 5 kimg half-life (with the reference's ramp-up) makes the curves readable.
    ema_kimg: float = 5.0
    ema_rampup: float = 0.05
    num_gen: int = 1797  # as many generated images as there are real digits
    ada_speed_kimg: float = 10.0  # p may go 0 -> 1 in 10 kimg (a twentieth of the run)
    fixed_p: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2)
    gan_arms: tuple[str, ...] = OVERFIT_GAN_ARMS
    extractor_steps: int = 2000
    extractor_width: int = 32
    # DistAug: 150 training digits (8x8 grey) and 150 validation digits, constant learning rate.
    distaug_arms: tuple[str, ...] = OVERFIT_DISTAUG_ARMS
    distaug_images: int = 300
    distaug_epochs: int = 250  # no augmentation bottoms out near epoch 70 at this size, DistAug later
    distaug_val_every_n_epochs: int = 5
    distaug_lr: float = 2e-3
    jobs: int = 2

    def quick(self) -> OverfitSetting:
        """Every arm and two seeds, at sizes that run in about a minute (the CI check)."""
        return replace(
            self,
            kimg=0.5,
            eval_kimg=0.25,
            num_gen=64,
            seeds=(0, 1),
            extractor_steps=30,
            extractor_width=8,
            distaug_images=64,
            distaug_epochs=2,
            distaug_val_every_n_epochs=1,
            jobs=1,
        )


# ----------------------------------------------------------------------------------------------- data
def digits(resolution: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 ``(N, C, R, R)`` and their labels, as ``DigitsDataModule`` makes them."""
    from lightning_genaug.data import DigitsDataModule

    return DigitsDataModule(resolution=resolution, channels=channels).load()


def training_subset(count: int, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training subset and of the held-out rest (a fixed draw, shared by all jobs)."""
    order = torch.randperm(total, generator=torch.Generator().manual_seed(0))
    return order[:count].sort().values, order[count:].sort().values


class TensorDataModule(pl.LightningDataModule):
    """Batches ``(images in [-1, 1], labels)`` of a fixed uint8 tensor; ``image_shape`` for the module."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.image_shape = tuple(images.shape[1:])
        self.num_classes = int(labels.max()) + 1

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        dataset = torch.utils.data.TensorDataset(from_uint8(self.images), self.labels)
        return torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=True, drop_last=True)


# ----------------------------------------------------------------------------------------- GAN probe
@dataclass
class FeatureReference:
    """Gaussian statistics of real features the generated images are compared with."""

    mu: torch.Tensor
    sigma: torch.Tensor

    @classmethod
    def of(cls, features: torch.Tensor) -> FeatureReference:
        return cls(*gaussian_statistics(features.double()))

    def fid(self, features: torch.Tensor) -> float:
        mu, sigma = gaussian_statistics(features.double())
        return float(frechet_distance(mu, sigma, self.mu, self.sigma))


@torch.no_grad()
def extract(extractor: torch.nn.Module, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Features ``(N, d)`` of float images ``(N, C, H, W)`` in [-1, 1], ``chunk`` images at a time."""
    return torch.cat([extract_features(extractor, part)[0] for part in images.split(chunk)])


class OverfitProbe(pl.Callback):
    """Every ``eval_kimg`` (and before the first batch): FIDs, D's train/held-out gap, r_t and p.

    Args:
        extractor: frozen feature extractor (the classifier).
        full: statistics of all real images; ``train``: of the training subset.
        train_data: the training subset, ``(images, labels)``, images float in [-1, 1].
        heldout_data: real images never trained on, ``(images, labels)``.
        eval_kimg: evaluation interval; ``num_gen``: generated images per evaluation; ``seed``: of
            the latents (the same latents at every evaluation).
        progress: JSON-lines file each evaluation is appended to as it happens (``None``: none).
    """

    def __init__(
        self,
        extractor: torch.nn.Module,
        full: FeatureReference,
        train: FeatureReference,
        train_data: tuple[torch.Tensor, torch.Tensor],
        heldout_data: tuple[torch.Tensor, torch.Tensor],
        eval_kimg: float,
        num_gen: int,
        seed: int,
        progress: Path | None = None,
    ) -> None:
        self.extractor, self.full, self.train = extractor, full, train
        self.train_data, self.heldout_data = train_data, heldout_data
        self.eval_kimg, self.num_gen, self.seed = eval_kimg, num_gen, seed
        self.progress = progress
        self.history: list[dict[str, float]] = []
        self._next_eval = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.cur_nimg.item() >= self._next_eval * self.eval_kimg * 1000:
            self.record(pl_module)
            self._next_eval += 1

    def on_train_end(self, trainer, pl_module) -> None:
        self.record(pl_module)

    def record(self, module: pl.LightningModule) -> None:
        """Measure, keep the point, and append it to the ``progress`` file (to watch a long run)."""
        point = self.measure(module)
        self.history.append(point)
        if self.progress is not None:
            with self.progress.open("a") as lines:
                lines.write(json.dumps(point) + "\n")

    @torch.no_grad()
    def measure(self, module: pl.LightningModule) -> dict[str, float]:
        generated = module.sample(self.num_gen, generator=torch.Generator().manual_seed(self.seed))
        features = extract(self.extractor, generated)
        train_images, train_labels = self.train_data
        pipe = getattr(module, "augment_pipe", None)
        return {
            "kimg": module.cur_nimg.item() / 1000,
            "fid_full": self.full.fid(features),
            "fid_train": self.train.fid(features),
            "d_train": discriminator_mean(module, train_images, train_labels, augment=False),
            "d_heldout": discriminator_mean(module, *self.heldout_data, augment=False),
            "rt": discriminator_mean(module, train_images, train_labels, augment=True, sign=True),
            "p": float(pipe.p) if pipe is not None else 0.0,
        }


@torch.no_grad()
def discriminator_mean(
    module: pl.LightningModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    augment: bool,
    sign: bool = False,
) -> float:
    """Mean of D's logits (or of their signs) over ``images``, in chunks D's minibatch-std accepts.

    ``augment=True`` shows D the images as in training (through the module's augmentation).
    """
    group = module.train_config.mbstd_group
    usable = len(images) - len(images) % group
    totals = []
    for image_chunk, label_chunk in zip(images[:usable].split(256), labels[:usable].split(256), strict=True):
        seen = module.augment_for_discriminator(image_chunk) if augment else image_chunk
        logits = module.D(seen, module.class_condition(label_chunk, len(label_chunk))).float()
        totals.append((logits.sign() if sign else logits).sum())
    return float(torch.stack(totals).sum() / usable)


def build_overfit_gan(arm: str, setting: OverfitSetting) -> tuple[pl.LightningModule, list[pl.Callback]]:
    """The module and extra callbacks of one arm; everything else is shared by all arms."""
    from lightning_genaug.augment import AugmentPipe, DiffAugment
    from lightning_genaug.callbacks import AdaptiveAugmentation
    from lightning_genaug.models import ScaleGAN, StyleGAN2ADA

    common = {
        "config": setting.config,
        "num_classes": None if setting.conditional else 0,  # None: the datamodule's 10 classes
        "config_overrides": {"ema_kimg": setting.ema_kimg, "ema_rampup": setting.ema_rampup},
        "max_kimg": setting.kimg,
    }
    controller = [AdaptiveAugmentation(speed_kimg=setting.ada_speed_kimg)]
    if arm == "no-augmentation":
        return StyleGAN2ADA(augment=None, **common), []
    if arm == "ada":
        return StyleGAN2ADA(augment=AugmentPipe("bgc"), **common), controller
    if arm == "fixed-p0.2":
        return StyleGAN2ADA(augment=AugmentPipe("bgc", p=setting.fixed_p), **common), []
    if arm == "diffaugment":
        return StyleGAN2ADA(augment=DiffAugment("color,translation,cutout"), **common), []
    if arm == "scalegan":
        return ScaleGAN(**common), controller
    raise ValueError(f"Unknown arm {arm!r}; valid arms: {', '.join(OVERFIT_GAN_ARMS)}.")


@dataclass
class Reals:
    """What every GAN job needs about the real data (built once by the parent, sent to each job)."""

    images: torch.Tensor  # uint8 (N, C, R, R), all digits
    labels: torch.Tensor
    train_index: torch.Tensor
    heldout_index: torch.Tensor
    extractor_state: dict[str, torch.Tensor]
    extractor_width: int


def frozen_classifier(
    state: dict[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor, width: int
) -> ClassifierFeatures:
    """The classifier extractor for ``images``/``labels`` with the weights ``state``, frozen, in eval mode."""
    extractor = ClassifierFeatures(images.shape[1], int(labels.max()) + 1, width)
    extractor.load_state_dict(state)
    return extractor.eval().requires_grad_(False)


def run_gan_job(arm: str, seed: int, setting: OverfitSetting, reals: Reals, out: Path) -> dict[str, Any]:
    """Train one arm with one seed; return its probe history and wall time; write a sample grid.

    Each evaluation is also appended to ``out/progress/gan-{arm}-seed{seed}.jsonl`` as it happens.
    """
    pl.seed_everything(seed, workers=True)
    progress = progress_path(out, "gan", arm, seed)
    progress.parent.mkdir(parents=True, exist_ok=True)
    progress.unlink(missing_ok=True)  # a job interrupted before it finished starts again from scratch
    images = from_uint8(reals.images)
    extractor = frozen_classifier(reals.extractor_state, reals.images, reals.labels, reals.extractor_width)
    features = extract(extractor, images)
    train = (images[reals.train_index], reals.labels[reals.train_index])
    heldout = (images[reals.heldout_index], reals.labels[reals.heldout_index])
    probe = OverfitProbe(
        extractor,
        FeatureReference.of(features),
        FeatureReference.of(features[reals.train_index]),
        train,
        heldout,
        setting.eval_kimg,
        setting.num_gen,
        seed,
        progress,
    )
    module, callbacks = build_overfit_gan(arm, setting)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=-1,
        logger=False,
        callbacks=[*callbacks, probe],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    datamodule = TensorDataModule(
        reals.images[reals.train_index], reals.labels[reals.train_index], setting.batch_size
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    seconds = time.perf_counter() - started
    grid_labels = torch.arange(10).repeat_interleave(10)
    grid = module.sample(100, labels=grid_labels, generator=torch.Generator().manual_seed(seed))
    save_png(make_grid(grid, nrow=10, padding=1), out / "samples" / f"{arm}-seed{seed}.png")
    return {"arm": arm, "seed": seed, "seconds": seconds, "history": probe.history}


# ------------------------------------------------------------------------------------------ DistAug
class TrainBitsPerDim(pl.Callback):
    """At each validation: bits per dim of the training images (identity transform, EMA weights)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.batch = (from_uint8(images), labels)
        self.history: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        val_bpd = float(trainer.callback_metrics["val/bpd"])
        train_bpd = float(pl_module.bits_per_dim(self.batch))
        self.history.append(
            {
                "epoch": trainer.current_epoch + 1,
                "step": trainer.global_step,
                "train": train_bpd,
                "val": val_bpd,
            }
        )


def run_distaug_job(arm: str, seed: int, setting: OverfitSetting, out: Path) -> dict[str, Any]:
    """Train the ``tiny`` Sparse Transformer on half of ``distaug_images`` digits; record bpd curves."""
    from lightning_genaug.augment import DistAugTransforms
    from lightning_genaug.data import DigitsDataModule
    from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug

    pl.seed_everything(seed, workers=True)
    augment = None if arm == "no-augmentation" else DistAugTransforms(arm.split("+"))
    datamodule = DigitsDataModule(
        resolution=8, channels=1, batch_size=32, val_fraction=0.5, max_images=setting.distaug_images, seed=0
    )
    datamodule.setup("fit")
    train_images, train_labels = datamodule.train_dataset.images, datamodule.train_dataset.labels
    recorder = TrainBitsPerDim(train_images, train_labels)
    module = SparseTransformerDistAug(
        config="tiny", augment=augment, lr=setting.distaug_lr, lr_schedule="constant", warmup_steps=40
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=setting.distaug_epochs,
        check_val_every_n_epoch=setting.distaug_val_every_n_epochs,
        num_sanity_val_steps=0,
        logger=False,
        callbacks=[recorder],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return {"arm": arm, "seed": seed, "seconds": time.perf_counter() - started, "history": recorder.history}


# -------------------------------------------------------------------------------------- orchestration
def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


def _job(kind: str, arm: str, seed: int, setting: OverfitSetting, reals: Reals | None, out: Path) -> Path:
    _one_thread()
    path = job_path(out, kind, arm, seed)
    result = (
        run_gan_job(arm, seed, setting, reals, out)
        if kind == "gan"
        else run_distaug_job(arm, seed, setting, out)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(result))
    path.with_suffix(".tmp").replace(path)  # atomic: a half-written file never counts as done
    log.info("%s %s seed %d done in %.0f s", kind, arm, seed, result["seconds"])
    return path


def job_path(out: Path, kind: str, arm: str, seed: int) -> Path:
    return out / "jobs" / f"{kind}-{arm}-seed{seed}.json"


def progress_path(out: Path, kind: str, arm: str, seed: int) -> Path:
    """Where a running job appends its evaluations, beside the ``jobs`` folder of finished ones."""
    return out / "progress" / job_path(out, kind, arm, seed).with_suffix(".jsonl").name


def prepare_reals(setting: OverfitSetting, out: Path) -> tuple[Reals, dict[str, float]]:
    """Digits, the fixed training subset, the classifier extractor and the metric's noise floor."""
    images, labels = digits(setting.resolution, channels=3)
    train_index, heldout_index = training_subset(setting.train_images, len(images))
    floats = from_uint8(images)
    started = time.perf_counter()
    cached = out / "extractor.pt"  # trained once per experiment folder, so a resumed run keeps its metric
    if cached.exists():
        state = torch.load(cached, weights_only=True)
        extractor = frozen_classifier(state, images, labels, setting.extractor_width)
    else:
        extractor = train_classifier_features(
            floats, labels, steps=setting.extractor_steps, width=setting.extractor_width, seed=0
        )
        torch.save(extractor.state_dict(), cached)
    features = extract(extractor, floats)
    halves = torch.randperm(len(images), generator=torch.Generator().manual_seed(1)).chunk(2)
    floor = {
        "extractor_accuracy": classifier_accuracy(extractor, floats, labels),
        "extractor_seconds": time.perf_counter() - started,
        "fid_half_vs_half": FeatureReference.of(features[halves[0]]).fid(features[halves[1]]),
        "fid_train_subset_vs_full": FeatureReference.of(features).fid(features[train_index]),
    }
    reals = Reals(images, labels, train_index, heldout_index, extractor.state_dict(), setting.extractor_width)
    return reals, floor


def run_jobs(setting: OverfitSetting, reals: Reals, out: Path) -> float:
    """Run every (arm, seed) job not already done, ``setting.jobs`` at a time; return the wall time."""
    # Seed-major order: should the experiment be cut short, every arm has the same seeds done.
    todo = [
        (kind, arm, seed)
        for seed in setting.seeds
        for kind, arms in (("gan", setting.gan_arms), ("distaug", setting.distaug_arms))
        for arm in arms
    ]
    todo = [job for job in todo if not job_path(out, *job).exists()]
    started = time.perf_counter()
    if setting.jobs == 1:
        for kind, arm, seed in todo:
            _job(kind, arm, seed, setting, reals, out)
    else:
        with ProcessPoolExecutor(setting.jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_job, kind, arm, seed, setting, reals, out) for kind, arm, seed in todo]
            for future in futures:
                future.result()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------- aggregation
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def load_results(out: Path, kind: str, arms: Sequence[str], seeds: Sequence[int]) -> dict[str, list[dict]]:
    return {arm: [json.loads(job_path(out, kind, arm, seed).read_text()) for seed in seeds] for arm in arms}


def second_half(history: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """The evaluations from half the run's length on (where over-fitting shows, if it does)."""
    return [point for point in history if point["kimg"] >= history[-1]["kimg"] / 2]


def gan_summary(results: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per arm (mean, std over seeds): final, best and second-half-mean FID, memorisation, D gap, r_t, p.

    A single evaluation of a small GAN swings with its training dynamics; the mean FID over the
    second half of each run is the steadier summary of where an arm ends up.
    """
    summary = {}
    for arm, runs in results.items():
        final = [run["history"][-1] for run in runs]
        best = [min(run["history"][1:] or run["history"], key=itemgetter("fid_full")) for run in runs]
        late = [statistics.fmean(point["fid_full"] for point in second_half(run["history"])) for run in runs]
        summary[arm] = {
            "final_fid": mean_std([point["fid_full"] for point in final]),
            "best_fid": mean_std([point["fid_full"] for point in best]),
            "best_kimg": mean_std([point["kimg"] for point in best]),
            "second_half_fid": mean_std(late),
            "final_fid_train": mean_std([point["fid_train"] for point in final]),
            "final_d_gap": mean_std([point["d_train"] - point["d_heldout"] for point in final]),
            "final_rt": mean_std([point["rt"] for point in final]),
            "final_p": mean_std([point["p"] for point in final]),
            "seconds": mean_std([run["seconds"] for run in runs]),
        }
    return summary


def distaug_summary(results: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per arm: best and final val bpd, final train bpd, and the epoch of the best val bpd."""
    summary = {}
    for arm, runs in results.items():
        best = [min(run["history"], key=lambda point: point["val"]) for run in runs]
        summary[arm] = {
            "best_val": mean_std([point["val"] for point in best]),
            "best_epoch": mean_std([point["epoch"] for point in best]),
            "final_val": mean_std([run["history"][-1]["val"] for run in runs]),
            "final_train": mean_std([run["history"][-1]["train"] for run in runs]),
            "seconds": mean_std([run["seconds"] for run in runs]),
        }
    return summary


def _fmt(pair: tuple[float, float], digits: int = 1) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def markdown_tables(
    gan: dict[str, dict], distaug: dict[str, dict], floor: dict[str, float], setting: OverfitSetting
) -> str:
    seeds = len(setting.seeds)
    lines = [
        f"Mean ± standard deviation over {seeds} seeds. classifier-FID noise floor (two halves of the "
        f"real digits): {floor['fid_half_vs_half']:.2f}; the training subset itself against all digits: "
        f"{floor['fid_train_subset_vs_full']:.2f}.",
        "",
        "| arm | final FID (full) | best FID (full) | kimg of best | mean FID (full), second half "
        "| final FID (train subset) | final D gap train - held-out | final r_t | final p | wall s per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm, row in gan.items():
        lines.append(
            f"| {arm} | {_fmt(row['final_fid'])} | {_fmt(row['best_fid'])} | {_fmt(row['best_kimg'], 0)} "
            f"| {_fmt(row['second_half_fid'])} "
            f"| {_fmt(row['final_fid_train'])} "
            f"| {_fmt(row['final_d_gap'], 2)} | {_fmt(row['final_rt'], 2)} | {_fmt(row['final_p'], 3)} "
            f"| {row['seconds'][0]:.0f} |"
        )
    if distaug:
        lines += [
            "",
            "| DistAug arm | best val bpd | epoch of best | final val bpd | final train bpd "
            "| wall s per run |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for arm, row in distaug.items():
            lines.append(
                f"| {arm} | {_fmt(row['best_val'], 3)} | {row['best_epoch'][0]:.0f} "
                f"| {_fmt(row['final_val'], 3)} | {_fmt(row['final_train'], 3)} | {row['seconds'][0]:.0f} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- plots
def band_plot(
    curves: dict[str, list[list[tuple[float, float]]]],
    xlabel: str,
    ylabel: str,
    path: Path,
    *,
    log_y: bool = False,
    hlines: Sequence[tuple[float, str]] = (),
) -> Path:
    """One line per arm (mean over seeds at each x) with a band from the lowest to the highest seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, runs in curves.items():
        length = min(len(run) for run in runs)
        if length == 0:
            continue
        xs = [statistics.fmean(run[i][0] for run in runs) for i in range(length)]
        columns = [[run[i][1] for run in runs] for i in range(length)]
        line = ax.plot(xs, [statistics.fmean(column) for column in columns], label=label)[0]
        ax.fill_between(
            xs, [min(c) for c in columns], [max(c) for c in columns], alpha=0.2, color=line.get_color()
        )
    for (value, label), style in zip(hlines, ("--", ":"), strict=False):
        ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curves(results: dict[str, list[dict]], x: str, y: Callable[[dict], float]) -> dict[str, list[list]]:
    return {
        arm: [[(point[x], y(point)) for point in run["history"]] for run in runs]
        for arm, runs in results.items()
    }


def samples_figure(out: Path, arms: Sequence[str], seed: int, path: Path) -> Path:
    """The final sample grids of every arm (one seed) side by side, upscaled for reading."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, len(arms), figsize=(2.6 * len(arms), 2.9))
    for ax, arm in zip(list(axes) if len(arms) > 1 else [axes], arms, strict=True):
        ax.imshow(Image.open(out / "samples" / f"{arm}-seed{seed}.png"), interpolation="nearest")
        ax.set_title(arm, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def make_plots(
    gan: dict[str, list[dict]],
    distaug: dict[str, list[dict]],
    floor: dict[str, float],
    out: Path,
    plots: Path,
    train_images: int,
) -> list[Path]:
    paths = [
        band_plot(
            _curves(gan, "kimg", lambda p: p["fid_full"]),
            "kimg",
            "classifier-FID vs all 1,797 digits",
            plots / "overfit_fid_full.png",
            log_y=True,
            hlines=(
                (floor["fid_train_subset_vs_full"], f"the {train_images} training digits themselves"),
                (floor["fid_half_vs_half"], "two halves of the real digits (noise floor)"),
            ),
        ),
        band_plot(
            _curves(gan, "kimg", lambda p: p["fid_train"]),
            "kimg",
            "classifier-FID vs the training subset",
            plots / "overfit_fid_train.png",
            log_y=True,
        ),
        band_plot(
            _curves(gan, "kimg", lambda p: p["rt"]),
            "kimg",
            "r_t = E[sign D(A(x_train))]",
            plots / "overfit_rt.png",
        ),
        band_plot(
            _curves(gan, "kimg", lambda p: p["d_train"] - p["d_heldout"]),
            "kimg",
            "D(train reals) - D(held-out reals)",
            plots / "overfit_d_gap.png",
        ),
        band_plot(
            {
                arm: runs
                for arm, runs in _curves(gan, "kimg", lambda p: p["p"]).items()
                if arm in ("ada", "scalegan")
            },
            "kimg",
            "augmentation p (adaptive arms)",
            plots / "overfit_p.png",
        ),
        samples_figure(
            out,
            list(gan),
            min(next(iter(gan.values())), key=lambda r: r["seed"])["seed"],
            plots / "overfit_samples.png",
        ),
    ]
    if distaug:
        paths.append(
            band_plot(
                {f"{arm} (val)": runs for arm, runs in _curves(distaug, "epoch", lambda p: p["val"]).items()}
                | {
                    f"{arm} (train)": runs
                    for arm, runs in _curves(distaug, "epoch", lambda p: p["train"]).items()
                },
                "epoch",
                "bits per dim (identity transform)",
                plots / "overfit_distaug_bpd.png",
            )
        )
    return paths


def run_overfit(setting: OverfitSetting, out: Path, plots: Path | None = None) -> dict[str, Any]:
    """Run (or resume) the whole experiment and write ``results.md``, ``results.json`` and the plots."""
    out.mkdir(parents=True, exist_ok=True)
    reals, floor = prepare_reals(setting, out)
    log.info("metric noise floor: %s", floor)
    wall = run_jobs(setting, reals, out)
    gan = load_results(out, "gan", setting.gan_arms, setting.seeds)
    distaug = load_results(out, "distaug", setting.distaug_arms, setting.seeds)
    gan_table, distaug_table = gan_summary(gan), distaug_summary(distaug)
    report = markdown_tables(gan_table, distaug_table, floor, setting)
    plot_paths = make_plots(gan, distaug, floor, out, plots or out, setting.train_images)
    summary = {
        "setting": asdict(setting),
        "noise_floor": floor,
        "wall_seconds_this_invocation": wall,
        "gan": gan_table,
        "distaug": distaug_table,
        "plots": [str(path) for path in plot_paths],
        "metric": "classifier-FID (CNN trained on all 1,797 digits, "
        f"accuracy {floor['extractor_accuracy']:.3f})",
    }
    (out / "results.md").write_text(report + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


__all__ = ["OVERFIT_DISTAUG_ARMS", "OVERFIT_GAN_ARMS", "OverfitSetting", "run_overfit"]
