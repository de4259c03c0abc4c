"""``StyleGAN2ADA(compile=True)`` trains with ``torch.compile`` (inductor, CPU) exactly like eager.

The compiled synthesis network and D run the main phases (G's and D's, with and without gradients
for each network: four graphs plus their backward graphs); the regularisation phases use the eager
modules. With ``fallback_random`` inductor draws the synthesis noise from the eager generator, so the
two runs see the same numbers and must agree to float32 rounding of the fused kernels: every
weight within 1e-4 after 3 batches (measured: 8e-6).

Inductor compiles C++ kernels with the system compiler: about 70 s of CPU time on a cold cache here
(warm: seconds), hence ``slow``. If compilation itself cannot run on a machine (no C++ compiler),
the test skips with the error it met.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch._dynamo
import torch._dynamo.utils
import torch._inductor.config
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.regularizers import R1

ATOL = 1e-4


def train(compile: bool) -> StyleGAN2ADA:
    """3 batches of ``tiny`` at 8x8 with every phase on batches 0 and 2."""
    pl.seed_everything(0)
    model = StyleGAN2ADA(
        "tiny",
        resolution=8,
        channels=1,
        num_classes=0,
        config_overrides={"pl_interval": 2},
        regularizer=R1(every_n_batches=2),
        compile=compile,
    )
    images = torch.rand(24, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(TensorDataset(images), batch_size=8))
    return model


@pytest.mark.slow
def test_compiled_training_matches_eager_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    eager = train(compile=False)
    try:
        compiled = train(compile=True)
    except torch._dynamo.exc.BackendCompilerFailed as error:  # e.g. no C++ compiler on this machine
        pytest.skip(f"torch.compile (inductor, CPU) cannot compile here: {str(error).splitlines()[0]}")
    finally:
        torch._dynamo.reset()

    assert set(compiled._compiled) == {"synthesis", "D"}
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 4  # G and D, with and without grads
    assert compiled.num_batches == eager.num_batches == 3
    for (name, expected), actual in zip(
        eager.state_dict().items(), compiled.state_dict().values(), strict=True
    ):
        if expected.is_floating_point():
            torch.testing.assert_close(
                actual, expected, atol=ATOL, rtol=0, msg=lambda m, name=name: f"{name}: {m}"
            )
