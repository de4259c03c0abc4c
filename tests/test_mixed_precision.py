"""The GPU defaults, exercised on CPU: bf16 autocast in every GAN phase, float16 blocks, the Sparse
Transformer's bf16 path.

CPU autocast supports bfloat16 (and float16) for every op these models use, so the code a user's
first CUDA run takes (``StyleGAN2ADA(autocast_bf16=...)``, Lightning's ``bf16-mixed``, the networks'
``num_fp16_res`` blocks with ``conv_clamp``) runs here. Each test checks what a mixed-precision bug
would break: finite losses, float32 parameters and gradients, R1's double backward, the augmentation
resampling in float32, and closeness to float32 training.

Tolerance for "close to float32 training": after 4 batches (every phase twice) from the same seed,
each network's weight change has cosine similarity >= 0.95 to the float32 run's. Adam with
beta1 = 0 steps ``lr * g / sqrt(v)``, so rounding flips the sign of the smallest gradient entries:
measured 0.97-0.99 on this config; two float32 runs from different seeds give about 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from lightning_genaug.augment import AugmentPipe, Chain, DataScaling
from lightning_genaug.models.scalegan import ScaleGAN
from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.models.stylegan2.networks import SynthesisLayer
from lightning_genaug.regularizers import R1, VarianceRegularizer, r1_penalty

BATCH, BATCHES = 8, 4
MIN_UPDATE_COSINE = 0.95
# Every phase on batches 0 and 2: Gmain, Greg, Dmain, Dreg (R1 or ScaleGAN's variance), then EMA.
SCHEDULE = dict(config="tiny", resolution=8, channels=1, num_classes=0, config_overrides={"pl_interval": 2})
MODELS = ("stylegan2-ada", "scalegan", "scalegan-r1")
USES_ADA_PIPE = {"stylegan2-ada", "scalegan-r1"}


def build(name: str, seed: int = 0, augment_p: float = 0.5, **overrides) -> StyleGAN2ADA:
    """A fresh model ``name`` (its ADA pipe, if any, at ``augment_p``) seeded with ``seed``."""
    pl.seed_everything(seed)
    args = {**SCHEDULE, **overrides}
    if name == "stylegan2-ada":
        augment, regularizer = AugmentPipe("bgc", p=augment_p), R1(every_n_batches=2)
        return StyleGAN2ADA(augment=augment, regularizer=regularizer, **args)
    if name == "scalegan":
        return ScaleGAN(regularizer=VarianceRegularizer(every_n_batches=2), **args)
    ada_then_scaling = Chain([AugmentPipe("bgc", p=augment_p), DataScaling("uniform", p=0.5)])
    return ScaleGAN(regularizer=R1(every_n_batches=2), augment=ada_then_scaling, **args)


class PhaseRecorder:
    """Wraps a GAN module's ``_optimize`` to record, per phase, the loss and the gradients' dtypes."""

    def __init__(self, model: StyleGAN2ADA) -> None:
        self.losses: dict[str, list[torch.Tensor]] = {}
        self.grad_dtypes: set[torch.dtype] = set()
        self.param_dtypes: set[torch.dtype] = set()
        self.dreg_grad_norms: list[float] = []
        optimize = model._optimize

        def recording(optimizer, loss, phase, network) -> None:
            self.losses.setdefault(phase, []).append(loss.detach())
            optimize(optimizer, loss, phase, network)
            grads = [p.grad for p in network.parameters() if p.grad is not None]
            self.grad_dtypes |= {g.dtype for g in grads}
            self.param_dtypes |= {p.dtype for p in network.parameters()}
            if phase == "Dreg":
                self.dreg_grad_norms.append(float(torch.nn.utils.get_total_norm(grads)))

        model._optimize = recording

    def losses_are_finite(self) -> bool:
        return all(torch.isfinite(loss).all() for phase in self.losses.values() for loss in phase)


def images() -> torch.Tensor:
    return torch.rand(BATCH * BATCHES, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def train(model: pl.LightningModule, precision: str = "32-true", loader: DataLoader | None = None) -> None:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader or DataLoader(TensorDataset(images()), batch_size=BATCH))


def train_and_record(
    name: str, precision: str = "32-true", seed: int = 0, **overrides
) -> tuple[dict[str, torch.Tensor], PhaseRecorder]:
    """Weight changes per network (flattened) after 4 batches, and the recorder of the run."""
    model = build(name, seed, **overrides)
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    recorder = PhaseRecorder(model)
    train(model, precision)
    updates = {
        net: torch.cat(
            [(p.detach() - initial[n]).flatten() for n, p in model.named_parameters() if n.startswith(net)]
        )
        for net in ("G.", "D.", "G_ema.")
    }
    return updates, recorder


@contextmanager
def dtypes_seen_by(function_name: str, module=F) -> Iterator[list[torch.dtype]]:
    """Record the dtype of the first argument of every call of ``module.function_name``."""
    seen: list[torch.dtype] = []
    original = getattr(module, function_name)

    def spy(x, *args, **kwargs):
        seen.append(x.dtype)
        return original(x, *args, **kwargs)

    setattr(module, function_name, spy)
    try:
        yield seen
    finally:
        setattr(module, function_name, original)


@pytest.fixture(scope="module")
def float32_updates() -> dict[str, dict]:
    """The float32 run of each model, trained once for the module's tests."""
    return {name: train_and_record(name, autocast_bf16=False)[0] for name in MODELS}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    ("precision", "autocast_bf16"),
    [("32-true", True), ("bf16-mixed", False)],
    ids=["module-autocast", "lightning-bf16-mixed"],
)
def test_every_phase_trains_under_bf16_autocast_on_cpu_close_to_float32(
    name: str, precision: str, autocast_bf16: bool, float32_updates: dict
) -> None:
    """``autocast_bf16=True`` autocasts the main phases; so does Lightning's ``bf16-mixed`` (it autocasts
    the whole step, and the module turns autocast off for the regularisation phases)."""
    with dtypes_seen_by("linear") as linear_dtypes, dtypes_seen_by("grid_sample") as resample_dtypes:
        updates, recorder = train_and_record(name, precision, autocast_bf16=autocast_bf16)

    assert torch.bfloat16 in linear_dtypes  # autocast really ran (D's and the mapping's layers)
    assert set(recorder.losses) == {"Gmain", "Greg", "Dmain", "Dreg"}
    assert recorder.losses_are_finite()
    assert recorder.param_dtypes == recorder.grad_dtypes == {torch.float32}
    assert len(recorder.dreg_grad_norms) == 2 and all(
        0 < norm < float("inf") for norm in recorder.dreg_grad_norms
    )
    if name in USES_ADA_PIPE:
        assert resample_dtypes and set(resample_dtypes) == {torch.float32}  # the ADA pipe's geometry
    for net, update in updates.items():
        cosine = F.cosine_similarity(update, float32_updates[name][net], dim=0)
        assert cosine >= MIN_UPDATE_COSINE, f"{net} update cosine {cosine:.3f} vs float32"


