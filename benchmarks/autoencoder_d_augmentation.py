"""Does augmenting a PatchGAN discriminator help an autoencoder trained on a small set?

The autoencoder of ``examples/autoencoder_gan.py`` (L1 reconstruction + hinge PatchGAN, D held by the
loss module, manual optimisation, nothing of ours in the model) is trained on a limited CIFAR-10
subset, 32x32, in three arms, each with ``AdaptiveAugmentation`` as the only addition:

- ``no-augmentation``: ``FixedAugmentation`` at p = 0 (nothing augmented; r_t still measured);
- ``ada``: the default ``AugmentPipe("bgc")`` with ``p`` adapted towards ``r_t = 0.6``;
- ``diffaugment``: ``DiffAugment("color,translation,cutout")`` at a fixed ``p = 1``.

Every ``eval_every`` batches a probe records D's mean patch logit on the training reals and on held-out
reals (both un-augmented, D in eval mode), ``r_t`` and ``p``, and the reconstruction PSNR of the training
and held-out images. At the end each job saves its held-out reconstructions; the aggregation computes
FID and KID between held-out reconstructions and the held-out originals in the features of an
independent classifier (``ClassifierFeatures``), trained on the CIFAR-10 *test* split (a set neither the
autoencoder nor the held-out images come from).

Jobs (arm x seed) run one after the other in this process, one thread; each writes one JSON file, so
re-running skips finished jobs. Data: ``--data`` (``train-10k-jpeg.zip``, whose first images give the
training and held-out sets) and ``--classifier-data`` (``test-jpeg.zip``).

Run:  OMP_NUM_THREADS=1 python benchmarks/autoencoder_d_augmentation.py --out runs/ae-d-aug \
          --data ../shared/data/cifar10/train-10k-jpeg.zip \
          --classifier-data ../shared/data/cifar10/test-jpeg.zip
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from lightning_genaug import AdaptiveAugmentation, FixedAugmentation
from lightning_genaug.augment import DiffAugment
from lightning_genaug.callbacks import BaseAugmentationStrength
from lightning_genaug.images import from_uint8, make_grid, save_png, to_uint8
from lightning_genaug.metrics.functional import kernel_inception_distance
from lightning_genaug.metrics.trained_extractor import ClassifierFeatures

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from autoencoder_gan import AutoencoderGAN  # noqa: E402  (the user's model, unmodified)
from overfit import _one_thread, cached_classifier  # noqa: E402  (the limited-data experiment's helpers)
from overfit_data import TensorDataModule, read_image_zip, training_subset  # noqa: E402
from overfit_probe import FeatureReference, extract  # noqa: E402
from overfit_report import band_plot, mean_std, samples_figure  # noqa: E402

log = logging.getLogger("autoencoder_d_augmentation")

ARMS = ("no-augmentation", "ada", "diffaugment")


@dataclass(frozen=True)
class Setting:
    """Every number of the experiment."""

    train_images: int = 500
    heldout_images: int = 1000
    batch_size: int = 32
    batches: int = 720  # about 3 minutes per job on one loaded core: 46 passes over 500 images
    eval_every: int = 60
    width: int = 16  # autoencoder channels (D keeps the example's 32)
    disc_weight: float = 0.1
    ada_target: float = 0.6
    ada_speed_kimg: float = 10.0  # the run shows 23 kimg: p can cross [0, 1] twice
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = ARMS
    extractor_steps: int = 300  # fallback extractor only (the lead's is preferred): ~1 s a step here
    extractor_width: int = 16
    kid_subsets: int = 50
    kid_subset_size: int = 500
    notes: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ the run
def ada_callback(arm: str, setting: Setting) -> BaseAugmentationStrength:
    """The arm's only addition to the Trainer; every arm measures r_t the same way."""
    if arm == "no-augmentation":
        return FixedAugmentation()  # the default pipe at p = 0: nothing augmented
    if arm == "ada":
        return AdaptiveAugmentation(target=setting.ada_target, speed_kimg=setting.ada_speed_kimg)
    if arm == "diffaugment":
        return FixedAugmentation(pipe=DiffAugment("color,translation,cutout", p=1.0))
    raise ValueError(f"unknown arm {arm!r}; choose from {ARMS}")


