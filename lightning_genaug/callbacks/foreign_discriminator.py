"""The zero-code-change path of ``AdaptiveAugmentation``: augmenting the D of a module we did not write.

A module without ``augment_pipe`` (a "foreign" GAN) gets its discriminator found
(:func:`find_discriminator`), a forward pre-hook that augments D's image input while the module trains
(reals and fakes, in D and G steps: what ADA requires), and a probe that measures ``r_t`` by running D
once more, under ``no_grad``, on augmented reals (:meth:`ForeignDiscriminator.real_scores`).
The controller in :mod:`lightning_genaug.callbacks.ada` decides ``p``; this file only touches D.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

DISCRIMINATOR_ATTRS: tuple[str, ...] = ("discriminator", "netD", "D", "disc", "critic")
"""Attribute names searched, in this order, for the discriminator of a module without ``augment_pipe``."""


class ForeignDiscriminator:
    """Augments the input of a foreign module's discriminator and probes it for ``r_t``.

    The probe runs D on augmented reals. For an ordinary D they are the batch's images. For a paired D
    (the pipe has ``condition_channels``, e.g. ``PairedAugment``), D's real input is a pair the module
    builds itself, ``cat([condition, real], dim=1)``: the hook recognises it as the D input whose
    channels after the condition equal an image tensor of the current training batch, keeps it (the
    last one seen in the batch) and the probe augments that.

    Args:
        pl_module: the module being trained; D's input is augmented only while it is in training mode.
        discriminator: D, an ``nn.Module`` of ``pl_module``.
        pipe: the augmentation applied to D's image input; it receives the probe's logits via
            ``observe``.
        image_key: keyword of D's image argument when D is called with keywords only (default
            ``"image"``).
    """

    def __init__(
        self, pl_module: pl.LightningModule, discriminator: nn.Module, pipe: nn.Module, image_key: str | None
    ) -> None:
        self.discriminator = discriminator
        self.pipe = pipe
        self.image_key = image_key
        self.takes_labels = _takes_labels(discriminator)
        self.augmenting = False
        self.condition_channels: int | None = getattr(pipe, "condition_channels", None)
        self._batch_images: list[torch.Tensor] = []  # paired D: the batch's tensors a real pair contains
        self._real_pair: torch.Tensor | None = None  # paired D: its last input recognised as a real pair
        self._module: pl.LightningModule | None = pl_module
        self._hook: RemovableHandle | None = discriminator.register_forward_pre_hook(
            self._augment_input, with_kwargs=True
        )

    def start_batch(self, batch: Any) -> None:
        """Note the training batch's image tensors, in which a paired D's real pair is recognised."""
        if self.condition_channels is not None:
            self._batch_images = [tensor for tensor in _tensors(batch) if tensor.ndim == 4]
            self._real_pair = None

    @torch.no_grad()
    def real_scores(
        self, images: torch.Tensor, labels: torch.Tensor | None, *, augment: bool
    ) -> torch.Tensor | list[torch.Tensor]:
        """Run D (in its current mode) on the batch's reals, augmented or clean; return its signed scores.

        D's buffers (e.g. BatchNorm running statistics) are restored afterwards, so the reading leaves
        no trace on training.

        Args:
            images: the current batch's reals ``(B, C, H, W)``; for a paired D, the real pair it was
                last called with in this batch is used instead.
            labels: ``(B,)`` class ids, or ``None``; passed to D when its forward takes them.
            augment: run the reals through the pipe first (the paper's ``r_t``) or not (``rt_clean``).

        Returns:
            Scores whose sign says "real" (see :func:`_signed_scores`), for ``pipe.observe``.

        Raises:
            ValueError: a paired D was not called on a recognisable real pair in this batch.
        """
        discriminator, pipe = self.discriminator, self.pipe
        if self.condition_channels is not None:
            if self._real_pair is None:
                raise ValueError(
                    f"The augmentation callback saw no real pair go into `{type(discriminator).__name__}` "
                    f"in this batch: with a paired pipe (condition_channels={self.condition_channels}) it "
                    "recognises D's real input as cat([condition, image], dim=1) whose image channels equal "
                    "an image tensor of the training batch. Feed the batch's target to D unchanged "
                    "(normalise it in the DataModule), or give the module an `augment_pipe` it feeds with "
                    "`observe(real_logits)` (the native path)."
                )
            images = self._real_pair
        args: tuple[torch.Tensor, ...] = (pipe(images) if augment else images,)
        if self.takes_labels:
            if labels is None:
                raise ValueError(
                    f"`{type(discriminator).__name__}.forward` requires a second argument (labels) but the "
                    "training batch has none; give the batch as (images, labels) or a dict with 'label'."
                )
            args = (*args, labels)
        saved_buffers = [buffer.clone() for buffer in discriminator.buffers()]
        augmenting, self.augmenting = self.augmenting, False
        try:
            return _signed_scores(discriminator, args)
        finally:
            self.augmenting = augmenting
            for buffer, saved in zip(discriminator.buffers(), saved_buffers, strict=True):
                buffer.copy_(saved)

    def remove(self) -> None:
        """Stop augmenting and take the hook off D (idempotent)."""
        self.augmenting = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._module = None

    def _augment_input(
        self, discriminator: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """Forward pre-hook: augment D's image argument while the module trains; pass the rest through."""
        if not (self.augmenting and self._module is not None and self._module.training):
            return None
        pipe = self.pipe
        if args:
            if not isinstance(args[0], torch.Tensor):
                raise TypeError(
                    f"AdaptiveAugmentation augments the first positional argument of "
                    f"`{type(discriminator).__name__}`, which is a {type(args[0]).__name__}, not an image "
                    "tensor; call D with the images first, or by keyword and set `image_key`."
                )
            self._remember_real_pair(args[0])
            return (pipe(args[0]), *args[1:]), kwargs
        key = self.image_key or "image"
        if key not in kwargs:
            raise ValueError(
                f"`{type(discriminator).__name__}` was called with keywords {sorted(kwargs)} and no "
                f"positional argument; AdaptiveAugmentation looked for the images under {key!r}. Set "
                "`image_key` to the keyword holding the images."
            )
        self._remember_real_pair(kwargs[key])
        return args, {**kwargs, key: pipe(kwargs[key])}

    def _remember_real_pair(self, inputs: torch.Tensor) -> None:
        """Paired D: keep ``inputs`` (un-augmented) if its image channels are a tensor of the batch."""
        if self.condition_channels is None or inputs.ndim != 4 or inputs.shape[1] <= self.condition_channels:
            return
        image = inputs[:, self.condition_channels :]
        if any(
            candidate.shape == image.shape and torch.equal(candidate, image)
            for candidate in self._batch_images
        ):
            self._real_pair = inputs.detach()


def _tensors(batch: Any) -> list[torch.Tensor]:
    """Every tensor in a batch of nested tuples, lists and dicts."""
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, Mapping):
        return [tensor for value in batch.values() for tensor in _tensors(value)]
    if isinstance(batch, (tuple, list)):
        return [tensor for item in batch for tensor in _tensors(item)]
    return []


