"""Discriminator regularisers as pure functions (no Lightning, no module state).

- R1 (Mescheder et al. 2018): ``||grad_x D(x)||^2`` per real image (:func:`r1_penalty`);
- balanced consistency regularisation, bCR (Zhao et al. 2021): ``||D(x) - D(T(x))||^2``
  (:func:`consistency_penalty`);
- Scale-GAN's variance-based regulariser (:func:`output_variance`, :func:`variance_penalty`).

For small ``sigma``, a first-order expansion ``D(x + sigma e) ~ D(x) + sigma <grad D(x), e>`` with
``e ~ N(0, I)`` gives

.. math::

    \\operatorname{Var}_e\\, D(x + \\sigma e) \\approx \\sigma^2 \\lVert \\nabla_x D(x) \\rVert^2,

so the variance of D's output under small input noise is a gradient penalty that needs no double
back-propagation. Two independent draws give an unbiased estimate of that variance:
``Var_e D(x + sigma e) = E[(D(x + sigma e1) - D(x + sigma e2))^2] / 2``. For a linear
``D(x) = <w, x> + b`` it equals ``sigma^2 |w|^2`` exactly.

:func:`variance_penalty` divides by ``sigma^2``: it estimates ``|grad D(x)|^2`` per sample, the same
quantity as :func:`r1_penalty`, so the two are swappable
under one weight ``gamma / 2``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lightning_genaug._checks import check_images, check_positive_int, check_range

Discriminator = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def output_variance(
    discriminator: Discriminator,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    sigma: float,
    num_pairs: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample estimate of ``Var_e D(x + sigma e)``, ``e ~ N(0, I)``, from ``num_pairs`` pairs.

    ``v(x) = 1 / (2 K) * sum_k (D(x + sigma e_{k,1}) - D(x + sigma e_{k,2}))^2``. Each perturbed copy
    goes through D as its own batch, so batch statistics inside D (minibatch standard deviation)
    never mix copies of one image.

    Args:
        discriminator: ``D(images, labels) -> logits`` of shape ``(B,)`` or ``(B, 1)``.
        images: ``(B, C, H, W)``, the (augmented, scaled) images D sees.
        labels: optional ``(B,)`` labels passed to D.
        sigma: perturbation scale, > 0.
        num_pairs: pairs of perturbations ``K`` per image (more pairs, lower variance of the estimate).
        generator: optional ``torch.Generator`` on the images' device for the perturbations.

    Returns:
        ``(B,)`` float32 (float64 for float64 images) estimates, differentiable with respect to D's
        parameters (and ``images``); computed without autocast (see the comment in the body).

    Example:
        >>> w = torch.randn(1, 3, 4, 4)
        >>> linear_d = lambda x, c: (x * w).sum(dim=(1, 2, 3))
        >>> v = output_variance(linear_d, torch.zeros(20000, 3, 4, 4), sigma=0.1)
        >>> bool(torch.isclose(v.mean(), 0.01 * w.square().sum(), rtol=0.05))
        True
    """
    check_images(images)
    check_range("sigma", sigma, 0.0, low_inclusive=False)
    check_positive_int("num_pairs", num_pairs)
    if images.dtype in (torch.float16, torch.bfloat16):
        images = images.float()
    total = images.new_zeros(images.shape[0])
    # A difference of two nearby outputs is mostly rounding error in bfloat16 (8-bit mantissa), so it is
    # float32 in any autocast. Measured with ScaleGAN `tiny` under Lightning's "bf16-mixed", 4 steps: D's
    # update had cosine 0.93 to float32 training's without this, 0.98 with it.
    with torch.autocast(images.device.type, enabled=False):
        for _ in range(num_pairs):
            first, second = (
                discriminator(images + sigma * _normal_like(images, generator), labels).reshape(len(images))
                for _ in range(2)
            )
            total = total + (first - second).float().square()
    return total / (2 * num_pairs)


def variance_penalty(
    discriminator: Discriminator,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    sigma: float,
    num_pairs: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Finite-difference estimate of ``|grad_x D(x)|^2`` per sample: ``output_variance / sigma^2``.

    A drop-in for R1's ``|grad_x D(x)|^2``; the loss is ``gamma / 2 * mean(variance_penalty(...))``.
    For a linear D it equals ``|w|^2`` in expectation for every ``sigma``; for a smooth D it tends to
    ``|grad D(x)|^2`` as ``sigma -> 0`` (larger ``sigma`` penalises a noise-smoothed D).

    Args:
        discriminator: ``D(images, labels) -> logits`` ``(B,)`` or ``(B, 1)``.
        images: ``(B, C, H, W)``.
        labels: optional ``(B,)``.
        sigma: perturbation scale, > 0.
        num_pairs: pairs of perturbations per image.
        generator: optional ``torch.Generator`` for the perturbations.

    Returns:
        ``(B,)`` tensor.
    """
    variance = output_variance(
        discriminator, images, labels, sigma=sigma, num_pairs=num_pairs, generator=generator
    )
    return variance / sigma**2


def _normal_like(images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=generator)


def r1_penalty(real_images: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """Squared norm of D's gradient with respect to its real inputs, per sample.

    The graph is kept (``create_graph=True``) so that the penalty can be back-propagated into D.
    ``real_images`` is the tensor that *requires grad*: when D sees augmented images, pass the
    un-augmented reals so that the gradient flows back through the augmentation, as in ADA.

    Args:
        real_images: ``(B, C, H, W)`` with ``requires_grad=True``.
        real_logits: ``(B, 1)`` computed from ``real_images``.

    Returns:
        ``(B,)`` tensor ``||dD(x)/dx||^2``.
    """
    (gradients,) = torch.autograd.grad(outputs=real_logits.sum(), inputs=real_images, create_graph=True)
    return gradients.square().sum(dim=(1, 2, 3))


def consistency_penalty(logits: torch.Tensor, augmented_logits: torch.Tensor) -> torch.Tensor:
    """bCR's consistency term ``mean((D(x) - D(T(x)))^2)``.

    Args:
        logits: D's logits for images, ``(B, 1)``.
        augmented_logits: D's logits for the same images transformed by ``T``, ``(B, 1)``.

    Returns:
        0-d tensor.
    """
    return (logits - augmented_logits).square().mean()
