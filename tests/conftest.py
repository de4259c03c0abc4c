"""Suite-wide settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


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
