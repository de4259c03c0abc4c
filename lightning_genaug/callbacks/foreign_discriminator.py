"""The zero-code-change path of ``AdaptiveAugmentation``: augmenting the D of a module we did not write.

A module without ``augment_pipe`` (a "foreign" GAN) gets its discriminator found
(:func:`find_discriminator`), a forward pre-hook that augments D's image input while the module trains
(reals and fakes, in D and G steps: what ADA requires), and a probe that measures ``r_t`` by running D
once more, under ``no_grad``, on augmented reals (:meth:`ForeignDiscriminator.observe_augmented_reals`).
The controller in :mod:`lightning_genaug.callbacks.ada` decides ``p``; this file only touches D.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

DISCRIMINATOR_ATTRS: tuple[str, ...] = ("discriminator", "netD", "D", "disc", "critic")
"""Attribute names searched, in this order, for the discriminator of a module without ``augment_pipe``."""


class ForeignDiscriminator:
    """Augments the input of a foreign module's discriminator and probes it for ``r_t``.

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
        self._module: pl.LightningModule | None = pl_module
        self._hook: RemovableHandle | None = discriminator.register_forward_pre_hook(
            self._augment_input, with_kwargs=True
        )

    @torch.no_grad()
    def observe_augmented_reals(self, images: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Run D (in its current mode) on augmented ``images`` and feed its logits to the pipe.

        D's buffers (e.g. BatchNorm running statistics) are restored afterwards, so the measurement
        leaves no trace on training.

        Args:
            images: the current batch's reals ``(B, C, H, W)``.
            labels: ``(B,)`` class ids, or ``None``; passed to D when its forward takes them.
        """
        discriminator, pipe = self.discriminator, self.pipe
        args: tuple[torch.Tensor, ...] = (pipe(images),)
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
            logits = _signed_scores(discriminator, args)
        finally:
            self.augmenting = augmenting
            for buffer, saved in zip(discriminator.buffers(), saved_buffers, strict=True):
                buffer.copy_(saved)
        pipe.observe(logits)

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
            return (pipe(args[0]), *args[1:]), kwargs
        key = self.image_key or "image"
        if key not in kwargs:
            raise ValueError(
                f"`{type(discriminator).__name__}` was called with keywords {sorted(kwargs)} and no "
                f"positional argument; AdaptiveAugmentation looked for the images under {key!r}. Set "
                "`image_key` to the keyword holding the images."
            )
        return args, {**kwargs, key: pipe(kwargs[key])}


def find_discriminator(pl_module: pl.LightningModule, discriminator_attr: str | None) -> nn.Module:
    """The module's discriminator: ``discriminator_attr`` if given, else the first known attribute name."""
    module_name = type(pl_module).__name__
    names = (discriminator_attr,) if discriminator_attr is not None else DISCRIMINATOR_ATTRS
    for name in names:
        candidate = getattr(pl_module, name, None)
        if candidate is None:
            continue
        if not isinstance(candidate, nn.Module):
            raise TypeError(
                f"`{module_name}.{name}` is a {type(candidate).__name__}, not an nn.Module; set "
                "`discriminator_attr` to the attribute holding the discriminator."
            )
        return candidate
    if discriminator_attr is not None:
        raise ValueError(
            f"`{module_name}` has no attribute `discriminator_attr={discriminator_attr!r}`; set "
            "`discriminator_attr` to the attribute holding the discriminator."
        )
    raise ValueError(
        f"AdaptiveAugmentation found neither `augment_pipe` nor a discriminator on `{module_name}` (looked "
        f"for {', '.join(DISCRIMINATOR_ATTRS)}); set `discriminator_attr` to the attribute holding the "
        "discriminator."
    )


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


def _signed_scores(discriminator: nn.Module, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Run D and return scores whose sign says "real": its logits, or ``probability - 0.5``.

    D's written like Lightning's GAN tutorial end with ``nn.Sigmoid`` and output probabilities, for which
    ``sign(D(x))`` is always +1. An output sharing storage with the output of one of D's ``nn.Sigmoid``
    submodules is taken as a probability and shifted by 0.5, which gives it the sign of the logit.
    """
    sigmoid_outputs: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda _module, _inputs, output: sigmoid_outputs.append(output))
        for module in discriminator.modules()
        if isinstance(module, nn.Sigmoid)
    ]
    try:
        scores = _first_tensor(discriminator(*args))
    finally:
        for handle in handles:
            handle.remove()
    storage = scores.untyped_storage().data_ptr()
    if any(output.untyped_storage().data_ptr() == storage for output in sigmoid_outputs):
        return scores - 0.5
    return scores


def _first_tensor(output: Any) -> torch.Tensor:
    """D's logits: the output itself, or the first tensor of a tuple/list output."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(
        f"The discriminator returned a {type(output).__name__}; AdaptiveAugmentation needs its logits as a "
        "tensor (or the first item of a tuple)."
    )
