"""benchmarks/autoencoder_d_augmentation.py runs end to end on random images (no data set read)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lightning_genaug.metrics.trained_extractor import ClassifierFeatures

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import autoencoder_d_augmentation

    yield autoencoder_d_augmentation
    sys.modules.pop("autoencoder_d_augmentation", None)


def test_every_arm_trains_resumes_and_is_summarised(bench, tmp_path: Path) -> None:
    images = torch.randint(
        0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    setting = bench.Setting(
        train_images=16, heldout_images=16, batch_size=4, batches=4, eval_every=2, width=8, seeds=(0,),
        kid_subsets=2, kid_subset_size=8,
    )  # fmt: skip
    bench.run_jobs(setting, images, tmp_path)
    assert bench.run_jobs(setting, images, tmp_path) < 1.0  # every job done: nothing re-runs

    extractor = ClassifierFeatures(3, 10, width=4, feature_dim=8).eval()
    results = bench.summarise(setting, extractor, "untrained", tmp_path)
    assert set(results["arms"]) == set(bench.ARMS)
    assert results["arms"]["no-augmentation"]["p"][0] == 0.0
    assert results["arms"]["diffaugment"]["p"][0] == 1.0
    assert all(-1.0 <= row["rt"][0] <= 1.0 and row["fid"][0] >= 0.0 for row in results["arms"].values())
    table = bench.markdown(results, setting)
    assert all(f"| {arm} |" in table for arm in bench.ARMS)
    assert all(path.stat().st_size > 0 for path in bench.plots(setting, tmp_path, tmp_path))
