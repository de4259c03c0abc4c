"""``SparseTransformerDistAug``: a Sparse Transformer trained with Distribution Augmentation.

Training (Jun et al. 2020, Eq. 3): each image is transformed by ``t`` drawn per example, and the
model learns ``p(t(x) | t)``: the start token is the sum of one learned embedding per transform kind
and every token gets the position embedding of the pixel it came from. Validation, ``bits_per_dim``
and ``sample`` use the identity transform and the EMA weights, which is the model of ``p(x)``.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch

from lightning_genaug._checks import check_positive_int, check_range
from lightning_genaug._lazy_defaults import lazy_default
from lightning_genaug.augment.distaug import DistAugTransforms, from_sequence, to_sequence
from lightning_genaug.data.batch import split_batch
from lightning_genaug.distributed import seed_per_rank
from lightning_genaug.images import from_uint8, to_uint8
from lightning_genaug.metrics.bpd import bits_per_dim_from_logits
from lightning_genaug.models.families import check_checkpoint_family
from lightning_genaug.models.hyperparameters import save_hyperparameters
from lightning_genaug.models.loading import load_checkpoint
from lightning_genaug.models.predict import GeneratorPredictMixin, PredictOptions
from lightning_genaug.models.sparse_transformer.model import (
    SparseTransformer,
    SparseTransformerOverrides,
    sparse_transformer_config,
)

DEFAULT_TRANSFORMS: DistAugTransforms = lazy_default(DistAugTransforms, transforms=["rotation"])
"""The default ``augment``: DistAug with rotation, every option equally likely (a fresh one per module)."""


def images_to_tokens(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> int64 tokens ``round((x + 1) * 127.5)`` in [0, 255], same shape."""
    return to_uint8(images).long()