def find_discriminator(pl_module: pl.LightningModule, discriminator_attr: str | None) -> nn.Module:
    """The module's discriminator.

    ``discriminator_attr`` if given: an attribute name or a dotted path through submodules
    (``"loss.discriminator"``, taming-transformers' layout). Otherwise the first attribute of the module
    named in :data:`DISCRIMINATOR_ATTRS`, else the one submodule at any depth whose own name is one of
    them, outermost first (``self.loss.discriminator`` is found; two candidates are an error naming both).

    Raises:
        ValueError: nothing found, a path that does not resolve, or several candidates; the message
            names ``discriminator_attr``.
        TypeError: the attribute is not an ``nn.Module``.
    """
    if discriminator_attr is not None:
        return _resolve_path(pl_module, discriminator_attr)
    module_name = type(pl_module).__name__
    for name in DISCRIMINATOR_ATTRS:
        if getattr(pl_module, name, None) is not None:
            return _resolve_path(pl_module, name)
    named = [path for path, _ in pl_module.named_modules() if path.rsplit(".", 1)[-1] in DISCRIMINATOR_ATTRS]
    # The outermost ones: a discriminator's own submodule called `D` is part of it, not a second one.
    nested = [path for path in named if not any(path.startswith(f"{outer}.") for outer in named)]
    if len(nested) == 1:
        return _resolve_path(pl_module, nested[0])
    if len(nested) > 1:
        raise ValueError(
            f"AdaptiveAugmentation found several discriminators in `{module_name}`: "
            f"{', '.join(nested)}; set `discriminator_attr` to the one to augment, e.g. "
            f"`discriminator_attr={nested[0]!r}`."
        )
    raise ValueError(
        f"AdaptiveAugmentation found neither `augment_pipe` nor a discriminator on `{module_name}` (looked "
        f"for an attribute or submodule named {', '.join(DISCRIMINATOR_ATTRS)}); set `discriminator_attr` "
        "to the attribute holding the discriminator, a dotted path for a nested one (e.g. "
        "`discriminator_attr='loss.discriminator'`)."
    )


def _resolve_path(pl_module: pl.LightningModule, path: str) -> nn.Module:
    """``pl_module.<path>`` for a dotted ``path``, checked to be an ``nn.Module``."""
    module_name = type(pl_module).__name__
    target: Any = pl_module
    walked = module_name
    for part in path.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ValueError(
                f"`{walked}` has no attribute `{part}` (from `discriminator_attr={path!r}`); set "
                "`discriminator_attr` to the attribute holding the discriminator, a dotted path for a "
                "nested one."
            )
        walked = f"{walked}.{part}"
    if not isinstance(target, nn.Module):
        raise TypeError(
            f"`{walked}` is a {type(target).__name__}, not an nn.Module; set `discriminator_attr` to the "
            "attribute holding the discriminator."
        )
    return target