def test_float32_runs_from_different_seeds_are_far_apart(float32_updates: dict) -> None:
    """The closeness tolerance can fail: independent runs are nowhere near it."""
    other_seed, _ = train_and_record("stylegan2-ada", seed=1, autocast_bf16=False)
    for net, update in other_seed.items():
        assert F.cosine_similarity(update, float32_updates["stylegan2-ada"][net], dim=0) < 0.5


def test_r1_double_backward_through_the_augmentation_works_under_bf16_autocast() -> None:
    """R1 on un-augmented reals, through ``AugmentPipe`` and D, all inside a CPU bf16 autocast."""
    model = build("stylegan2-ada", augment_p=1.0)
    real = (images()[:BATCH]).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16), dtypes_seen_by("grid_sample") as resample_dtypes:
        logits = model.D(model.augment_pipe(real), torch.zeros(BATCH, 0))
        penalty = r1_penalty(real, logits)
    assert logits.dtype == torch.bfloat16 and set(resample_dtypes) == {torch.float32}
    penalty.mean().backward()  # the second backward, into D's parameters
    grads = [p.grad for p in model.D.parameters() if p.grad is not None]
    assert torch.isfinite(penalty).all() and penalty.mean() > 0
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_autocast_follows_the_module_device_and_defaults_to_cuda_only() -> None:
    with dtypes_seen_by("linear") as default_dtypes:
        train(build("stylegan2-ada"))  # autocast_bf16=None: off on CPU
    assert set(default_dtypes) == {torch.float32}
    model = build("stylegan2-ada", autocast_bf16=True)
    with model.loss.main_autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


# ---------------------------------------------------------------------------------------- float16 blocks


CLAMP = 0.5