def psnr(originals: torch.Tensor, reconstructions: torch.Tensor) -> float:
    """Mean over images of ``10 log10(peak^2 / MSE)`` on [-1, 1] images (peak-to-peak 2)."""
    mse = (originals - reconstructions).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(4.0 / mse)).mean())


@torch.no_grad()
def reconstruct(module: AutoencoderGAN, images: torch.Tensor, chunk: int = 250) -> torch.Tensor:
    return torch.cat([module(part) for part in images.split(chunk)]).clamp(-1, 1)


@torch.no_grad()
def mean_patch_logit(module: AutoencoderGAN, images: torch.Tensor, chunk: int = 250) -> float:
    return float(
        torch.cat([module.loss.discriminator(part).flatten(1) for part in images.split(chunk)]).mean()
    )


class Probe(pl.Callback):
    """Every ``every`` batches and at the end: D's train/held-out means, r_t, p, PSNRs (module in eval mode,
    so the augmentation hook is off)."""

    def __init__(
        self,
        ada: AdaptiveAugmentation,
        train: torch.Tensor,
        heldout: torch.Tensor,
        every: int,
        batch_size: int,
    ) -> None:
        self.ada, self.train, self.heldout, self.every = ada, train, heldout, every
        self.batch_size = batch_size
        self.batches = 0
        self.history: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if self.batches % self.every == 0 or trainer.global_step >= trainer.max_steps:
            self.record(pl_module)

    def record(self, module: AutoencoderGAN) -> None:
        module.eval()
        heldout = self.heldout[: len(self.train)]
        self.history.append(
            {
                "batches": self.batches,
                "kimg": self.batches * self.batch_size / 1000,
                "d_train": mean_patch_logit(module, self.train),
                "d_heldout": mean_patch_logit(module, heldout),
                "rt": float("nan") if self.ada.rt is None else self.ada.rt,
                "p": float(self.ada.p),
                "psnr_train": psnr(self.train, reconstruct(module, self.train)),
                "psnr_heldout": psnr(self.heldout, reconstruct(module, self.heldout)),
            }
        )
        module.train()


def run_job(
    arm: str, seed: int, setting: Setting, train: torch.Tensor, heldout: torch.Tensor, out: Path
) -> dict:
    """Train one (arm, seed); save the held-out reconstructions; return the history."""
    pl.seed_everything(seed, verbose=False)
    module = AutoencoderGAN(channels=3, width=setting.width, disc_weight=setting.disc_weight)
    ada = ada_callback(arm, setting)
    probe = Probe(ada, from_uint8(train), from_uint8(heldout), setting.eval_every, setting.batch_size)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=2 * setting.batches,  # manual optimisation: two optimiser steps per batch
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ada, probe],
    )
    labels = torch.zeros(len(train), dtype=torch.long)
    started = time.perf_counter()
    trainer.fit(module, TensorDataModule(train, labels, setting.batch_size))
    seconds = time.perf_counter() - started
    module.eval()
    reconstructions = to_uint8(reconstruct(module, from_uint8(heldout)))
    recon_path = reconstruction_path(out, arm, seed)
    recon_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(reconstructions, recon_path)
    return {
        "arm": arm,
        "seed": seed,
        "seconds": seconds,
        "history": probe.history,
    }


def job_path(out: Path, arm: str, seed: int) -> Path:
    return out / "jobs" / f"{arm}-seed{seed}.json"


def reconstruction_path(out: Path, arm: str, seed: int) -> Path:
    """The job's final reconstructions of the held-out images, uint8 ``(N, 3, 32, 32)``."""
    return out / "reconstructions" / f"{arm}-seed{seed}.pt"


