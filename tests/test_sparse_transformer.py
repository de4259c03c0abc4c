"""Sparse Transformer + DistAug module: masks, causality, kernels, BPD, training, EMA, KV-cache sampling."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from lightning_genaug.augment.distaug import DistAugTransforms, to_sequence
from lightning_genaug.data import DigitsDataModule
from lightning_genaug.distributed import seed_per_rank
from lightning_genaug.models.sparse_transformer import (
    SPARSE_TRANSFORMER_PRESETS,
    SparseTransformer,
    SparseTransformerDistAug,
    sparse_transformer_config,
)
from lightning_genaug.models.sparse_transformer.model import attention_mask, sparse_attention
from lightning_genaug.models.sparse_transformer.module import images_to_tokens, tokens_to_images

PATTERNS = ("local", "strided", "dense")
KERNELS = ("sdpa", "flex")  # flex runs as the unfused eager reference on CPU


@pytest.fixture(autouse=True)
def _quiet_flex() -> None:
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")


def naive_mask(pattern: str, seq_len: int, stride: int) -> torch.Tensor:
    """The attention patterns written from their definitions, one entry at a time."""
    allowed = {
        "local": lambda i, j: 0 <= i - j < stride,
        "strided": lambda i, j: i >= j and (i - j) % stride == 0,
        "dense": lambda i, j: i >= j,
    }[pattern]
    return torch.tensor([[allowed(i, j) for j in range(seq_len)] for i in range(seq_len)])


def tiny_net(pattern: str = "local", kernel: str = "sdpa", **overrides: object) -> SparseTransformer:
    """A float64 model of 4x4x1 images (16 tokens) with window/stride 3; ``pattern`` may be "a,b"."""
    torch.manual_seed(0)
    config = sparse_transformer_config(
        "tiny",
        channels=1,
        resolution=4,
        attention_layers=pattern,
        kernel=kernel,
        attention_stride=3,
        **overrides,
    )
    return SparseTransformer(config).double().eval()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_attention_masks_match_the_pattern_definitions(pattern: str) -> None:
    assert torch.equal(attention_mask(pattern, 20, 4, torch.device("cpu")), naive_mask(pattern, 20, 4))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_sparse_attention_equals_reference_dense_attention_with_the_explicit_mask(
    pattern: str, kernel: str
) -> None:
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 2, 2, 20, 8, generator=generator, dtype=torch.float64).unbind(0)
    v = torch.randn(2, 2, 20, 16, generator=generator, dtype=torch.float64)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    scores = scores.masked_fill(~naive_mask(pattern, 20, 4), float("-inf"))
    expected = scores.softmax(-1) @ v
    torch.testing.assert_close(sparse_attention(q, k, v, pattern, 4, kernel), expected)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("pattern", PATTERNS)
@torch.no_grad()
def test_model_is_causal_changing_token_t_never_changes_logits_up_to_t(pattern: str, kernel: str) -> None:
    net = tiny_net(pattern, kernel, n_layer=3)  # three layers: the receptive field grows past one window
    tokens = torch.randint(256, (2, 16))
    positions = torch.arange(16).expand(2, -1)
    start = net.start_embedding(2)
    logits = net(tokens, positions, start)
    for t in (0, 5, 14):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 128) % 256
        new_logits = net(changed, positions, start)
        torch.testing.assert_close(new_logits[:, : t + 1], logits[:, : t + 1], rtol=0, atol=1e-12)
        assert not torch.allclose(new_logits[:, t + 1], logits[:, t + 1]), (
            "the next position must see token t"
        )


@torch.no_grad()
def test_kernels_give_the_same_logits() -> None:
    tokens = torch.randint(256, (2, 16), generator=torch.Generator().manual_seed(1))
    logits = []
    for kernel in KERNELS:
        net = tiny_net("strided,local", kernel)
        logits.append(net(tokens, torch.arange(16).expand(2, -1), net.start_embedding(2)))
    torch.testing.assert_close(logits[0], logits[1])


def test_flex_on_cpu_refuses_to_train_with_a_clear_message() -> None:
    net = tiny_net("local", "flex")
    with pytest.raises(RuntimeError, match="kernel='sdpa'"):
        net(torch.randint(256, (2, 16)), torch.arange(16).expand(2, -1), net.start_embedding(2))


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    grads = []
    for checkpointing in (False, True):
        net = tiny_net("local", gradient_checkpointing=checkpointing).train()
        tokens = torch.randint(256, (2, 16), generator=torch.Generator().manual_seed(2))
        net(tokens, torch.arange(16).expand(2, -1), net.start_embedding(2)).logsumexp(-1).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_bf16_autocast_runs_and_returns_float32_logits() -> None:
    net = tiny_net("strided", bf16=True).float()
    logits = net(torch.randint(256, (2, 16)), torch.arange(16).expand(2, -1), net.start_embedding(2))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()


def test_named_configs_have_the_papers_sizes() -> None:
    expected_millions = {"15m": 15, "58m": 58, "150m": 152}
    for name, millions in expected_millions.items():
        with torch.device("meta"):
            net = SparseTransformer(sparse_transformer_config(name))
        assert net.num_parameters() / 1e6 == pytest.approx(millions, rel=0.04), name
    assert SPARSE_TRANSFORMER_PRESETS["15m"].n_layer * 4 == SPARSE_TRANSFORMER_PRESETS["58m"].n_layer
    with pytest.raises(ValueError, match="config"):
        sparse_transformer_config("huge")
    with pytest.raises(ValueError, match="Unknown SparseTransformerConfig field"):
        sparse_transformer_config("tiny", n_layers=3)


def coordinate_images(channels: int, size: int) -> torch.Tensor:
    """A float image whose token at (ch, row, col) is its own raster index (row * W + col) * C + ch."""
    index = torch.arange(channels * size * size).view(1, size, size, channels).permute(0, 3, 1, 2)
    return tokens_to_images(index)


def test_tokens_follow_the_batch_contract() -> None:
    images = torch.tensor([-1.0, -0.5, 0.0, 1.0]).view(1, 1, 2, 2)
    assert images_to_tokens(images).flatten().tolist() == [0, 64, 128, 255]
    tokens = torch.arange(256)
    assert torch.equal(images_to_tokens(tokens_to_images(tokens)), tokens)


def test_position_embeddings_follow_each_token_to_its_original_pixel() -> None:
    """A token read at step k gets the row/col/channel embedding of the pixel it came from."""
    module = SparseTransformerDistAug(
        channels=3, resolution=8, augment=DistAugTransforms(["rotation", "transposition", "color"])
    )
    images = coordinate_images(3, 8).expand(48, -1, -1, -1)
    torch.manual_seed(0)
    sequence, positions, transform_ids = module._sequences(images, augment=True)
    assert len(set(map(tuple, transform_ids.tolist()))) > 10
    assert torch.equal(positions, sequence), "the position of each token is where its value came from"
    rotated = (transform_ids[:, 0] == 1) & (transform_ids[:, 1] == 0) & (transform_ids[:, 2] == 0)
    # clockwise quarter turn: the first token read is the original bottom-left pixel, red channel
    assert (positions[rotated, 0] == (7 * 8 + 0) * 3 + 0).all()
    # the factorised embedding decodes (row, col, channel) in the same raster convention
    net = module.net
    with torch.no_grad():
        for table in (net.wte, net.wpe_col, net.wpe_chan, net.wpe_row):
            table.weight.zero_()
        net.wpe_row.weight[:, 0] = torch.arange(8.0)
        net.wpe_col.weight[:, 1] = torch.arange(8.0)
        net.wpe_chan.weight[:, 2] = torch.arange(3.0)
        embedded = net.token_embedding(sequence, positions)[..., :3]
    expected = torch.stack([positions // 24, (positions // 3) % 8, positions % 3], dim=-1).float()
    assert torch.equal(embedded, expected)


def test_start_token_is_the_sum_of_one_embedding_per_transform_kind_plus_class() -> None:
    module = SparseTransformerDistAug(
        channels=3, resolution=8, augment=DistAugTransforms(["rotation", "color"]), num_classes=10
    )
    net = module.net
    ids, labels = torch.tensor([[2, 5]]), torch.tensor([7])
    expected = net.wte_transform[0].weight[2] + net.wte_transform[1].weight[5] + net.wte_class.weight[7]
    torch.testing.assert_close(net.start_embedding(1, ids, labels)[0], expected)
    assert [len(e.weight) for e in net.wte_transform] == [4, 6]


def test_untrained_model_is_close_to_8_bits_per_dim() -> None:
    module = SparseTransformerDistAug(channels=3, resolution=8, augment=DistAugTransforms(["rotation"]))
    images = torch.rand(8, 3, 8, 8) * 2 - 1
    assert float(module.bits_per_dim(images)) == pytest.approx(8.0, abs=0.1)
    assert float(module.bits_per_dim((images, torch.zeros(8, dtype=torch.long)))) == pytest.approx(
        8.0, abs=0.1
    )


class _Recorder(L.Callback):
    def __init__(self) -> None:
        self.val_bpd: list[float] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_bpd.append(float(trainer.callback_metrics["val/bpd"]))


def test_training_on_digits_lowers_val_bpd_and_infers_the_image_shape(tmp_path) -> None:
    torch.manual_seed(0)
    data = DigitsDataModule(resolution=8, channels=1, batch_size=32, val_fraction=0.1, max_images=320)
    augment = DistAugTransforms(["rotation", "transposition"])
    module = SparseTransformerDistAug(augment=augment, config_overrides={"lr": 3e-3, "warmup_steps": 5})
    recorder = _Recorder()
    trainer = L.Trainer(
        max_steps=36,
        val_check_interval=9,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[recorder],
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=data)
    assert module.image_shape == (1, 8, 8) and module.hparams.resolution == 8
    assert "train/bpd" in trainer.callback_metrics
    assert len(recorder.val_bpd) == 4 and recorder.val_bpd[-1] < recorder.val_bpd[0] - 0.5 < 7.5
    assert int(module.ema_updates) == 36
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    restored = SparseTransformerDistAug.load_from_checkpoint(tmp_path / "model.ckpt")
    assert restored.image_shape == (1, 8, 8) and int(restored.ema_updates) == 36
    batch = next(iter(data.val_dataloader()))
    torch.testing.assert_close(restored.bits_per_dim(batch), module.bits_per_dim(batch))


def test_gradients_are_clipped_at_the_papers_norm_unless_the_trainer_sets_a_value(monkeypatch) -> None:
    module = SparseTransformerDistAug(channels=1, resolution=8)
    calls = []
    monkeypatch.setattr(module, "clip_gradients", lambda optimizer, **kwargs: calls.append(kwargs))
    module.configure_gradient_clipping(None)
    module.configure_gradient_clipping(None, gradient_clip_val=0.5, gradient_clip_algorithm="value")
    assert calls == [
        {"gradient_clip_val": 1.0, "gradient_clip_algorithm": "norm"},
        {"gradient_clip_val": 0.5, "gradient_clip_algorithm": "value"},
    ]


def test_validation_uses_the_identity_transform_and_the_ema_weights() -> None:
    module = SparseTransformerDistAug(channels=1, resolution=8, augment=DistAugTransforms(["rotation"]))
    with torch.no_grad():
        for param in module.ema_net.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    module.augment_pipe.sample_params = None  # validation must never draw a transform
    images = torch.rand(4, 1, 8, 8) * 2 - 1
    ema, raw = module.ema_net, module.net
    tokens = to_sequence(images_to_tokens(images))
    positions = torch.arange(64).expand(4, -1)
    start = ema.start_embedding(4, torch.zeros(4, 1, dtype=torch.long))
    logits = ema(tokens, positions, start)
    expected = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tokens) / math.log(2)
    torch.testing.assert_close(module.bits_per_dim(images).float(), expected.detach(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        raw_bpd = module._bits_per_dim(raw, images, None, augment=False).mean()
    assert abs(float(raw_bpd) - float(expected)) > 1e-3, (
        "the EMA copy, not the training weights, is evaluated"
    )


def test_each_ddp_rank_draws_its_own_transforms_from_its_first_batch() -> None:
    """``seed_everything`` seeds every rank alike; the module gives each rank its own stream, once a fit."""

    def transforms_of_two_batches(rank: int, world_size: int) -> list[torch.Tensor]:
        module = SparseTransformerDistAug(channels=1, resolution=4, augment=DistAugTransforms(["rotation"]))
        module.trainer = SimpleNamespace(global_rank=rank, world_size=world_size)  # a rank of a DDP run
        torch.manual_seed(0)  # seed_everything(0), alike on every rank
        draws = []
        for batch_idx in range(2):
            module.on_train_batch_start(None, batch_idx)
            draws.append(module.augment_pipe.sample_params(64)["transform_ids"])
        return draws

    def stream(reseed: Callable[[], None]) -> list[torch.Tensor]:
        torch.manual_seed(0)
        reseed()
        return [DistAugTransforms(["rotation"]).sample_params(64)["transform_ids"] for _ in range(2)]

    rank0, rank1 = transforms_of_two_batches(0, 2), transforms_of_two_batches(1, 2)
    assert not torch.equal(rank0[0], rank1[0])
    for rank, draws in enumerate((rank0, rank1)):  # re-seeded at the first batch only
        assert all(map(torch.equal, draws, stream(lambda rank=rank: seed_per_rank(rank, 2))))
    alone = transforms_of_two_batches(0, 1)  # one process: the stream is untouched
    assert all(map(torch.equal, alone, stream(lambda: None)))


@pytest.mark.parametrize("layers", [("strided", "local"), ("dense",)])
def test_kv_cache_sampling_draws_exactly_the_tokens_of_full_recompute(layers: tuple[str, ...]) -> None:
    module = SparseTransformerDistAug(
        channels=1,
        resolution=8,
        augment=DistAugTransforms(["rotation"]),
        num_classes=3,
        config_overrides={"attention_layers": layers, "n_layer": 3},
    ).double()
    cached = module.sample(3, generator=torch.Generator().manual_seed(7), transform=[1], temperature=0.9)
    recomputed = module.sample(
        3, generator=torch.Generator().manual_seed(7), transform=[1], temperature=0.9, use_cache=False
    )
    assert torch.equal(cached, recomputed)
    assert cached.shape == (3, 1, 8, 8) and cached.min() >= -1 and cached.max() <= 1
    other = module.sample(3, generator=torch.Generator().manual_seed(8), transform=[1], temperature=0.9)
    assert not torch.equal(cached, other)


def test_sample_checks_the_transform_argument() -> None:
    module = SparseTransformerDistAug(channels=1, resolution=8, augment=DistAugTransforms(["rotation"]))
    with pytest.raises(ValueError, match="transform"):
        module.sample(2, transform=[4])
    baseline = SparseTransformerDistAug(channels=1, resolution=8, augment=None)
    assert baseline.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="no DistAug"):
        baseline.sample(2, transform=[1])


def test_module_rejects_bad_arguments_with_clear_messages() -> None:
    with pytest.raises(ValueError, match="3 colour channels"):
        SparseTransformerDistAug(channels=1, resolution=8, augment=DistAugTransforms(["color"]))
    with pytest.raises(ValueError, match="both"):
        SparseTransformerDistAug(channels=3)
    with pytest.raises(ValueError, match="lr_schedule"):
        SparseTransformerDistAug(config_overrides={"lr_schedule": "step"})
    with pytest.raises(ValueError, match=r"`betas` must be two numbers in \[0, 1\)"):
        SparseTransformerDistAug(config_overrides={"betas": (0.9, 1.5)})
    with pytest.raises(RuntimeError, match="not built"):
        SparseTransformerDistAug().sample(1)


def _fit_distaug(root, steps: int, ckpt_path=None) -> SparseTransformerDistAug:
    """``steps`` batches of the tiny DistAug model on digits, ``last.ckpt`` written after every batch."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    L.seed_everything(0, verbose=False)
    data = DigitsDataModule(resolution=8, channels=1, batch_size=16, max_images=64)
    module = SparseTransformerDistAug(
        augment=DistAugTransforms(["rotation"]), config_overrides={"ema_decay": 0.5}
    )
    checkpoint = ModelCheckpoint(dirpath=root, save_last=True, save_top_k=0, every_n_train_steps=1)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[checkpoint],
        default_root_dir=root,
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module


def test_a_run_resumed_from_a_mid_epoch_checkpoint_has_the_uninterrupted_runs_ema_weights(tmp_path) -> None:
    """The checkpoint a callback writes at a batch's end holds that batch's EMA update."""
    straight = _fit_distaug(tmp_path / "straight", steps=3)
    _fit_distaug(tmp_path / "first", steps=2)
    resumed = _fit_distaug(tmp_path / "resumed", steps=3, ckpt_path=tmp_path / "first" / "last.ckpt")
    assert int(resumed.ema_updates) == int(straight.ema_updates) == 3
    for name, value in straight.ema_net.state_dict().items():
        torch.testing.assert_close(resumed.ema_net.state_dict()[name], value, rtol=0, atol=0, msg=name)
