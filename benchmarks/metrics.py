"""Evaluation time of the metrics: the functional path (before 0.2) vs the torchmetrics path, one process.

Both sides evaluate the same generator on the same ``--num-gen`` 32x32 RGB images with the same
feature extractor (a randomly initialised ``ClassifierFeatures``, 128-d features, since the
Inception weights are not on every machine) against the same real statistics (of other samples of
the same generator), computed once beforehand (as the on-disk cache does):

- ``functional``: what ``GenerativeMetrics.evaluate`` did before 0.2: generate, extract, concatenate
  all features, then the pure functions ``gaussian_statistics`` + ``frechet_distance``,
  ``kernel_inception_distance``, ``inception_score``, ``precision_recall``;
- ``torchmetrics``: ``GenerativeMetrics.evaluate`` now (each batch's features fed to the
  ``FrechetInceptionDistance``, ``KernelInceptionDistance``, ``InceptionScore``, ``PrecisionRecall``
  torchmetrics, then ``compute``).

The two take turns ``--repeats`` times; the median wall and CPU seconds (this process only: the
figure to read on a shared machine) are printed with both sides' values (close, not equal: the two
paths draw different generated images from the same generator). A second table times the Fréchet
distance alone at Inception's D = 2048: ours (``frechet_distance``, two symmetric
eigendecompositions) vs torchmetrics' ``_compute_fid``
(``eigvals`` of the non-symmetric product).

Usage::

    python benchmarks/metrics.py                 # 10k images, 2 repeats
    python benchmarks/metrics.py --num-gen 2000 --repeats 1 --fid-dim 512   # quick
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.image.fid import _compute_fid

from lightning_genaug.callbacks import GenerativeMetrics
from lightning_genaug.metrics import (
    KID,
    RealData,
    RealStatistics,
    extract_features,
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
    precision_recall,
)
from lightning_genaug.metrics.trained_extractor import ClassifierFeatures

SIZE = 32
METRICS = ("fid", "kid", "is", "pr")


class ConvGenerator(pl.LightningModule):
    """A small fixed conv generator with the generator protocol (cost comparable to a tiny StyleGAN2)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 128 * 4 * 4)
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2),
            nn.Conv2d(128, 64, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(64, 32, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(32, 3, 3, padding=1),
            nn.Tanh(),
        )

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None):
        z = torch.randn(n, 64, generator=generator, device=self.device)
        return self.net(self.fc(z).view(n, 128, 4, 4))


def functional_evaluation(
    module: ConvGenerator, extractor: nn.Module, real: RealStatistics, args: argparse.Namespace
) -> dict[str, float]:
    """The pre-0.2 path: all features concatenated, then the pure functions."""
    generator = torch.Generator().manual_seed(0)
    features, logits = [], []
    for start in range(0, args.num_gen, args.batch_size):
        count = min(args.batch_size, args.num_gen - start)
        batch_features, batch_logits = extract_features(extractor, module.sample(count, generator=generator))
        features.append(batch_features)
        logits.append(batch_logits)
    fake, fake_logits = torch.cat(features), torch.cat(logits)
    fid = frechet_distance(real.mu, real.sigma, *gaussian_statistics(fake))
    subset_size = min(1000, args.num_gen, args.num_real)
    kid, _ = kernel_inception_distance(
        real.features, fake, args.kid_subsets, subset_size, torch.Generator().manual_seed(0)
    )
    score, _ = inception_score(fake_logits, 10)
    precision, recall = precision_recall(real.features, fake)
    return {
        "fid": float(fid),
        "kid": float(kid),
        "is": float(score),
        "precision": float(precision),
        "recall": float(recall),
    }


def timed(step: Callable[[], Any]) -> tuple[tuple[float, float], Any]:
    """``((wall seconds, CPU seconds of this process), result)``; on a shared machine read the CPU time."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = step()
    return (time.perf_counter() - wall, time.process_time() - cpu), result


def median(times: list[tuple[float, float]], column: int) -> float:
    return statistics.median(t[column] for t in times)


def run_evaluation(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    module = ConvGenerator().eval()
    extractor = ClassifierFeatures(3, 10).eval()
    real_images = module.sample(args.num_real, generator=torch.Generator().manual_seed(1))  # same law
    callback = GenerativeMetrics(
        metrics=tuple(KID(subsets=args.kid_subsets) if name == "kid" else name for name in METRICS),
        num_gen=args.num_gen,
        batch_size=args.batch_size,
        feature_extractor=extractor,
        real=RealData(real_images, use_cache=False),
        progress_bar=False,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(module)
    callback.evaluate(trainer, module)  # computes and keeps the real statistics (the cache's job)
    real = callback._real_stats

    def torchmetrics_evaluation() -> dict[str, float]:
        values = callback.evaluate(trainer, module)
        return {name.removeprefix("metrics/"): value for name, value in values.items() if "std" not in name}

    sides = {
        "functional": lambda: functional_evaluation(module, extractor, real, args),
        "torchmetrics": torchmetrics_evaluation,
    }
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    values: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for name, step in sides.items():
            elapsed, values[name] = timed(step)
            seconds[name].append(elapsed)
    print(
        f"\n## evaluation of {args.num_gen} generated {SIZE}x{SIZE} images against {args.num_real} real "
        f"({', '.join(METRICS)}; {args.kid_subsets} KID subsets of 1000; median of {args.repeats})"
    )
    print("| path | wall s | CPU s | " + " | ".join(values["functional"]) + " |")
    print("|---|---|---|" + "---|" * len(values["functional"]))
    for name in sides:
        cells = " | ".join(f"{value:.6g}" for value in values[name].values())
        print(f"| {name} | {median(seconds[name], 0):.2f} | {median(seconds[name], 1):.2f} | {cells} |")
    print("(generated images differ between the paths: one generator stream vs one seed per chunk)")


def run_frechet(args: argparse.Namespace) -> None:
    generator = torch.Generator().manual_seed(0)
    dim = args.fid_dim
    mixing = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    samples = [
        torch.randn(2 * dim, dim, generator=generator, dtype=torch.float64) @ mixing + shift
        for shift in (0.0, 0.1)
    ]
    stats = [gaussian_statistics(features) for features in samples]
    sides = {"ours: frechet_distance": frechet_distance, "torchmetrics: _compute_fid": _compute_fid}
    print(f"\n## Fréchet distance alone, D = {dim} (median of {args.repeats})")
    print("| implementation | wall s | CPU s | value |")
    print("|---|---|---|---|")
    runs: dict[str, list[tuple[tuple[float, float], float]]] = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, function in sides.items():
            runs[name].append(timed(lambda f=function: float(f(*stats[0], *stats[1]))))
    for name, results in runs.items():
        times = [t for t, _ in results]
        print(f"| {name} | {median(times, 0):.2f} | {median(times, 1):.2f} | {results[0][1]:.10g} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-gen", type=int, default=10_000)
    parser.add_argument("--num-real", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--fid-dim", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    run_evaluation(args)
    run_frechet(args)


if __name__ == "__main__":
    main()
