"""Suite-wide settings."""

from __future__ import annotations

import atexit
import importlib.util
import io
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import lightning.pytorch  # noqa: F401  (below)
import numpy as np
import pytest
import torch
from PIL import Image

# Lightning gives its loggers a StreamHandler of the `sys.stderr` of the moment it is first imported. Imported
# here, that is the real stderr; imported first inside a test (`tests/test_cli.py` run alone), it is that
# test's captured stream, closed afterwards, and every later log line prints "--- Logging error ---".

try:  # the property-based fuzz (tests/test_fuzz.py); hypothesis is a dev dependency
    from datetime import timedelta

    from hypothesis import settings

    # "ci" (the default): derandomised, so every run checks the same examples; bounded so that the
    # fuzz adds seconds, not minutes. HYPOTHESIS_PROFILE=explore draws new examples on every run.
    settings.register_profile("ci", derandomize=True, max_examples=60, deadline=timedelta(seconds=5))
    settings.register_profile("explore", max_examples=500, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:
    pass

# No test may touch the network: an empty URL switches off the Inception weights download (tests of
# the download set a local file:// URL themselves).
os.environ["LIGHTNING_GENAUG_INCEPTION_URL"] = ""
# Nor write outside its temporary folders: the real-statistics cache of every test process (the doc
# blocks and example configs compute metrics) goes to a folder of its own, not the user's ~/.cache.
os.environ["LIGHTNING_GENAUG_CACHE"] = tempfile.mkdtemp(prefix="lightning-genaug-test-cache-")
atexit.register(shutil.rmtree, os.environ["LIGHTNING_GENAUG_CACHE"], ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files with a ``slow`` test first, the others in their collection order.

    Each test worker runs whole files (``--dist loadfile``), taking the next one in this order
    (``--no-loadscope-reorder``) when it is almost done. Started first, the long files leave the many short
    ones to even out the end, when a worker with nothing left to take idles while the other finishes.
    """
    files_with_slow_tests = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in files_with_slow_tests)  # stable: files stay whole, in order


@pytest.fixture(autouse=True, scope="session")
def single_intra_op_thread() -> Iterator[None]:
    """Test tensors are tiny: one intra-op thread is faster, and immune to a busy 2-core CI machine.

    With two OpenMP threads and the second core busy, small convolutions run 10-100x slower
    (measured here: the classifier-extractor test went from 0.3 s to 35 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def fresh_wandb_settings() -> Iterator[None]:
    """A test that ran a W&B logger must not choose where the next test's run writes (they share a pytest
    worker): a run left open (a doc block's ``WANDB_MODE=disabled`` run) would be reused by the next
    ``WandbLogger``, and W&B's process-wide settings keep the first run's folder and mode."""
    yield
    if "wandb" in sys.modules:
        sys.modules["wandb"].finish()
        sys.modules["wandb"].teardown()


CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="session")
def cifar_zips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with both zips of the CIFAR-10 JPEG layout (``<split>/<class>/<NNNN>.jpg``), 10 per class.

    The images are noise around a class-dependent grey level, so that a classifier has something to
    learn; tests never read the real data.
    """
    root = tmp_path_factory.mktemp("cifar10")
    rng = np.random.default_rng(0)
    for name, split in (("train-10k-jpeg.zip", "train"), ("test-jpeg.zip", "test")):
        with zipfile.ZipFile(root / name, "w") as archive:
            for label, class_name in enumerate(CIFAR_CLASSES):
                for index in range(10):
                    pixels = rng.normal(25 * label, 40, (32, 32, 3)).clip(0, 255).astype(np.uint8)
                    encoded = io.BytesIO()
                    Image.fromarray(pixels).save(encoded, "JPEG")
                    archive.writestr(f"{split}/{class_name}/{index:04d}.jpg", encoded.getvalue())
    return root


# ------------------------------------------------------------- benchmarks/limited_data.py, imported once

LIMITED_DATA_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "limited_data.py"


@pytest.fixture(scope="module")
def limited_data():
    spec = importlib.util.spec_from_file_location("limited_data", LIMITED_DATA_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["limited_data"] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules["limited_data"]


@pytest.fixture(scope="module")
def two_batch_quick(limited_data) -> Iterator[None]:
    """``--setting digits-overfit --quick`` with an eighth of its training: 2 batches of 32 per job,
    probed at 0, 1/32 and 1/16 kimg. What is checked (every arm and seed, a few probe points, finite
    values, resuming) needs the jobs, not their length."""
    import overfit

    quick = overfit.OverfitSetting.quick
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            overfit.OverfitSetting, "quick", lambda self: replace(quick(self), kimg=0.0625, eval_kimg=0.03125)
        )
        yield


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``lightning-genaug ARGS`` in-process; returns (exit code, stdout, stderr).

    (tests/test_cli.py has its own ``cli``, which joins stdout and stderr.)
    """
    from lightning_genaug.cli import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
        try:
            main([str(arg) for arg in args])
            code = 0
        except SystemExit as exit_info:
            code = exit_info.code or 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