def fp16_model(**overrides) -> StyleGAN2ADA:
    """16x16 ``tiny`` with float16 blocks at 16x16 and 8x8 and a ``conv_clamp`` tight enough to act."""
    pl.seed_everything(0)
    return StyleGAN2ADA(
        "tiny",
        resolution=16,
        channels=1,
        num_classes=0,
        config_overrides={"pl_interval": 2, "num_fp16_res": 2, "conv_clamp": CLAMP},
        regularizer=R1(every_n_batches=2),
        **overrides,
    )


def test_float16_blocks_run_on_cpu_inside_an_autocast_and_clamp_their_activations() -> None:
    model = fp16_model()
    fp16_blocks = {
        res for res in model.G.synthesis.block_resolutions if getattr(model.G.synthesis, f"b{res}").use_fp16
    }
    assert fp16_blocks == {8, 16}
    outputs: dict[int, tuple[torch.dtype, float]] = {}
    for module in model.G.synthesis.modules():
        if isinstance(module, SynthesisLayer):
            module.register_forward_hook(
                lambda m, _in, out: outputs.__setitem__(m.resolution, (out.dtype, float(out.abs().max())))
            )
    z = torch.randn(4, model.G.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.zeros(4, 0)
    reference = model.G(z, c, noise_mode="const")
    assert {dtype for dtype, _ in outputs.values()} == {torch.float32}  # no autocast: CPU stays float32

    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.G(z, c, noise_mode="const")
    assert outputs[16][0] == outputs[8][0] == torch.float16 and outputs[4][0] == torch.bfloat16
    assert max(peak for _, peak in outputs.values()) == CLAMP  # conv_clamp acts, in every precision
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert (mixed - reference).abs().max() < 0.05 * reference.abs().max()


@pytest.mark.parametrize(
    ("precision", "autocast_bf16"),
    [("32-true", True), ("bf16-mixed", None)],
    ids=["module-autocast", "lightning-bf16-mixed"],
)
def test_training_with_float16_blocks_on_cpu_is_finite_in_every_phase(
    precision: str, autocast_bf16: bool | None
) -> None:
    """The CUDA default (bf16 main phases around float16 blocks) on CPU; the regularisers run float32."""
    model = fp16_model(autocast_bf16=autocast_bf16)
    recorder = PhaseRecorder(model)
    loader = DataLoader(TensorDataset(torch.rand(16, 1, 16, 16) * 2 - 1), batch_size=BATCH)
    with dtypes_seen_by("conv2d") as conv_dtypes:
        train(model, precision, loader)
    assert torch.float16 in conv_dtypes
    assert set(recorder.losses) == {"Gmain", "Greg", "Dmain", "Dreg"}
    assert recorder.losses_are_finite()
    assert recorder.grad_dtypes == {torch.float32}
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------------------------------- Sparse Transformer


class LossAndGradientDtypes(pl.Callback):
    """Records each training batch's loss and the dtypes of the gradients the optimiser steps with."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.grad_dtypes: set[torch.dtype] = set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.grad_dtypes.update(p.grad.dtype for p in pl_module.parameters() if p.grad is not None)


def test_sparse_transformer_bf16_path_trains_on_cpu_close_to_float32() -> None:
    """``bf16=True``: blocks under bf16 autocast, float32 logits and gradients; losses track float32's."""
    data = torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    runs = {}
    for bf16 in (False, True):
        pl.seed_everything(0)
        model = SparseTransformerDistAug(
            config_overrides={
                "bf16": bf16,
                "n_layer": 2,
                "attention_stride": 4,
                "warmup_steps": 0,
                "lr_schedule": "constant",
            },
            channels=1,
            resolution=4,
        )
        record = LossAndGradientDtypes()
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[record],
        )
        with dtypes_seen_by("linear") as linear_dtypes:
            trainer.fit(model, DataLoader(TensorDataset(data), batch_size=4))
        runs[bf16] = (record.losses, record.grad_dtypes, set(linear_dtypes))
    (fp32_losses, _, fp32_dtypes), (bf16_losses, bf16_grads, bf16_dtypes) = runs[False], runs[True]
    assert torch.bfloat16 in bf16_dtypes and torch.bfloat16 not in fp32_dtypes
    assert bf16_grads == {torch.float32}
    assert all(torch.isfinite(torch.tensor(bf16_losses)))
    # Per-batch NLL (nats per sub-pixel, about 5.5 here) within 1 % of float32's over 4 steps.
    assert bf16_losses == pytest.approx(fp32_losses, rel=0.01)
