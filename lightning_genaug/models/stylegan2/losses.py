"""StyleGAN2 losses as pure functions (no Lightning, no module state).

Everything :class:`~lightning_genaug.models.stylegan2.StyleGAN2ADA` optimises is written here so that
each formula can be read, tested and reused (the regularisers of D, R1, the variance regulariser and
bCR, live in :mod:`lightning_genaug.regularizers`):

- non-saturating logistic loss (Goodfellow et al. 2014), G: ``softplus(-D(G(z)))``,
  D: ``softplus(D(G(z))) + softplus(-D(x))``;
- path-length regularisation (Karras et al. 2020, StyleGAN2): ``(||J_w^T y|| - a)^2`` with ``a`` an
  exponential moving average of the lengths;
- the lazy-regularisation correction of Adam's hyperparameters.

The EMA generator's decay is in :mod:`~lightning_genaug.models.stylegan2.ema`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``mean(softplus(-D(G(z))))`` = ``-mean(log sigmoid(D(G(z))))``.

    Args:
        fake_logits: D's logits for generated images, ``(B, 1)`` or ``(B,)``.

    Returns:
        0-d tensor.

    >>> round(float(generator_loss(torch.zeros(4, 1))), 4)  # log 2 at D's indifference point
    0.6931
    """
    return F.softplus(-fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Logistic discriminator loss ``mean(softplus(D(G(z)))) + mean(softplus(-D(x)))``.

    Args:
        real_logits: D's logits for (augmented) real images, ``(B, 1)``.
        fake_logits: D's logits for (augmented) generated images, ``(B, 1)``.

    Returns:
        0-d tensor.
    """
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def path_lengths(
    images: torch.Tensor, ws: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Path lengths ``||J_w^T y||`` for random image-space directions ``y ~ N(0, I) / sqrt(H W)``.

    Args:
        images: generated images ``(B, C, H, W)`` computed from ``ws``.
        ws: the intermediate latents ``(B, num_ws, w_dim)`` that produced ``images``.
        generator: optional random generator for ``y``.

    Returns:
        ``(B,)`` tensor: the Jacobian-vector norm, averaged over the ``num_ws`` copies of ``w``.
    """
    height, width = images.shape[-2:]
    noise = torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=generator)
    noise = noise / math.sqrt(height * width)
    (gradients,) = torch.autograd.grad(outputs=(images * noise).sum(), inputs=ws, create_graph=True)
    return gradients.square().sum(dim=2).mean(dim=1).sqrt()


def path_length_penalty(
    lengths: torch.Tensor, running_mean: torch.Tensor, decay: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Path-length penalty ``(l - a)^2`` with ``a <- a + decay * (mean(l) - a)``.

    Args:
        lengths: ``(B,)`` path lengths from :func:`path_lengths`.
        running_mean: 0-d tensor ``a`` (not modified).
        decay: weight of the new batch in the running mean, in (0, 1].

    Returns:
        ``(penalty (B,), new_running_mean (0-d, detached))``.
    """
    new_mean = running_mean.lerp(lengths.mean().detach().to(running_mean.dtype), decay)
    return (lengths - new_mean).square(), new_mean


def lazy_regularization_adam(
    lr: float, betas: tuple[float, float], interval: int | None
) -> tuple[float, tuple[float, float]]:
    """Adam hyperparameters corrected for lazy regularisation (StyleGAN2, App. B).

    A regulariser applied every ``interval`` minibatches adds one optimiser step per ``interval``:
    with ``r = interval / (interval + 1)``, ``lr * r`` and ``betas ** r`` keep the per-minibatch
    step size and momentum horizon those of the unregularised optimiser.

    Args:
        lr: learning rate.
        betas: Adam betas.
        interval: regularisation interval in minibatches, or ``None``/``0`` when not regularising.

    Returns:
        ``(lr, betas)``.

    >>> lr, betas = lazy_regularization_adam(0.0025, (0.0, 0.99), 16)
    >>> round(lr, 6), round(betas[1], 6)
    (0.002353, 0.990585)
    """
    if not interval:
        return lr, betas
    ratio = interval / (interval + 1)
    return lr * ratio, (betas[0] ** ratio, betas[1] ** ratio)