def _takes_labels(discriminator: nn.Module) -> bool:
    """Whether D's forward needs a second positional argument (labels) besides the images.

    Raises:
        ValueError: if it needs more than two; the foreign path can only call ``D(x)`` or ``D(x, labels)``.
    """
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    parameters = inspect.signature(discriminator.forward).parameters.values()
    required = [p for p in parameters if p.kind in kinds and p.default is inspect.Parameter.empty]
    if len(required) > 2:
        raise ValueError(
            f"`{type(discriminator).__name__}.forward` requires {len(required)} arguments "
            f"({', '.join(p.name for p in required)}); AdaptiveAugmentation measures r_t by calling "
            "D(images) or D(images, labels). Give the module an `augment_pipe` that it feeds with "
            "`observe(real_logits)` instead (the native path)."
        )
    return len(required) == 2


def _signed_scores(
    discriminator: nn.Module, args: tuple[torch.Tensor, ...]
) -> torch.Tensor | list[torch.Tensor]:
    """Run D and return scores whose sign says "real": its logits, or ``probability - 0.5``.

    D's written like Lightning's GAN tutorial end with ``nn.Sigmoid`` and output probabilities, for which
    ``sign(D(x))`` is always +1. An output sharing storage with the output of one of D's ``nn.Sigmoid``
    submodules is taken as a probability and shifted by 0.5, which gives it the sign of the logit.

    Returns:
        One tensor of any shape (``(B,)``, ``(B, 1)``, patch logits ``(B, 1, h, w)``), or one per scale
        for a multi-scale D (see :func:`logit_maps`).
    """
    sigmoid_outputs: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda _module, _inputs, output: sigmoid_outputs.append(output))
        for module in discriminator.modules()
        if isinstance(module, nn.Sigmoid)
    ]
    try:
        output = discriminator(*args)
    finally:
        for handle in handles:
            handle.remove()
    sigmoid_storages = {output.untyped_storage().data_ptr() for output in sigmoid_outputs}

    def signed(scores: torch.Tensor) -> torch.Tensor:
        return scores - 0.5 if scores.untyped_storage().data_ptr() in sigmoid_storages else scores

    scales = logit_maps(output)
    return signed(scales) if isinstance(scales, torch.Tensor) else [signed(scale) for scale in scales]


def logit_maps(output: Any) -> torch.Tensor | list[torch.Tensor]:
    """D's real/fake logits from what its forward returned.

    * a tensor: the logits, any shape (one per image, or a PatchGAN map ``(B, 1, h, w)``);
    * a **tuple**: ``(logits, extras...)`` (features for feature matching, auxiliary heads): its first
      item, itself read by these rules;
    * a **list**: a multi-scale D, one entry per scale: the scale's logits, or (pix2pixHD with
      intermediate features) a list/tuple whose **last** item is the scale's logits. Returned as a
      list, which ``SignAccumulator.observe`` averages with every scale weighted equally.

    Raises:
        TypeError: no tensor where the logits should be; the message says what was found.
        ValueError: a tensor with several channels (``(B, C, ...)``, ``C > 1``): not one logit per
            image or per patch, e.g. an encoder's latents when ``discriminator_attr`` names the encoder.
    """
    if isinstance(output, torch.Tensor):
        if output.ndim >= 2 and output.shape[1] != 1 and output.ndim != 3:
            raise ValueError(
                f"The discriminator returned a tensor of shape {tuple(output.shape)}: not one logit per "
                "image ((B,) or (B, 1)) or per patch ((B, 1, h, w)), so it is not a discriminator's "
                "output; set `discriminator_attr` to the module that scores images as real or fake."
            )
        return output
    if isinstance(output, tuple) and output:
        return logit_maps(output[0])
    if isinstance(output, list) and output:
        scales = [scale[-1] if isinstance(scale, (list, tuple)) and scale else scale for scale in output]
        if all(isinstance(scale, torch.Tensor) for scale in scales):
            return scales
    raise TypeError(
        f"The discriminator returned {_describe(output)}; AdaptiveAugmentation needs its logits: a tensor, "
        "a tuple whose first item is the logits, or a list with one entry per scale (a tensor, or a list "
        "ending with that scale's logits)."
    )


def _describe(output: Any) -> str:
    if isinstance(output, (list, tuple)):
        inner = ", ".join(type(item).__name__ for item in output[:4])
        return f"a {type(output).__name__} of [{inner}{', ...' if len(output) > 4 else ''}]"
    return f"a {type(output).__name__}"