def run_jobs(setting: Setting, images: torch.Tensor, out: Path) -> float:
    """Every (arm, seed) job not yet done, seed-major; returns the wall time of this invocation.

    Args:
        setting: the experiment.
        images: uint8 ``(N, 3, 32, 32)``; a fixed draw of ``train_images`` trains, ``heldout_images``
            of the rest are held out.
        out: the experiment folder (``jobs/``, ``reconstructions/``, ``heldout.pt``).
    """
    train_index, rest = training_subset(setting.train_images, len(images))
    train, heldout = images[train_index], images[rest[: setting.heldout_images]]
    out.mkdir(parents=True, exist_ok=True)
    torch.save(heldout, out / "heldout.pt")  # the summary's reference, usable while jobs still run
    started = time.perf_counter()
    for seed in setting.seeds:
        for arm in setting.arms:
            path = job_path(out, arm, seed)
            if path.exists():
                continue
            result = run_job(arm, seed, setting, train, heldout, out)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.with_suffix(".tmp").write_text(json.dumps(result))
            path.with_suffix(".tmp").replace(path)
            log.info("%s seed %d: %.0f s", arm, seed, result["seconds"])
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------- the metric
def classifier(
    setting: Setting, classifier_data: Path, out: Path, shared: Path | None = None
) -> tuple[ClassifierFeatures, str]:
    """The ``cifar-overfit`` experiment's extractor (``shared``) if given, else one trained here alike."""
    if shared is not None:
        state = torch.load(shared, weights_only=True)
        width, feature_dim = state["body.0.weight"].shape[0], state["head.weight"].shape[1]
        model = ClassifierFeatures(3, state["head.weight"].shape[0], width, feature_dim)
        model.load_state_dict(state)
        return model.eval().requires_grad_(False), f"the limited-data experiment's extractor ({shared})"
    images, labels = read_image_zip(classifier_data)
    model = cached_classifier(
        out / "extractor.pt", images, labels, setting.extractor_steps, setting.extractor_width, xflip=True
    )
    return model, (
        f"trained here with train_classifier_features on test-jpeg.zip ({setting.extractor_steps} steps, "
        f"width {setting.extractor_width})"
    )


def summarise(setting: Setting, extractor: nn.Module, extractor_note: str, out: Path) -> dict[str, Any]:
    """Per arm, mean and std over seeds: final PSNRs, FID/KID of held-out reconstructions, D gaps, r_t, p."""
    heldout = from_uint8(torch.load(out / "heldout.pt"))
    real_features = extract(extractor, heldout)
    reference = FeatureReference.of(real_features)
    halves = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(1)).chunk(2)
    floor = FeatureReference.of(real_features[halves[0]]).fid(real_features[halves[1]])
    results: dict[str, Any] = {"extractor": extractor_note, "fid_half_vs_half": floor, "arms": {}}
    for arm in setting.arms:
        rows = []
        for seed in setting.seeds:
            run = json.loads(job_path(out, arm, seed).read_text())
            features = extract(extractor, from_uint8(torch.load(reconstruction_path(out, arm, seed))))
            kid, _ = kernel_inception_distance(
                real_features,
                features,
                num_subsets=setting.kid_subsets,
                subset_size=min(setting.kid_subset_size, len(features)),
                generator=torch.Generator().manual_seed(0),
            )
            final = run["history"][-1]
            rows.append(
                {
                    "fid": reference.fid(features),
                    "kid_x1000": 1000 * float(kid),
                    "psnr_heldout": final["psnr_heldout"],
                    "psnr_train": final["psnr_train"],
                    "d_gap": final["d_train"] - final["d_heldout"],
                    "max_d_gap": max(point["d_train"] - point["d_heldout"] for point in run["history"]),
                    "rt": final["rt"],
                    "p": final["p"],
                    "seconds": run["seconds"],
                }
            )
        results["arms"][arm] = {key: mean_std([row[key] for row in rows]) for key in rows[0]}
    return results


