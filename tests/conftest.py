"""Suite-wide settings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

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
