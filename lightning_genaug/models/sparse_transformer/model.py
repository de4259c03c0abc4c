"""Sparse Transformer over the raster sequence of sub-pixels (Child et al., 2019), nanoGPT style.

An image ``(C, H, W)`` of 8-bit values is read as ``L = H*W*C`` tokens in raster order, channels
last (token ``(row * W + col) * C + ch``); each token is predicted with a 256-way softmax from the
tokens before it. The input at position ``k`` is a start-of-sequence vector for ``k = 0`` and the
embedding of token ``k - 1`` otherwise (the usual shift by one).

Attention patterns (Child et al. 2019, "strided" factorisation), for query ``i`` and key ``j``:

* ``"local"``: the previous ``k`` positions, ``0 <= i - j < k``;
* ``"strided"``: every ``k``-th position, ``i >= j`` and ``(i - j) % k == 0``;
* ``"dense"``: all earlier positions, ``i >= j``.

Layers cycle through ``attention_layers`` (the paper alternates strided and local with
``k = 96``: one row of a 32x32x3 image, and the same sub-pixel in every earlier row).

Kernels (``kernel``): ``"auto"`` picks flex-attention block masks (compiled) for sparse patterns
on CUDA and flash SDPA (``is_causal``) for dense ones; ``"sdpa"`` is dense SDPA with a boolean
mask built from the pattern (the CPU path: it trains everywhere), ``is_causal`` for ``dense``;
``"flex"`` forces flex attention (compiled on CUDA; on CPU the unfused eager reference, forward
only, since flex has no CPU backward). Sampling uses a per-layer KV cache: step ``t`` attends to
the ``t + 1`` cached keys allowed by the pattern, so it costs O(L) instead of an O(L^2) recompute.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lightning_genaug._checks import check_choice, check_positive_int, check_range
from lightning_genaug.models.presets import overrides_type, resolve_preset

log = logging.getLogger(__name__)

ATTENTION_PATTERNS = ("local", "strided", "dense")
KERNELS = ("auto", "sdpa", "flex")
LR_SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class SparseTransformerConfig:
    """Hyper-parameters of :class:`SparseTransformer`.

    The named presets in :data:`SPARSE_TRANSFORMER_PRESETS` follow the DistAug paper's CIFAR-10 models.
    """

    channels: int = 3  # C: sub-pixels per pixel; the sequence is H*W*C long
    resolution: int = 32  # H = W
    n_layer: int = 32
    n_head: int = 2
    n_embd: int = 256
    # Child et al. use half-size feed-forward and query-key projections for the 58M model
    # (mlp_ratio 2, qk_ratio 0.5); the 152M model uses full sizes (4, 1.0).
    mlp_ratio: float = 2.0
    qk_ratio: float = 0.5
    dropout: float = 0.0  # embedding and residual dropout; the paper tunes it per DistAug setting
    attention_layers: tuple[str, ...] = ("strided", "local")  # cycled over the layers
    attention_stride: int = 96  # k: local window and stride; 96 = one row of 32x32x3 sub-pixels
    kernel: str = "auto"  # auto | sdpa | flex; see the module docstring
    gradient_checkpointing: bool = False  # recompute block activations in backward (memory for time)
    bf16: bool = False  # run blocks under bf16 autocast (logits come back float32)
    vocab_size: int = 256  # 8-bit sub-pixels
    num_transform_options: tuple[int, ...] = field(default_factory=tuple)  # per DistAug kind, 0 = none
    num_classes: int = 0  # > 0 adds a class embedding to the start token
    # --- training (read by SparseTransformerDistAug, as StyleGAN2Config holds StyleGAN2ADA's)
    lr: float = 1e-3  # peak learning rate of AdamW
    betas: tuple[float, float] = (0.9, 0.95)  # beta2 < 0.999: steadier with long sequences (GPT practice)
    weight_decay: float = 0.01  # on matrices and embeddings only (the paper: 0.01)
    warmup_steps: int = 100  # linear warmup from lr / warmup_steps
    lr_schedule: str = "cosine"  # cosine | linear | constant after the warmup
    min_lr_ratio: float = 0.0  # final lr as a fraction of lr
    schedule_steps: int | None = None  # steps the schedule decays over; None: the trainer's estimate
    ema_decay: float = 0.999  # per-batch decay of the sampling weights' EMA (the paper: 0.999)

    def __post_init__(self) -> None:
        positive = ("channels", "resolution", "n_layer", "n_head", "n_embd", "attention_stride", "vocab_size")
        for name in positive:
            check_positive_int(name, getattr(self, name))
        check_positive_int("num_classes", self.num_classes, allow_zero=True)
        check_range("dropout", self.dropout, 0.0, 1.0, high_inclusive=False)
        check_range("lr", self.lr, 0.0, low_inclusive=False)
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"`betas` must be two numbers in [0, 1), got {self.betas!r}; e.g. (0.9, 0.95).")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        check_range("weight_decay", self.weight_decay, 0.0)
        check_positive_int("warmup_steps", self.warmup_steps, allow_zero=True)
        self.lr_schedule = check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_range("min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        if self.schedule_steps is not None:
            check_positive_int("schedule_steps", self.schedule_steps)
        check_range("ema_decay", self.ema_decay, 0.0, 1.0, high_inclusive=False)
        check_range("mlp_ratio", self.mlp_ratio, 0.0, low_inclusive=False)
        check_range("qk_ratio", self.qk_ratio, 0.0, low_inclusive=False)
        self.kernel = check_choice("kernel", self.kernel, KERNELS)
        if isinstance(self.attention_layers, str):
            self.attention_layers = tuple(self.attention_layers.split(","))
        self.attention_layers = tuple(
            check_choice("attention_layers", pattern, ATTENTION_PATTERNS) for pattern in self.attention_layers
        )
        if not self.attention_layers:
            raise ValueError("`attention_layers` is empty; give e.g. ('strided', 'local') or ('dense',).")
        self.num_transform_options = tuple(int(n) for n in self.num_transform_options)
        for head_dim, what in ((self.qk_dim, "qk_ratio * n_embd"), (self.n_embd, "n_embd")):
            if head_dim % self.n_head:
                raise ValueError(f"{what} = {head_dim} must be divisible by `n_head` = {self.n_head}.")

    @property
    def seq_len(self) -> int:
        """L = H * W * C."""
        return self.resolution * self.resolution * self.channels

    @property
    def qk_dim(self) -> int:
        """Width of the query and key projections (all heads)."""
        return int(round(self.n_embd * self.qk_ratio))

    def pattern(self, layer: int) -> str:
        """Attention pattern of ``layer``."""
        return self.attention_layers[layer % len(self.attention_layers)]


SparseTransformerOverrides = overrides_type(
    SparseTransformerConfig,
    "SparseTransformerOverrides",
    exclude=("channels", "resolution", "num_transform_options", "num_classes"),
)
"""The type of ``SparseTransformerDistAug(config_overrides=...)``: the :class:`SparseTransformerConfig`
fields the module does not set itself (it sets the image shape, the DistAug options and the classes),
each optional, so that the CLI checks keys and values."""

SPARSE_TRANSFORMER_PRESETS: dict[str, SparseTransformerConfig] = {
    # CPU tests and the digits example: 8x8 images, window/stride = one row of sub-pixels.
    "tiny": SparseTransformerConfig(
        n_layer=2, n_head=2, n_embd=64, mlp_ratio=4.0, qk_ratio=1.0, attention_stride=8
    ),
    # DistAug paper, CIFAR-10 32x32x3: 15M = a quarter of the 58M model's layers.
    "15m": SparseTransformerConfig(n_layer=32, n_head=2, n_embd=256, attention_stride=96),
    # Child et al. 2019 CIFAR-10 model (58M).
    "58m": SparseTransformerConfig(n_layer=128, n_head=2, n_embd=256, attention_stride=96),
    # DistAug paper's 152M model: 48 layers x 512 x 16 heads, full-size projections.
    "150m": SparseTransformerConfig(
        n_layer=48, n_head=16, n_embd=512, mlp_ratio=4.0, qk_ratio=1.0, attention_stride=96
    ),
}


def sparse_transformer_config(name: str = "tiny", **overrides: object) -> SparseTransformerConfig:
    """The preset ``name`` with ``overrides`` applied (e.g. ``channels``, ``resolution``).

    The same mechanism as :func:`lightning_genaug.models.stylegan2.stylegan2_config`
    (:func:`lightning_genaug.models.presets.resolve_preset`).

    >>> sparse_transformer_config("15m", channels=3, resolution=32).n_layer
    32
    """
    return resolve_preset(SPARSE_TRANSFORMER_PRESETS, name, overrides)


@lru_cache(maxsize=32)
def attention_mask(pattern: str, seq_len: int, stride: int, device: torch.device) -> torch.Tensor:
    """Boolean ``(L, L)`` mask, True where query ``i`` may attend to key ``j`` (cached).

    >>> attention_mask("strided", 5, 2, torch.device("cpu")).int()[4]
    tensor([1, 0, 1, 0, 1], dtype=torch.int32)
    """
    query = torch.arange(seq_len, device=device).view(-1, 1)
    key = torch.arange(seq_len, device=device).view(1, -1)
    offset = query - key
    if pattern == "local":
        return (offset >= 0) & (offset < stride)
    if pattern == "strided":
        return (offset >= 0) & (offset % stride == 0)
    return offset >= 0


MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def _mask_mod(pattern: str, stride: int) -> MaskMod:
    """The pattern as a flex-attention ``mask_mod(batch, head, query, key) -> bool tensor``."""

    def local(
        batch: torch.Tensor, head: torch.Tensor, query: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor:
        return (query >= key) & (query - key < stride)

    def strided(
        batch: torch.Tensor, head: torch.Tensor, query: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor:
        return (query >= key) & ((query - key) % stride == 0)

    def dense(
        batch: torch.Tensor, head: torch.Tensor, query: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor:
        return query >= key

    return {"local": local, "strided": strided, "dense": dense}[pattern]


@lru_cache(maxsize=32)
def _block_mask(pattern: str, seq_len: int, stride: int, device: torch.device) -> Any:
    """Flex-attention ``BlockMask`` of the pattern (cached; built once per shape and device)."""
    from torch.nn.attention.flex_attention import create_block_mask

    return create_block_mask(_mask_mod(pattern, stride), None, None, seq_len, seq_len, device=device)


@lru_cache(maxsize=1)
def _compiled_flex_attention() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def sparse_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pattern: str, stride: int, kernel: str = "auto"
) -> torch.Tensor:
    """Causal attention with a sparse pattern.

    Args:
        q, k: ``(B, n_head, T, E_qk)``; v: ``(B, n_head, T, E_v)``.
        pattern: ``local``, ``strided`` or ``dense``.
        stride: k of the pattern.
        kernel: ``auto``, ``sdpa`` or ``flex`` (see the module docstring).

    Returns:
        ``(B, n_head, T, E_v)``.
    """
    seq_len = q.shape[-2]
    use_flex = kernel == "flex" or (kernel == "auto" and q.is_cuda and pattern != "dense")
    if use_flex:
        from torch.nn.attention.flex_attention import flex_attention

        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        if needs_grad and not q.is_cuda:
            raise RuntimeError(
                "kernel='flex' has no backward on CPU in current torch; train with kernel='sdpa' or 'auto' "
                "(flex on CPU is for inference and tests, under torch.no_grad())."
            )

        attend = _compiled_flex_attention() if q.is_cuda else flex_attention
        return attend(q, k, v, block_mask=_block_mask(pattern, seq_len, stride, q.device))
    if pattern == "dense":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    mask = attention_mask(pattern, seq_len, stride, q.device)  # (T, T), True = attend
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class KVCache:
    """Keys and values of every layer for incremental decoding, preallocated to the full length.

    Shape:
        ``keys[layer]``: ``(B, n_head, L, E_qk)``; ``values[layer]``: ``(B, n_head, L, E_v)``.
    """

    def __init__(
        self, config: SparseTransformerConfig, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> None:
        qk_head, v_head = config.qk_dim // config.n_head, config.n_embd // config.n_head
        shape = (batch_size, config.n_head, config.seq_len)
        self.keys = [torch.empty(*shape, qk_head, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.values = [torch.empty(*shape, v_head, device=device, dtype=dtype) for _ in range(config.n_layer)]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SparseTransformerConfig, layer: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qk_dim, self.v_dim = config.qk_dim, config.n_embd
        self.pattern = config.pattern(layer)
        self.stride = config.attention_stride
        self.kernel = config.kernel
        self.c_attn = nn.Linear(config.n_embd, 2 * self.qk_dim + self.v_dim)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, steps, _ = x.shape
        q, k, v = self.c_attn(x).split([self.qk_dim, self.qk_dim, self.v_dim], dim=2)
        # (B, T, width) -> (B, n_head, T, width / n_head)
        return tuple(t.view(batch, steps, self.n_head, -1).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, T, n_embd)`` -> ``(B, T, n_embd)``."""
        q, k, v = self._heads(x)
        y = sparse_attention(q, k, v, self.pattern, self.stride, self.kernel)
        y = y.transpose(1, 2).reshape(x.shape)  # (B, T, n_embd)
        return self.resid_dropout(self.c_proj(y))

    def decode(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, step: int) -> torch.Tensor:
        """One decoding step: ``x`` ``(B, 1, n_embd)`` at position ``step``, updating the layer's cache."""
        q, k, v = self._heads(x)
        keys[:, :, step] = k[:, :, 0]
        values[:, :, step] = v[:, :, 0]
        seen = step + 1
        mask = attention_mask(self.pattern, keys.shape[2], self.stride, x.device)[
            step:seen, :seen
        ]  # (1, t+1)
        y = F.scaled_dot_product_attention(q, keys[:, :, :seen], values[:, :, :seen], attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).reshape(x.shape))


