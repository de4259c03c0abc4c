"""The ADA protocol shared by every augmentation whose strength ``p`` a controller adapts.

A controller (``AdaptiveAugmentation``) reads D's overfitting statistics from the pipe with
:meth:`SignAccumulator.pop_stats` and writes the new strength to ``pipe.p``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from lightning_genaug._checks import check_images, check_range


def random_draw(
    sampler: Callable[..., torch.Tensor],
    *args: Any,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``sampler(*args)`` (``torch.rand``, ``torch.randn``, ``torch.randint``) drawn from ``generator``.

    The one random-draw style of every augmentation here: the draw happens on the generator's own
    device (so a CPU generator seeds a CUDA augmentation, and the reverse), or on ``device`` when no
    generator is given, and the result is returned on ``device``.

    Example:
        >>> a = random_draw(torch.rand, 3, device="cpu", generator=torch.Generator().manual_seed(0))
        >>> torch.equal(a, torch.rand(3, generator=torch.Generator().manual_seed(0)))
        True
    """
    draw_device = generator.device if generator is not None else device
    return sampler(*args, generator=generator, device=draw_device).to(device)


@runtime_checkable
class AugmentationStrength(Protocol):
    """Anything with an adaptable strength ``p`` and D-sign statistics."""

    p: torch.Tensor

    def observe(self, real_logits: torch.Tensor | Sequence[torch.Tensor]) -> None: ...

    def pop_stats(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class DelegatedStrength:
    """The ADA protocol of a wrapper, delegated to the augmentation inside it that owns the strength.

    A wrapper (``Chain``, ``PairedAugment``) mixes this in and says which of its parts holds ``p`` and the
    r_t accumulator (:meth:`strength_owner`); a controller then adapts the wrapper as it would that part.
    """

    def strength_owner(self) -> AugmentationStrength:
        """The augmentation whose ``p``, ``observe`` and ``pop_stats`` are the wrapper's."""
        raise NotImplementedError

    @property
    def p(self) -> torch.Tensor:
        """The owner's strength buffer (0-d), the one a controller adapts."""
        return self.strength_owner().p

    def observe(self, real_logits: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Feed D's logits for augmented reals to the owner's r_t accumulator."""
        self.strength_owner().observe(real_logits)

    def pop_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sign_sum, count)`` of the owner, reset to zero."""
        return self.strength_owner().pop_stats()


class SignAccumulator(nn.Module):
    """Holds the strength ``p`` and accumulates ``sign(D(real))`` for the r_t heuristic.

    ``p``, ``sign_sum`` and ``count`` are registered buffers: they move with ``.to()`` and are saved
    in ``state_dict`` so a resumed run keeps its strength.

    Args:
        p: initial strength in [0, 1].
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        check_range("p", p, 0.0, 1.0)
        self.register_buffer("p", torch.tensor(float(p), dtype=torch.float32))
        self.register_buffer("sign_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def observe(self, real_logits: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Accumulate the signs of D's logits for (augmented) real images.

        A tensor counts every logit once: ``r_t`` is the mean sign over all of them (for a PatchGAN,
        over every patch of every image). A list is a multi-scale D, one tensor per scale: each scale
        weighs the same whatever its number of logits, so a batch of ``B`` images adds
        ``B * mean_s(mean(sign(logits_s)))`` to the sum and ``B`` to the count. (Counting logits would
        let the finest scale, with the most patches, drown the coarse ones, which see the most of an
        image and over-fit first.)

        Args:
            real_logits: a tensor of any shape, typically ``(B,)``, ``(B, 1)`` or ``(B, 1, h, w)``; or a
                list of such tensors, one per scale, each with the batch as its first dimension.
        """
        if isinstance(real_logits, torch.Tensor):
            logits = real_logits.detach()
            self.sign_sum += torch.sign(logits).sum().to(torch.float64)
            self.count += logits.numel()
            return
        scales = list(real_logits)
        if not scales or not all(isinstance(scale, torch.Tensor) and scale.ndim >= 1 for scale in scales):
            raise TypeError(
                "`observe` takes D's logits as a tensor, or as a non-empty list of tensors (one per scale, "
                f"batch first); got {[type(scale).__name__ for scale in scales]}."
            )
        batch = scales[0].shape[0]
        mean_sign = torch.stack([torch.sign(scale.detach()).double().mean() for scale in scales]).mean()
        self.sign_sum += batch * mean_sign.to(self.sign_sum.device)
        self.count += batch

    @torch.no_grad()
    def pop_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(sign_sum, count)`` accumulated since the last call and reset both to zero."""
        stats = self.sign_sum.clone(), self.count.clone()
        self.sign_sum.zero_()
        self.count.zero_()
        return stats

    @torch.no_grad()
    def set_p(self, p: float) -> None:
        """Set the strength in place (keeps the buffer's identity, device and dtype)."""
        self.p.fill_(float(p))


class ParametricAugmentation(SignAccumulator):
    """An augmentation whose random parameters are drawn apart from applying them.

    Subclasses implement :meth:`sample_params` and :meth:`apply_params`; :meth:`forward` draws (or
    replays) a set of parameters and applies it, and returns its input untouched, at no cost, when
    :meth:`is_identity` says no sample can change.
    """

    def sample_params(
        self,
        shape: Sequence[int],
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw the per-sample parameters for images of ``shape`` ``(B, C, H, W)``."""
        raise NotImplementedError

    def apply_params(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Apply a draw of :meth:`sample_params` to ``(B, C, H, W)`` images (deterministic)."""
        raise NotImplementedError

    def is_identity(self) -> bool:
        """Whether a fresh draw would leave every sample unchanged (``p == 0`` by default)."""
        return bool(self.p <= 0.0)

    def check_input(self, images: torch.Tensor) -> None:
        """Raise a clear error for input this augmentation cannot handle."""
        check_images(images)

    def forward(
        self,
        images: torch.Tensor,
        generator: torch.Generator | None = None,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Augment ``images`` with fresh parameters, or replay ``params``.

        Args:
            images: ``(B, C, H, W)`` float, typically in [-1, 1].
            generator: optional ``torch.Generator`` for reproducible draws.
            params: a previous draw of :meth:`sample_params` to replay; ``p`` and ``generator`` are
                then ignored.

        Returns:
            ``(B, C, H, W)``; ``images`` itself when :meth:`is_identity` and no ``params`` are given.
        """
        self.check_input(images)
        if params is None:
            if self.is_identity():
                return images
            params = self.sample_params(images.shape, images.device, generator)
        return self.apply_params(images, params)
