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
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from overfit_data import (
    SplitTensorDataModule,
    TensorDataModule,
    downsample,
    load_dataset,
    training_subset,
)
from overfit_probe import (
    FeatureReference,
    FeatureSpace,
    OverfitProbe,
    TrainBitsPerDim,
    extract,
)
from overfit_report import distaug_summary, gan_summary, make_plots, markdown_tables

from lightning_genaug.callbacks.ada import HELDOUT_HEURISTICS
from lightning_genaug.images import from_uint8, make_grid, save_png
from lightning_genaug.metrics.trained_extractor import (
    ClassifierFeatures,
    classifier_accuracy,
    train_classifier_features,
)

log = logging.getLogger("limited_data.overfit")

DIGITS_GAN_ARMS = ("no-augmentation", "ada", "fixed-p0.2", "diffaugment", "scalegan")
ADAPTIVE_ARMS: dict[str, tuple[str, float]] = {
    "ada": ("rt", 0.6),  # the paper's heuristic and target
    "ada-clean": ("rt_clean", 0.6),  # D's sign on clean training reals instead of augmented ones
    "ada-rv": ("rv", 0.5),  # r_v on held-out reals, at the TensorFlow code's target for it
    "ada-target0.5": ("rt", 0.5),  # the paper's r_t at a lower target
    "ada-rv-target0.3": ("rv", 0.3),  # r_v lower than 0.5 (which, on 200 photographs, let D's gap reach 3.6)
    "ada-gap": ("gap", 0.5),  # D's held-out gap itself, in logits (r_v's denominator feeds on p)
    "ada-gap-diffaugment": ("gap", 0.5),  # the same, with DiffAugment always on after the pipe
}
"""``bgc`` arms whose p an ``AdaptiveAugmentation(heuristic, target)`` adapts."""
WITH_DIFFAUGMENT = frozenset({"ada-gap-diffaugment"})
"""Adaptive arms whose pipe is ``Chain([AugmentPipe("bgc"), DiffAugment(DIFFAUGMENT_POLICY)])``: the
controller adapts the ``bgc`` p, DiffAugment stays at full strength."""
DIFFAUGMENT_POLICY = "color,translation,cutout"
# Every arm either setting can run (--arms).
OVERFIT_GAN_ARMS = (*DIGITS_GAN_ARMS, *(arm for arm in ADAPTIVE_ARMS if arm not in DIGITS_GAN_ARMS))
RV_HELDOUT_IMAGES = 64
"""The held-out reals of the arms that read them (``rv``, ``gap``): the first of the probe's held-out
images (never trained on)."""
OVERFIT_DISTAUG_ARMS = ("no-augmentation", "rotation", "rotation+transposition")


@dataclass(frozen=True)
class OverfitSetting:
    """Every number of the experiment; ``quick()`` shrinks it to a CI smoke run.

    The defaults are the ``digits-overfit`` setting; :func:`cifar_overfit_setting` gives the CIFAR-10 one.
    """

    # "digits" (scikit-learn's, bundled) or "cifar10": ``data_root`` then holds ``train-10k-jpeg.zip``
    # (the training subset, held-out reals and the reference statistics) and ``test-jpeg.zip`` (the
    # classifier the metric uses is trained on it, so it has seen no image of any training subset).
    dataset: str = "digits"
    data_root: str | None = None
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
    # Further StyleGAN2Config overrides as (name, value) pairs (a frozen dataclass holds no dict).
    config_overrides: tuple[tuple[str, float], ...] = ()
    num_gen: int = 1797  # as many generated images as there are real digits
    # Held-out reals D's output gap is measured on (None: all of them).
    probe_heldout_images: int | None = None
    ada_speed_kimg: float = 10.0  # p may go 0 -> 1 in 10 kimg (a twentieth of the run)
    fixed_p: float = 0.2
    seeds: tuple[int, ...] = (0, 1, 2)
    gan_arms: tuple[str, ...] = DIGITS_GAN_ARMS
    extractor_steps: int = 2000
    extractor_width: int = 32
    # A local Inception weights file: every evaluation then also reports Inception FID (standard numbers).
    inception_weights: str | None = None
    # DistAug: 150 training digits (8x8 grey) and 150 validation digits, constant learning rate.
    distaug_arms: tuple[str, ...] = OVERFIT_DISTAUG_ARMS
    distaug_images: int = 300
    distaug_epochs: int = 250  # no augmentation bottoms out near epoch 70 at this size, DistAug later
    distaug_val_every_n_epochs: int = 5
    distaug_lr: float = 2e-3
    distaug_resolution: int = 8
    distaug_val_images: int | None = None  # outside the digits (None: as many as ``distaug_images``)
    # Sparse Transformer overrides: its local/strided window should be one row of sub-pixels (W * C).
    distaug_config_overrides: tuple[tuple[str, int], ...] = ()
    jobs: int = 2

    def quick(self) -> OverfitSetting:
        """Every arm and two seeds, at sizes that run in about a minute (the CI check)."""
        return replace(
            self,
            kimg=0.5,
            eval_kimg=0.25,
            num_gen=64,
            probe_heldout_images=256,  # D's mean over 256 held-out digits, not 1,747: most of a probe's cost
            seeds=(0, 1),
            extractor_steps=30,
            extractor_width=8,
            distaug_images=64,
            distaug_epochs=2,
            distaug_val_every_n_epochs=1,
            jobs=1,
        )


