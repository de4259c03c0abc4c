"""Suite-wide settings."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

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