class MLP(nn.Module):
    def __init__(self, config: SparseTransformerConfig) -> None:
        super().__init__()
        hidden = int(round(config.mlp_ratio * config.n_embd))
        self.c_fc = nn.Linear(config.n_embd, hidden)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(hidden, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: SparseTransformerConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def decode(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, step: int) -> torch.Tensor:
        x = x + self.attn.decode(self.ln_1(x), keys, values, step)
        return x + self.mlp(self.ln_2(x))


class SparseTransformer(nn.Module):
    """Autoregressive model of 8-bit sub-pixel sequences with DistAug / class conditioning.

    Conditioning (DistAug paper, Sec. 4): the start-of-sequence vector is the sum of one learned
    embedding per transform kind (``wte_transform[kind](id)``), plus a class embedding when
    ``num_classes > 0``; a plain learned ``sos`` vector is used when there is no conditioning.
    Position embeddings are factorised (row + column + channel) and looked up at each token's
    *original* position ``positions[b, k]``, so they move with the pixels under a permutation.
    """

    def __init__(self, config: SparseTransformerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, d)  # token (sub-pixel value) embedding
        self.wpe_row = nn.Embedding(config.resolution, d)
        self.wpe_col = nn.Embedding(config.resolution, d)
        self.wpe_chan = nn.Embedding(config.channels, d)
        self.wte_transform = nn.ModuleList(nn.Embedding(n, d) for n in config.num_transform_options)
        self.wte_class = nn.Embedding(config.num_classes, d) if config.num_classes else None
        self.sos = nn.Parameter(torch.zeros(d))
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        nn.init.normal_(self.sos, std=0.02)
        log.info("SparseTransformer with %.2fM parameters", self.num_parameters() / 1e6)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    def start_embedding(
        self, batch_size: int, transform_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Start-of-sequence vectors.

        Args:
            batch_size: B.
            transform_ids: ``(B, K)`` int64, one column per transform kind (``None`` if K = 0).
            labels: ``(B,)`` int64 class ids, required iff ``num_classes > 0``.

        Returns:
            ``(B, n_embd)``.
        """
        n_kinds = len(self.wte_transform)
        if n_kinds and (transform_ids is None or transform_ids.shape[-1] != n_kinds):
            got = None if transform_ids is None else tuple(transform_ids.shape)
            raise ValueError(f"`transform_ids` must have shape (B, {n_kinds}), got {got}.")
        if (labels is None) != (self.wte_class is None):
            raise ValueError(
                f"The model has num_classes={self.config.num_classes}: pass `labels` iff num_classes > 0."
            )
        start = self.sos.expand(batch_size, -1) if not n_kinds else 0
        for kind, embedding in enumerate(self.wte_transform):
            start = start + embedding(transform_ids[:, kind])
        if self.wte_class is not None:
            start = start + self.wte_class(labels)
        return start

    def token_embedding(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token plus factorised position embedding at each token's original position.

        Args:
            tokens: ``(B, T)`` int64 in [0, 255].
            positions: ``(B, T)`` int64 original sub-pixel index ``(row * W + col) * C + ch``.

        Returns:
            ``(B, T, n_embd)``.
        """
        channels, width = self.config.channels, self.config.resolution
        row = positions // (width * channels)
        col = (positions // channels) % width
        chan = positions % channels
        return self.wte(tokens) + self.wpe_row(row) + self.wpe_col(col) + self.wpe_chan(chan)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast(x.device):
            x = self.drop(x)
            for block in self.h:
                if self.config.gradient_checkpointing and self.training:
                    x = checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            return self.lm_head(self.ln_f(x)).float()

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Logits of every token given the tokens before it.

        Args:
            tokens: ``(B, L)`` int64 sequence (in the order the model reads it).
            positions: ``(B, L)`` int64 original position of each token.
            start: ``(B, n_embd)`` start vector from :meth:`start_embedding`.

        Returns:
            ``(B, L, 256)`` float32 logits; entry ``k`` predicts ``tokens[:, k]``.
        """
        embedded = self.token_embedding(tokens[:, :-1], positions[:, :-1])  # (B, L-1, d)
        return self._run_blocks(torch.cat([start.unsqueeze(1), embedded], dim=1))

    @torch.no_grad()
    def generate(
        self,
        start: torch.Tensor,
        positions: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Sample token sequences.

        Each step draws ``u ~ U[0, 1)`` per example from ``generator`` and takes the first token whose
        cumulative probability exceeds it, so cached and recomputed sampling consume the same draws.

        Args:
            start: ``(B, n_embd)`` start vectors.
            positions: ``(B, L)`` original position of each token to generate.
            temperature: softmax temperature (> 0).
            generator: random generator (on any device).
            use_cache: KV-cache decoding (O(L) per step) or full recompute (O(L^2) per step).

        Returns:
            ``(B, L)`` int64 tokens.
        """
        check_range("temperature", temperature, 0.0, low_inclusive=False)
        batch, seq_len = positions.shape
        device = start.device
        tokens = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
        cache_dtype = torch.bfloat16 if self.config.bf16 else start.dtype
        cache = KVCache(self.config, batch, device, cache_dtype) if use_cache else None
        for step in range(seq_len):
            if cache is None:
                logits = self.forward(tokens[:, : step + 1], positions[:, : step + 1], start)[:, -1]
            else:
                logits = self._decode(tokens, positions, start, cache, step)
            probs = torch.softmax(logits.double() / temperature, dim=-1)
            draw_device = generator.device if generator is not None else device
            uniform = torch.rand(batch, 1, generator=generator, device=draw_device, dtype=torch.float64)
            choice = torch.searchsorted(probs.cumsum(-1), uniform.to(device), right=True)
            tokens[:, step] = choice[:, 0].clamp(max=self.config.vocab_size - 1)
        return tokens

    def _decode(
        self, tokens: torch.Tensor, positions: torch.Tensor, start: torch.Tensor, cache: KVCache, step: int
    ) -> torch.Tensor:
        """Logits ``(B, 256)`` for position ``step``, feeding token ``step - 1`` through the cache."""
        if step == 0:
            x = start.unsqueeze(1)
        else:
            x = self.token_embedding(tokens[:, step - 1 : step], positions[:, step - 1 : step])
        with self._autocast(x.device):
            for layer, block in enumerate(self.h):
                x = block.decode(x, cache.keys[layer], cache.values[layer], step)
            return self.lm_head(self.ln_f(x))[:, 0].float()