def markdown(results: dict[str, Any], setting: Setting) -> str:
    def fmt(pair: list[float] | tuple[float, float], digits: int) -> str:
        return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

    lines = [
        f"Mean ± standard deviation over {len(setting.seeds)} seeds; FID/KID of the "
        f"{setting.heldout_images} held-out reconstructions against the held-out originals in classifier "
        f"features ({results['extractor']}); FID of two halves of the held-out originals: "
        f"{results['fid_half_vs_half']:.2f}.",
        "",
        "| arm | held-out PSNR (dB) | train PSNR (dB) | FID | KID x 1000 | final D gap train - held-out "
        "| largest D gap | final r_t | final p | wall s per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm, row in results["arms"].items():
        lines.append(
            f"| {arm} | {fmt(row['psnr_heldout'], 2)} | {fmt(row['psnr_train'], 2)} | {fmt(row['fid'], 2)} "
            f"| {fmt(row['kid_x1000'], 2)} | {fmt(row['d_gap'], 3)} | {fmt(row['max_d_gap'], 3)} "
            f"| {fmt(row['rt'], 2)} | {fmt(row['p'], 3)} | {row['seconds'][0]:.0f} |"
        )
    return "\n".join(lines)


def reconstructions_figure(setting: Setting, out: Path, path: Path, count: int = 16) -> Path:
    """The first ``count`` held-out images and each arm's reconstructions of them (the first seed)."""
    seed = setting.seeds[0]
    grids = {"held-out originals": torch.load(out / "heldout.pt")[:count]}
    grids |= {arm: torch.load(reconstruction_path(out, arm, seed))[:count] for arm in setting.arms}
    panels = []
    for name, images in grids.items():
        grid = save_png(make_grid(from_uint8(images), nrow=4), out / "samples" / f"{name}-seed{seed}.png")
        panels.append((name if name.startswith("held-out") else f"{name} (seed {seed})", grid))
    return samples_figure(panels, path)


def plots(setting: Setting, out: Path, folder: Path) -> list[Path]:
    """Band plots over training (mean and min-max over seeds) and the reconstructions figure."""
    runs = {
        arm: [json.loads(job_path(out, arm, seed).read_text()) for seed in setting.seeds]
        for arm in setting.arms
    }

    def curves(value) -> dict[str, list[list[tuple[float, float]]]]:
        return {
            arm: [[(point["kimg"], value(point)) for point in run["history"]] for run in arm_runs]
            for arm, arm_runs in runs.items()
        }

    return [
        band_plot(
            curves(lambda p: p["d_train"] - p["d_heldout"]),
            "kimg",
            "D(train reals) - D(held-out reals), mean patch logit",
            folder / "ae_d_gap.png",
        ),
        band_plot(
            curves(lambda p: p["rt"]),
            "kimg",
            "r_t = E[sign D(A(x_train))] over patches",
            folder / "ae_rt.png",
        ),
        band_plot(
            {"ada": curves(lambda p: p["p"])["ada"]} if "ada" in runs else {},
            "kimg",
            "ADA p",
            folder / "ae_p.png",
        ),
        band_plot(
            curves(lambda p: p["psnr_heldout"]),
            "kimg",
            "held-out reconstruction PSNR (dB)",
            folder / "ae_psnr.png",
        ),
        reconstructions_figure(setting, out, folder / "ae_reconstructions.png"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/ae-d-aug"))
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 train JPEG zip")
    parser.add_argument(
        "--classifier-data", type=Path, required=True, help="CIFAR-10 test JPEG zip (extractor)"
    )
    parser.add_argument(
        "--extractor",
        type=Path,
        default=None,
        help="the metric's classifier: the extractor.pt of a cifar-overfit run (default: train one alike)",
    )
    parser.add_argument("--plots", type=Path, default=None, help="folder for the PNG plots (default: --out)")
    parser.add_argument("--batches", type=int, default=None, help="training batches per job")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--summary-only", action="store_true", help="skip training; aggregate finished jobs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _one_thread()
    overrides: dict[str, Any] = {}
    if args.batches is not None:
        overrides["batches"] = args.batches
        overrides["eval_every"] = max(1, args.batches // 12)
    if args.seeds is not None:
        overrides["seeds"] = tuple(args.seeds)
    setting = Setting(**overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    wall = 0.0 if args.summary_only else run_jobs(setting, read_image_zip(args.data)[0], args.out)
    results = summarise(
        setting, *classifier(setting, args.classifier_data, args.out, args.extractor), args.out
    )
    results["wall_seconds_this_invocation"] = wall
    results["setting"] = asdict(setting)
    table = markdown(results, setting)
    paths = plots(setting, args.out, args.plots or args.out)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(table)
    print("plots:", *paths)


if __name__ == "__main__":
    main()