# The cifar-overfit defaults; every arm of the digits setting can be chosen with --arms/--distaug-arms.
CIFAR_GAN_ARMS = ("no-augmentation", "ada", "diffaugment", "fixed-p0.2")
CIFAR_DISTAUG_ARMS = ("no-augmentation", "rotation")
REALS_LABELS = {"digits": "1,797 digits", "cifar10": "10,000 CIFAR-10 train-zip images"}
METRIC_LABELS = {
    "digits": "classifier-FID (CNN trained on all 1,797 digits, accuracy {extractor_accuracy:.3f})",
    "cifar10": "classifier-FID/KID (CNN trained on the CIFAR-10 test zip, accuracy on the train zip "
    "{extractor_accuracy:.3f})",
}


def cifar_overfit_setting(data_root: str | Path, quick: bool = False) -> OverfitSetting:
    """The ``cifar-overfit`` setting: CIFAR-10 photographs, the ``cifar`` preset narrowed to 64 channels.

    Everything not set here (batch 32, unconditional, EMA, seeds 0-2, the classifier's training) is the
    digits setting's.

    ``quick=True`` shrinks it to a CI smoke run on a tiny zip in the same layout (16 channels, a few
    batches, two seeds).
    """
    setting = OverfitSetting(
        dataset="cifar10",
        data_root=str(data_root),
        # Chosen by a pilot on this 2-core machine: with 500 images the un-augmented D's train/held-out
        # gap was still under 0.3 after 35 kimg (70 epochs) and FID only swung with the GAN's dynamics;
        # 200 images are 175 epochs by 35 kimg (docs/results.md has the pilot's numbers).
        train_images=200,
        resolution=32,
        config="cifar",
        # 500 epochs. The experiment first ran 60 kimg, where D's gap had opened in every seed but no
        # un-augmented FID had turned up; raising kimg extended the same jobs from their checkpoints.
        kimg=100.0,
        eval_kimg=5.0,
        # The paper's cifar width is 512 maps at every resolution; 64 fits two CPU cores (G 1.15M and
        # D 0.32M parameters). ``channel_base`` only matters where it is below ``channel_max * res``.
        config_overrides=(("channel_base", 2048), ("channel_max", 64)),
        num_gen=2000,
        probe_heldout_images=512,
        ada_speed_kimg=20.0,
        gan_arms=CIFAR_GAN_ARMS,
        distaug_arms=CIFAR_DISTAUG_ARMS,
        # 768 sub-pixels per image make each step ~10x the digits' cost: 64 training photos (2 batches
        # an epoch) over-fit within a budget that 3 seeds x 2 arms fit in on two cores.
        distaug_images=64,
        distaug_val_images=256,
        distaug_epochs=200,
        distaug_val_every_n_epochs=10,
        distaug_resolution=16,
        distaug_config_overrides=(("attention_stride", 48),),  # one row of 16 x 3 sub-pixels
    )
    if not quick:
        return setting
    return replace(
        setting.quick(),
        kimg=0.125,  # 4 batches, probed at 0, 2 and 4
        eval_kimg=0.0625,
        distaug_epochs=1,
        train_images=64,
        num_gen=64,
        probe_heldout_images=32,
        config_overrides=(("channel_base", 512), ("channel_max", 16)),
        distaug_images=32,  # one training batch
        distaug_val_images=16,  # 768 sub-pixels per photo: the likelihood arms' cost is per image
    )


