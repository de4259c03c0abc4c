"""What the over-fitting settings measure while a job trains (``benchmarks/overfit.py``).

:class:`OverfitProbe` (GAN jobs): FIDs against all reals and against the training subset, D's output
on training vs held-out reals, r_t and p, with a resumable checkpoint at each evaluation.
:class:`TrainBitsPerDim` (likelihood jobs): training bits per dim beside the validation ones.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_genaug.images import from_uint8
from lightning_genaug.metrics.extractors import extract_features
from lightning_genaug.metrics.functional import (
    frechet_distance,
    gaussian_statistics,
    kernel_inception_distance,
)


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


@dataclass
class FeatureSpace:
    """A frozen extractor with the statistics of all reals and of the training subset in its features."""

    extractor: torch.nn.Module
    full: FeatureReference
    train: FeatureReference
    full_features: torch.Tensor  # (N, d): KID needs the features themselves

    def kid(self, features: torch.Tensor, seed: int) -> float:
        """KID of ``features`` against all reals (50 subsets; its own generator, not the global RNG)."""
        subset = min(1000, len(features), len(self.full_features))
        kid, _ = kernel_inception_distance(
            self.full_features, features, 50, subset, generator=torch.Generator().manual_seed(seed)
        )
        return float(kid)


class OverfitProbe(pl.Callback):
    """Every ``eval_kimg`` (and before the first batch): FIDs, D's train/held-out gap, r_t and p.

    With ``checkpoint`` set, the whole training state (module, optimisers, callbacks, this probe's
    history and the global RNG) is written there, atomically, after the batch at which each evaluation
    happened, so that a re-run resumes from the last evaluation.

    Args:
        classifier: the metric's features (the classifier extractor), for ``fid_full``/``fid_train``.
        train_data / heldout_data: ``(images in [-1, 1], labels)`` of the training subset and of real
            images never trained on (D's output gap).
        eval_kimg: evaluation interval; ``num_gen``: generated images per evaluation; ``seed``: of
            the latents (the same latents at every evaluation).
        progress: JSON-lines file each evaluation is appended to as it happens (``None``: none).
        inception: Inception features, reported as ``inception_fid_full``/``inception_fid_train``.
        checkpoint: where to keep the resumable state (``None``: nowhere).
    """

    def __init__(
        self,
        classifier: FeatureSpace,
        train_data: tuple[torch.Tensor, torch.Tensor],
        heldout_data: tuple[torch.Tensor, torch.Tensor],
        eval_kimg: float,
        num_gen: int,
        seed: int,
        progress: Path | None = None,
        inception: FeatureSpace | None = None,
        checkpoint: Path | None = None,
    ) -> None:
        self.classifier, self.inception = classifier, inception
        self.train_data, self.heldout_data = train_data, heldout_data
        self.eval_kimg, self.num_gen, self.seed = eval_kimg, num_gen, seed
        self.progress, self.checkpoint = progress, checkpoint
        self.history: list[dict[str, float]] = []
        self.seconds_before = 0.0  # training wall time of the interrupted runs this one resumes
        self.resumes = 0
        self._next_eval = 0
        self._save_after_batch = False
        self._started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.cur_nimg.item() >= self._next_eval * self.eval_kimg * 1000:
            self.record(pl_module)
            self._next_eval += 1
            self._save_after_batch = self.checkpoint is not None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._save_after_batch:
            self._save_after_batch = False
            save_atomically(trainer, self.checkpoint)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.history or self.history[-1]["kimg"] != pl_module.cur_nimg.item() / 1000:
            self.record(pl_module)
            if pl_module.cur_nimg.item() >= self._next_eval * self.eval_kimg * 1000:
                self._next_eval += 1  # a larger kimg resuming this job must not measure this point again
        if self.checkpoint is not None:
            save_atomically(trainer, self.checkpoint)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "next_eval": self._next_eval,
            "seconds": self.seconds,
            "resumes": self.resumes,
            "rng_state": torch.get_rng_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self._next_eval = state_dict["next_eval"]
        self.seconds_before = state_dict["seconds"]
        self.resumes = state_dict["resumes"] + 1
        torch.set_rng_state(state_dict["rng_state"])
        if self.progress is not None:  # drop evaluations made after the checkpoint by the interrupted run
            self.progress.write_text("".join(json.dumps(point) + "\n" for point in self.history))

    def on_fit_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Training wall time so far, over every resumed run."""
        return self.seconds_before + (time.perf_counter() - self._started)

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
        features = extract(self.classifier.extractor, generated)
        train_images, train_labels = self.train_data
        pipe = getattr(module, "augment_pipe", None)
        point = {
            "kimg": module.cur_nimg.item() / 1000,
            "fid_full": self.classifier.full.fid(features),
            "fid_train": self.classifier.train.fid(features),
            "kid_full": self.classifier.kid(features, self.seed),
            "d_train": discriminator_mean(module, train_images, train_labels, augment=False),
            "d_heldout": discriminator_mean(module, *self.heldout_data, augment=False),
            "rt": discriminator_mean(module, train_images, train_labels, augment=True, sign=True),
            "p": float(pipe.p) if pipe is not None else 0.0,
        }
        if self.inception is not None:
            inception_features = extract(self.inception.extractor, generated)
            point["inception_fid_full"] = self.inception.full.fid(inception_features)
            point["inception_fid_train"] = self.inception.train.fid(inception_features)
        return point


def save_atomically(trainer: pl.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary file renamed into place: never a truncated checkpoint."""
    partial = path.with_suffix(".partial")
    trainer.save_checkpoint(partial, weights_only=False)
    os.replace(partial, path)


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
        seen = module.loss.augment_images(image_chunk) if augment else image_chunk
        logits = module.D(seen, module.class_condition(label_chunk, len(label_chunk))).float()
        totals.append((logits.sign() if sign else logits).sum())
    return float(torch.stack(totals).sum() / usable)


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