def tokens_to_images(tokens: torch.Tensor) -> torch.Tensor:
    """Int tokens in [0, 255] -> float images ``tokens / 127.5 - 1`` in [-1, 1], same shape."""
    return from_uint8(tokens)


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float) -> float:
    """Learning-rate factor: linear warmup over ``warmup_steps``, then ``schedule`` to ``min_ratio``.

    >>> [round(lr_multiplier(s, 10, 110, "cosine", 0.0), 3) for s in (0, 9, 60, 110)]
    [0.1, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
    return min_ratio + (1 - min_ratio) * shape


class SparseTransformerDistAug(GeneratorPredictMixin, L.LightningModule):
    """Sparse Transformer with DistAug conditioning, EMA weights, bits-per-dim and KV-cache sampling.

    Batches follow the package contract (``split_batch``): float images ``(B, C, H, W)`` in [-1, 1]
    are quantised to tokens ``round((x + 1) * 127.5)``.

    Args:
        config: preset name in ``SPARSE_TRANSFORMER_PRESETS`` (``tiny``, ``15m``, ``58m``, ``150m``).
        config_overrides: fields of ``SparseTransformerConfig`` to change: the network (``n_layer``,
            ``dropout``, ``kernel``, ``gradient_checkpointing``, ...) and the training (``lr``,
            ``betas``, ``weight_decay``, ``warmup_steps``, ``lr_schedule`` (``cosine``, ``linear``,
            ``constant``), ``min_lr_ratio``, ``schedule_steps``, ``ema_decay``), as
            ``StyleGAN2ADA`` takes its ``lr``/``betas``/``ema_kimg`` from its config. The EMA of
            ``ema_decay`` is per optimiser step; early updates use ``min(ema_decay, (1 + n) / (10 + n))``.
        channels: image channels; ``None`` reads ``image_shape`` (or ``channels``) of the
            datamodule at ``setup``.
        resolution: image height = width; ``None`` reads it from the datamodule like ``channels``.
        augment: the DistAug transforms (``DistAugTransforms(transforms, aug_prob, randaugment_n,
            randaugment_m)``; default: rotation, every option equally likely), or ``None`` for a plain
            baseline. Stored as :attr:`augment_pipe` (the attribute name of every family's
            augmentation). They shape the network (one start embedding per option), so the checkpoint
            records them (:func:`~lightning_genaug.models.hyperparameters.save_hyperparameters`) and
            ``load_from_checkpoint`` rebuilds them.
        num_classes: > 0 adds a class embedding to the start token (class-conditional model).
        gradient_clip_val: gradient-norm clipping applied by this module (the paper: 1.0) unless
            the trainer sets its own ``gradient_clip_val``; ``0`` disables it.
        predict: what ``predict`` writes (:class:`~lightning_genaug.models.predict.PredictOptions`);
            ``sample_kwargs`` takes ``temperature``, ``transform`` and ``use_cache`` (KV cache).
            Not a hyperparameter: never read back from a checkpoint.

    Example:
        >>> model = SparseTransformerDistAug("tiny", channels=1, resolution=4, augment=None)
        >>> model.sample(2, temperature=0.9).shape
        torch.Size([2, 1, 4, 4])
    """

    run_arguments: tuple[str, ...] = ("config_overrides.schedule_steps",)
    """How long the run goes, not what the model is: ``fit --ckpt_path`` takes it from the command line
    and config (the steps the learning rate decays over, to extend a run with ``--trainer.max_steps``);
    every other argument comes from the checkpoint (:func:`~lightning_genaug.fit_cli.resume_arguments`)."""

    def __init__(
        self,
        config: str = "tiny",
        config_overrides: SparseTransformerOverrides | None = None,
        channels: int | None = None,
        resolution: int | None = None,
        augment: DistAugTransforms | None = DEFAULT_TRANSFORMS,
        num_classes: int = 0,
        gradient_clip_val: float = 1.0,
        predict: PredictOptions | None = None,
    ) -> None:
        super().__init__()
        if augment is DEFAULT_TRANSFORMS:
            augment = DistAugTransforms(["rotation"])
        if augment is not None and not isinstance(augment, DistAugTransforms):
            raise TypeError(
                f"`augment` must be a DistAugTransforms or None, got {type(augment).__name__}; e.g. "
                "`augment: {class_path: DistAugTransforms, init_args: {transforms: [rotation]}}`."
            )
        save_hyperparameters(self, composed=["augment"])
        self.predict_options = predict if predict is not None else PredictOptions()
        # Every field checked now (the image shape may wait for the datamodule); read back from `net`.
        sparse_transformer_config(config, **(config_overrides or {}))
        check_range("gradient_clip_val", gradient_clip_val, 0.0)
        check_positive_int("num_classes", num_classes, allow_zero=True)
        self.augment_pipe = augment
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        self._fit_started = False  # the first batch of a fit has been seen
        self.net: SparseTransformer | None = None
        self.ema_net: SparseTransformer | None = None
        if channels is not None or resolution is not None:
            if channels is None or resolution is None:
                raise ValueError(
                    f"Give both `channels` and `resolution` or neither (got {channels}, {resolution}); "
                    "with neither they are read from the datamodule."
                )
            self._build(channels, resolution)

    # ----------------------------------------------------------------------------------- building
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` the model was built for."""
        if self.net is None:
            raise RuntimeError(
                "The network is not built yet: pass `channels` and `resolution`, or call `trainer.fit` "
                "with a datamodule that has `image_shape`."
            )
        cfg = self.net.config
        return cfg.channels, cfg.resolution, cfg.resolution

    def _build(self, channels: int, resolution: int) -> None:
        if self.augment_pipe is not None:
            self.augment_pipe.check_shape(channels, resolution, resolution)
        overrides = dict(self.hparams.config_overrides or {})
        overrides.update(
            channels=channels,
            resolution=resolution,
            num_transform_options=self.augment_pipe.num_options if self.augment_pipe is not None else (),
            num_classes=self.hparams.num_classes,
        )
        self.net = SparseTransformer(sparse_transformer_config(self.hparams.config, **overrides))
        # Left in train mode like the rest of the module (Lightning warns otherwise); `bits_per_dim`
        # and `sample` switch it to eval themselves.
        self.ema_net = copy.deepcopy(self.net).requires_grad_(False)
        self.hparams.channels, self.hparams.resolution = channels, resolution  # saved in checkpoints

    def setup(self, stage: str) -> None:
        """Build the network from the datamodule's ``image_shape`` if not given; lend predict data."""
        if self._trainer is not None:
            self.lend_predict_dataloader(stage)
        if self.net is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        shape = getattr(datamodule, "image_shape", None)
        if shape is None and datamodule is not None and hasattr(datamodule, "channels"):
            shape = (datamodule.channels, datamodule.resolution, datamodule.resolution)
        if shape is None:
            raise RuntimeError(
                "Cannot infer the image shape: the datamodule has no `image_shape`; pass `channels` and "
                "`resolution` to SparseTransformerDistAug."
            )
        channels, height, width = shape
        if height != width:
            raise ValueError(f"SparseTransformerDistAug needs square images, the datamodule gives {shape}.")
        self._build(int(channels), int(height))

    # ----------------------------------------------------------------------------------- likelihood
    def _sequences(
        self, images: torch.Tensor, augment: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Tokens in reading order ``(B, L)``, their original positions ``(B, L)``, transform ids."""
        channels, height, width = self.image_shape
        if tuple(images.shape[1:]) != (channels, height, width):
            raise ValueError(
                f"Images of shape {tuple(images.shape)} do not match the model's (C, H, W) = "
                f"{(channels, height, width)}."
            )
        tokens = images_to_tokens(images)
        if self.augment_pipe is None:
            positions = torch.arange(tokens[0].numel(), device=tokens.device).expand(tokens.shape[0], -1)
            return to_sequence(tokens), positions, None
        batch = images.shape[0]
        params = (
            self.augment_pipe.sample_params(batch, device=tokens.device)
            if augment
            else self.augment_pipe.identity_params(batch, device=tokens.device)
        )
        transform_ids = params["transform_ids"]
        sequence = to_sequence(self.augment_pipe.apply(tokens, params))
        positions = self.augment_pipe.permutation(transform_ids, channels, height, width)
        return sequence, positions, transform_ids

    def _bits_per_dim(
        self, net: SparseTransformer, images: torch.Tensor, labels: torch.Tensor | None, augment: bool
    ) -> torch.Tensor:
        """Per-image bits per dimension ``(B,)`` (float64) under ``net``."""
        sequence, positions, transform_ids = self._sequences(images, augment)
        labels = labels if self.hparams.num_classes else None
        start = net.start_embedding(images.shape[0], transform_ids, labels)
        logits = net(sequence, positions, start)  # (B, L, 256)
        return bits_per_dim_from_logits(logits.transpose(1, 2), sequence)

    @torch.no_grad()
    def bits_per_dim(self, batch: Any) -> torch.Tensor:
        """Mean bits per sub-pixel of a batch under the EMA weights and the identity transform.

        ``bpd = NLL_nats / (ln 2 * C * H * W)``; comparable to the paper's CIFAR-10 numbers (8-bit data,
        exact categorical likelihood, no dequantisation).

        Returns:
            A 0-d float64 tensor.
        """
        images, labels = split_batch(batch)
        images = images.to(self.device)
        labels = labels.to(self.device) if labels is not None else None
        was_training = self.ema_net.training
        self.ema_net.eval()
        bpd = self._bits_per_dim(self.ema_net, images, labels, augment=False).mean()
        self.ema_net.train(was_training)
        return bpd

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = split_batch(batch)
        bpd = self._bits_per_dim(self.net, images, labels, augment=True).mean()
        self.log("train/bpd", bpd.float(), prog_bar=True, batch_size=images.shape[0])
        return (bpd * math.log(2)).float()  # mean NLL in nats per sub-pixel

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images = split_batch(batch)[0]
        bpd = self.bits_per_dim(batch).float()
        self.log("val/bpd", bpd, prog_bar=True, sync_dist=True, batch_size=len(images))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        images = split_batch(batch)[0]
        self.log("test/bpd", self.bits_per_dim(batch).float(), sync_dist=True, batch_size=len(images))

    # ----------------------------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (decay on matrices and embeddings only) with warmup + ``lr_schedule``, stepped per batch.

        Every value comes from the network's config (the preset and ``config_overrides``).
        """
        cfg = self.net.config
        params = [p for p in self.net.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=cfg.betas,
        )
        total = cfg.schedule_steps or int(self.trainer.estimated_stepping_batches)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_multiplier(step, cfg.warmup_steps, total, cfg.lr_schedule, cfg.min_lr_ratio),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip the gradient norm to ``gradient_clip_val`` (the trainer's value wins when it is set)."""
        clip = gradient_clip_val if gradient_clip_val is not None else self.hparams.gradient_clip_val
        if clip:
            algorithm = gradient_clip_algorithm or "norm"
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm=algorithm)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """At the first batch of a fit: one random stream per DDP rank, so ranks draw their own transforms.

        It waits for the first batch because a resumed loader puts back the checkpoint's (rank 0's)
        random state when it yields that batch.
        """
        if not self._fit_started:
            self._fit_started = True
            seed_per_rank(self.global_rank, self.trainer.world_size)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser step, then the EMA update of the weights it changed.

        Here rather than in ``on_train_batch_end``, which Lightning calls after the callbacks' (a
        checkpoint written at a batch's end would miss that batch's update, and a resumed run with it).
        """
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """One EMA step towards the current weights: per optimiser step (micro-batches of gradient
        accumulation change no weight, so they take none)."""
        updates = int(self.ema_updates)
        decay = min(self.net.config.ema_decay, (1 + updates) / (10 + updates))
        for ema_param, param in zip(self.ema_net.parameters(), self.net.parameters(), strict=True):
            ema_param.lerp_(param.detach(), 1 - decay)
        self.ema_updates += 1

    # ----------------------------------------------------------------------------------- sampling
    @classmethod
    def load(
        cls, path: str | os.PathLike, map_location: str | torch.device | None = None
    ) -> SparseTransformerDistAug:
        """A ready module from a ``.ckpt``, without a ``Trainer``: eval mode, gradients off.

        Args:
            path: a checkpoint written while training this module.
            map_location: device for the weights; ``None``: where they were saved.

        Raises:
            ValueError: ``path`` is a checkpoint of another module (``StyleGAN2ADA``), named.
        """
        check_checkpoint_family(cls, path)
        return load_checkpoint(cls, path, map_location)

    def _transform_ids(self, n: int, transform: Any) -> torch.Tensor | None:
        if self.augment_pipe is None:
            if transform is not None:
                raise ValueError("`transform` was given, but the model has no DistAug transforms; pass None.")
            return None
        n_kinds = len(self.augment_pipe.transforms)
        if transform is None:
            return torch.zeros(n, n_kinds, dtype=torch.long, device=self.device)
        ids = torch.as_tensor(transform, dtype=torch.long, device=self.device)
        ids = ids.expand(n, n_kinds) if ids.ndim == 1 else ids
        counts = torch.tensor(self.augment_pipe.num_options, device=self.device)
        if ids.shape != (n, n_kinds) or bool((ids < 0).any()) or bool((ids >= counts).any()):
            raise ValueError(
                f"`transform` must hold one id per kind {list(self.augment_pipe.transforms)} with counts "
                f"{self.augment_pipe.num_options}, as shape ({n_kinds},) or ({n}, {n_kinds}); "
                f"got {transform!r}."
            )
        return ids

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        transform: Sequence[int] | torch.Tensor | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Draw ``n`` images with the EMA weights (Generator protocol).

        Args:
            n: number of images.
            labels: ``(n,)`` class ids for a class-conditional model (drawn uniformly if ``None``).
            generator: random generator; the same seed gives the same images.
            temperature: softmax temperature (the paper's best FID uses 0.94).
            transform: ``None`` for the identity (samples of ``p(x)``), or one id per DistAug kind
                (shape ``(K,)`` or ``(n, K)``) to sample ``t(x)`` given ``t``.
            use_cache: KV-cache decoding (default) or full recompute at every step.

        Returns:
            ``(n, C, H, W)`` float in [-1, 1], in the frame of ``transform`` (i.e. ``t(x)``).
        """
        check_positive_int("n", n)
        channels, height, width = self.image_shape
        if self.hparams.num_classes and labels is None:
            draw_device = generator.device if generator is not None else self.device
            labels = torch.randint(self.hparams.num_classes, (n,), generator=generator, device=draw_device)
        labels = labels.to(self.device) if labels is not None and self.hparams.num_classes else None
        transform_ids = self._transform_ids(n, transform)
        if transform_ids is None:
            positions = torch.arange(channels * height * width, device=self.device).expand(n, -1)
        else:
            positions = self.augment_pipe.permutation(transform_ids, channels, height, width)
        was_training = self.ema_net.training
        self.ema_net.eval()
        start = self.ema_net.start_embedding(n, transform_ids, labels)
        tokens = self.ema_net.generate(start, positions, temperature, generator, use_cache=use_cache)
        self.ema_net.train(was_training)
        return tokens_to_images(from_sequence(tokens, channels, height, width))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image bits per dimension ``(B,)`` of float images under the training weights (identity)."""
        return self._bits_per_dim(self.net, images, labels, augment=False)