def build_gan_arm(
    arm: str, module_kwargs: dict[str, Any], ada_speed_kimg: float, fixed_p: float = 0.2
) -> tuple[pl.LightningModule, list[pl.Callback]]:
    """The module and extra callbacks of one GAN arm; ``module_kwargs`` is what every arm shares."""
    from lightning_genaug.augment import AugmentPipe, Chain, DiffAugment
    from lightning_genaug.callbacks import AdaptiveAugmentation
    from lightning_genaug.models import ScaleGAN, StyleGAN2ADA

    if arm == "no-augmentation":
        return StyleGAN2ADA(augment=None, **module_kwargs), []
    if arm in ADAPTIVE_ARMS:
        heuristic, target = ADAPTIVE_ARMS[arm]
        controller = AdaptiveAugmentation(speed_kimg=ada_speed_kimg, heuristic=heuristic, target=target)
        pipe = AugmentPipe("bgc")
        if arm in WITH_DIFFAUGMENT:
            pipe = Chain([pipe, DiffAugment(DIFFAUGMENT_POLICY)])
        return StyleGAN2ADA(augment=pipe, **module_kwargs), [controller]
    if arm == "fixed-p0.2":
        return StyleGAN2ADA(augment=AugmentPipe("bgc", p=fixed_p), **module_kwargs), []
    if arm == "diffaugment":
        return StyleGAN2ADA(augment=DiffAugment(DIFFAUGMENT_POLICY), **module_kwargs), []
    if arm == "scalegan":
        return ScaleGAN(**module_kwargs), [AdaptiveAugmentation(speed_kimg=ada_speed_kimg)]
    raise ValueError(f"Unknown arm {arm!r}; valid arms: {', '.join(OVERFIT_GAN_ARMS)}.")


def build_overfit_gan(arm: str, setting: OverfitSetting) -> tuple[pl.LightningModule, list[pl.Callback]]:
    """One arm of an over-fitting setting: its network, EMA and length come from ``setting``."""
    module_kwargs = {
        "config": setting.config,
        "num_classes": None if setting.conditional else 0,  # None: the datamodule's 10 classes
        "config_overrides": {
            "ema_kimg": setting.ema_kimg,
            "ema_rampup": setting.ema_rampup,
            **dict(setting.config_overrides),
        },
        "max_kimg": setting.kimg,
    }
    return build_gan_arm(arm, module_kwargs, setting.ada_speed_kimg, setting.fixed_p)


@dataclass
class Reals:
    """What every GAN job needs about the real data (built once by the parent, sent to each job)."""

    images: torch.Tensor  # uint8 (N, C, R, R), all reals the FID is computed against
    labels: torch.Tensor
    train_index: torch.Tensor
    heldout_index: torch.Tensor  # the held-out reals D's output gap is measured on
    extractor_state: dict[str, torch.Tensor]
    extractor_width: int
    inception_features: torch.Tensor | None = None  # (N, 2048) of ``images``, with --inception-weights
    # DistAug data outside the digits: ((train uint8, labels), (validation uint8, labels)).
    distaug_data: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None


def cached_classifier(
    path: Path, images: torch.Tensor, labels: torch.Tensor, steps: int, width: int, xflip: bool
) -> ClassifierFeatures:
    """The metric's classifier, trained once on uint8 ``images``/``labels`` and kept at ``path``.

    An experiment folder keeps its extractor, so a resumed or extended experiment keeps its metric.
    """
    if path.exists():
        return frozen_classifier(torch.load(path, weights_only=True), images, labels, width)
    extractor = train_classifier_features(
        from_uint8(images), labels, steps=steps, width=width, seed=0, xflip=xflip
    )
    torch.save(extractor.state_dict(), path)
    return extractor


def frozen_classifier(
    state: dict[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor, width: int
) -> ClassifierFeatures:
    """The classifier extractor for ``images``/``labels`` with the weights ``state``, frozen, in eval mode."""
    extractor = ClassifierFeatures(images.shape[1], int(labels.max()) + 1, width)
    extractor.load_state_dict(state)
    return extractor.eval().requires_grad_(False)


def run_gan_job(
    arm: str,
    seed: int,
    setting: OverfitSetting,
    reals: Reals,
    out: Path,
    extra_callbacks: Sequence[pl.Callback] = (),
) -> dict[str, Any]:
    """Train one arm with one seed; return its probe history and wall time; write a sample grid.

    Each evaluation is also appended to ``out/progress/gan-{arm}-seed{seed}.jsonl`` as it happens,
    and the training state to ``out/checkpoints/gan-{arm}-seed{seed}.ckpt``: a re-run of an
    interrupted job continues from its last evaluation. ``extra_callbacks`` run after the arm's own
    (diagnostics such as ``overfit_rt_trace.py``'s).
    """
    pl.seed_everything(seed, workers=True)
    progress = progress_path(out, "gan", arm, seed)
    checkpoint = out / "checkpoints" / f"gan-{arm}-seed{seed}.ckpt"
    for folder in (progress.parent, checkpoint.parent):
        folder.mkdir(parents=True, exist_ok=True)
    resume = checkpoint.exists()
    if not resume:
        progress.unlink(missing_ok=True)  # interrupted before its first checkpoint: start again
    images = from_uint8(reals.images)
    extractor = frozen_classifier(reals.extractor_state, reals.images, reals.labels, reals.extractor_width)
    probe = OverfitProbe(
        feature_space(extractor, extract(extractor, images), reals.train_index),
        (images[reals.train_index], reals.labels[reals.train_index]),
        (images[reals.heldout_index], reals.labels[reals.heldout_index]),
        setting.eval_kimg,
        setting.num_gen,
        seed,
        progress,
        inception=None
        if reals.inception_features is None
        else feature_space(
            inception_extractor(setting.inception_weights), reals.inception_features, reals.train_index
        ),
        checkpoint=checkpoint,
    )
    module, callbacks = build_overfit_gan(arm, setting)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=-1,
        limit_val_batches=0,  # r_v's held-out reals are read by its controller, not validated on
        logger=False,
        callbacks=[*callbacks, probe, *extra_callbacks],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    train = (reals.images[reals.train_index], reals.labels[reals.train_index])
    if ADAPTIVE_ARMS.get(arm, ("", 0.0))[0] in HELDOUT_HEURISTICS:  # held-out reals, never trained on
        held = reals.heldout_index[:RV_HELDOUT_IMAGES]
        datamodule = SplitTensorDataModule(
            *train, setting.batch_size, (reals.images[held], reals.labels[held])
        )
    else:
        datamodule = TensorDataModule(*train, setting.batch_size)
    if resume:
        log.info("gan %s seed %d: resuming from %s", arm, seed, checkpoint)
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint if resume else None)
    grid_labels = torch.arange(10).repeat_interleave(10)
    conditional = module.hparams.num_classes > 0  # an unconditional network refuses labels
    grid = module.sample(
        100, labels=grid_labels if conditional else None, generator=torch.Generator().manual_seed(seed)
    )
    save_png(make_grid(grid, nrow=10, padding=1), out / "samples" / f"{arm}-seed{seed}.png")
    return {
        "arm": arm,
        "seed": seed,
        "seconds": probe.seconds,
        "history": probe.history,
        "resumes": probe.resumes,
    }


def feature_space(
    extractor: torch.nn.Module, features: torch.Tensor, train_index: torch.Tensor
) -> FeatureSpace:
    """``extractor`` with the statistics of all real ``features`` and of the training subset's rows."""
    return FeatureSpace(
        extractor, FeatureReference.of(features), FeatureReference.of(features[train_index]), features
    )


def inception_extractor(weights: str | None) -> torch.nn.Module:
    """Inception (torch-fidelity's ``inception-v3-compat``) from a local weights file, frozen."""
    from lightning_genaug.metrics.extractors import InceptionV3Compat

    return InceptionV3Compat(weights).eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------ DistAug
def run_distaug_job(
    arm: str, seed: int, setting: OverfitSetting, reals: Reals | None, out: Path
) -> dict[str, Any]:
    """Train the ``tiny`` Sparse Transformer without augmentation or with DistAug; record bpd curves.

    Digits: half of ``distaug_images`` 8x8 grey digits train, the other half validate. Elsewhere the
    training and validation images come from ``reals.distaug_data``.
    """
    from lightning_genaug.augment import DistAugTransforms
    from lightning_genaug.data import DigitsDataModule
    from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug

    pl.seed_everything(seed, workers=True)
    augment = None if arm == "no-augmentation" else DistAugTransforms(arm.split("+"))
    if reals is None or reals.distaug_data is None:
        datamodule = DigitsDataModule(
            resolution=8,
            channels=1,
            batch_size=32,
            val_fraction=0.5,
            max_images=setting.distaug_images,
            seed=0,
        )
        datamodule.setup("fit")
        train_images, train_labels = datamodule.train_dataset.images, datamodule.train_dataset.labels
    else:
        (train_images, train_labels), validation = reals.distaug_data
        datamodule = SplitTensorDataModule(train_images, train_labels, 32, validation)
    recorder = TrainBitsPerDim(train_images, train_labels)
    module = SparseTransformerDistAug(
        config="tiny",
        config_overrides={
            **dict(setting.distaug_config_overrides),
            "lr": setting.distaug_lr,
            "lr_schedule": "constant",
            "warmup_steps": 40,
        },
        augment=augment,
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
        else run_distaug_job(arm, seed, setting, reals, out)
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
    """The reals, the fixed training subset, the classifier extractor and the metric's noise floor.

    The extractor (and, with ``inception_weights``, the reals' Inception features) is computed once
    per experiment folder, so that a resumed experiment keeps its metric.
    """
    images, labels, classifier_images, classifier_labels = load_dataset(
        setting.dataset, setting.data_root, setting.resolution
    )
    train_index, heldout_index = training_subset(setting.train_images, len(images))
    if setting.probe_heldout_images is not None:
        pick = torch.randperm(len(heldout_index), generator=torch.Generator().manual_seed(2))
        heldout_index = heldout_index[pick[: setting.probe_heldout_images]].sort().values
    floats = from_uint8(images)
    started = time.perf_counter()
    extractor = cached_classifier(
        out / "extractor.pt",
        classifier_images,
        classifier_labels,
        steps=setting.extractor_steps,
        width=setting.extractor_width,
        xflip=setting.dataset != "digits",  # photographs' classes are mirror invariant, digits' are not
    )
    features = extract(extractor, floats)
    halves = torch.randperm(len(images), generator=torch.Generator().manual_seed(1)).chunk(2)
    floor = {
        "extractor_accuracy": classifier_accuracy(extractor, floats, labels),
        "extractor_seconds": time.perf_counter() - started,
        "fid_half_vs_half": FeatureReference.of(features[halves[0]]).fid(features[halves[1]]),
        "fid_train_subset_vs_full": FeatureReference.of(features).fid(features[train_index]),
    }
    if setting.dataset != "digits":
        floor["extractor_training_accuracy"] = classifier_accuracy(
            extractor, from_uint8(classifier_images), classifier_labels
        )
    reals = Reals(
        images,
        labels,
        train_index,
        heldout_index,
        extractor.state_dict(),
        setting.extractor_width,
        inception_features=None
        if setting.inception_weights is None
        else inception_features(setting, out, floats),
        distaug_data=None
        if setting.dataset == "digits"
        else distaug_data(setting, (images, labels), (classifier_images, classifier_labels)),
    )
    return reals, floor


def inception_features(setting: OverfitSetting, out: Path, images: torch.Tensor) -> torch.Tensor:
    """Inception features ``(N, 2048)`` of the reals, computed once and kept in ``out``."""
    cached = out / "inception_features.pt"
    if cached.exists():
        return torch.load(cached, weights_only=True)
    features = extract(inception_extractor(setting.inception_weights), images, chunk=64)
    torch.save(features, cached)
    return features


def distaug_data(
    setting: OverfitSetting, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The likelihood arms' data, downsampled: a training draw from ``train`` and validation from ``test``.

    The training draw is the start of the GAN's fixed permutation (so it lies inside any GAN subset
    at least as large).
    """
    (images, labels), (val_images, val_labels) = train, test
    train_index, _ = training_subset(setting.distaug_images, len(images))
    val_count = setting.distaug_val_images or setting.distaug_images
    val_index = torch.randperm(len(val_images), generator=torch.Generator().manual_seed(3))[:val_count]
    return (
        (downsample(images[train_index], setting.distaug_resolution), labels[train_index]),
        (downsample(val_images[val_index], setting.distaug_resolution), val_labels[val_index]),
    )


def run_jobs(setting: OverfitSetting, reals: Reals, out: Path) -> float:
    """Run every (arm, seed) job not already done, ``setting.jobs`` at a time; return the wall time."""
    # Seed-major order: should the experiment be cut short, every arm has the same seeds done.
    todo = [
        (kind, arm, seed)
        for seed in setting.seeds
        for kind, arms in (("gan", setting.gan_arms), ("distaug", setting.distaug_arms))
        for arm in arms
    ]
    todo = [job for job in todo if not is_done(out, *job, setting)]
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


def is_done(out: Path, kind: str, arm: str, seed: int, setting: OverfitSetting) -> bool:
    """A job has its result file, and a GAN job reached ``setting.kimg``.

    A GAN job finished at a smaller ``kimg`` is not done: raising ``kimg`` extends it from its last
    checkpoint (the checkpoint of its final evaluation is kept).
    """
    path = job_path(out, kind, arm, seed)
    if not path.exists():
        return False
    return kind != "gan" or json.loads(path.read_text())["history"][-1]["kimg"] >= setting.kimg


def load_results(
    out: Path, kind: str, arms: Sequence[str], seeds: Sequence[int], finished_only: bool = False
) -> dict[str, list[dict]]:
    """Every job's result by arm; ``finished_only`` skips jobs without a result (and arms without any)."""
    paths = {arm: [job_path(out, kind, arm, seed) for seed in seeds] for arm in arms}
    if finished_only:
        paths = {arm: [path for path in found if path.exists()] for arm, found in paths.items()}
    return {arm: [json.loads(path.read_text()) for path in found] for arm, found in paths.items() if found}


def reported_run(run: dict[str, Any], kimg: float, eval_kimg: float) -> dict[str, Any]:
    """A GAN job's result as the report reads it: its evaluations up to the setting's ``kimg``.

    An evaluation repeated at the same image count (a finished job re-measured when a larger ``kimg``
    resumed it) counts once; evaluations past ``kimg`` (a job extended beyond the setting) are left
    out, and ``extended_to`` then records how far the job went (its sample grid is from there).

    >>> run = {"history": [{"kimg": k} for k in (0.0, 5.0, 5.0, 10.0, 10.1, 15.0)]}
    >>> [point["kimg"] for point in reported_run(run, kimg=10.0, eval_kimg=5.0)["history"]]
    [0.0, 5.0, 10.0, 10.1]
    >>> reported_run(run, kimg=10.0, eval_kimg=5.0)["extended_to"]
    15.0
    """
    history = [
        point
        for i, point in enumerate(run["history"])
        if i == 0 or point["kimg"] != run["history"][i - 1]["kimg"]
    ]
    kept = [point for point in history if point["kimg"] < kimg + eval_kimg / 2]
    reported = {**run, "history": kept}
    if len(kept) < len(history):
        reported["extended_to"] = history[-1]["kimg"]
    return reported


def run_overfit(
    setting: OverfitSetting, out: Path, plots: Path | None = None, report_only: bool = False
) -> dict[str, Any]:
    """Run (or resume) the whole experiment and write ``results.md``, ``results.json`` and the plots.

    ``report_only`` runs nothing: the tables and plots then cover the jobs finished so far (a long
    experiment can be reported while it runs; the ``n`` column says how many seeds each row has).
    """
    out.mkdir(parents=True, exist_ok=True)
    reals, floor = prepare_reals(setting, out)
    log.info("metric noise floor: %s", floor)
    training_grid = from_uint8(reals.images[reals.train_index[:100]])
    save_png(make_grid(training_grid, nrow=10, padding=1), out / "samples" / "training-images.png")
    wall = 0.0 if report_only else run_jobs(setting, reals, out)
    gan = {
        arm: [reported_run(run, setting.kimg, setting.eval_kimg) for run in runs]
        for arm, runs in load_results(out, "gan", setting.gan_arms, setting.seeds, report_only).items()
    }
    distaug = load_results(out, "distaug", setting.distaug_arms, setting.seeds, finished_only=report_only)
    gan_table, distaug_table = gan_summary(gan), distaug_summary(distaug)
    reals_label = REALS_LABELS[setting.dataset]
    report = markdown_tables(gan_table, distaug_table, floor, reals_label)
    plot_paths = make_plots(gan, distaug, floor, out, plots or out, reals_label)
    summary = {
        "setting": asdict(setting),
        "noise_floor": floor,
        "wall_seconds_this_invocation": wall,
        "gan": gan_table,
        "distaug": distaug_table,
        "plots": [str(path) for path in plot_paths],
        "metric": METRIC_LABELS[setting.dataset].format(**floor),
    }
    (out / "results.md").write_text(report + "\n")
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


__all__ = ["OVERFIT_DISTAUG_ARMS", "OVERFIT_GAN_ARMS", "OverfitSetting", "run_overfit"]
