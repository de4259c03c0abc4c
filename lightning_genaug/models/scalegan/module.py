"""``ScaleGAN``: StyleGAN2 trained with Scale-GAN's data scaling and variance-based regulariser.

Scale-GAN (Koike et al., arXiv 2410.20780) scales real *and* generated images by a random factor
before the discriminator and regularises D by the variance of its output instead of a gradient
penalty. This module is :class:`~lightning_genaug.models.stylegan2.StyleGAN2ADA` (same networks,
phases, EMA, optimisers, sampling) with two changes:

- what D sees: ``S(A(x))``, where ``A`` is ADA's ``AugmentPipe`` when ``augment`` is set (identity
  otherwise) and ``S`` is :class:`~lightning_genaug.augment.scaling.DataScaling`, in every D call of
  the D and G steps;
- D's regulariser (phase ``Dreg``): ``regularizer="variance"`` (default),
  ``gamma / 2 * mean(Var_e D(S(A(x)) + sigma e) / sigma^2)``, a finite-difference estimate of R1's
  ``gamma / 2 * ||grad D||^2``; ``"r1"`` keeps StyleGAN2's R1; ``"none"`` turns ``Dreg`` off.

Strength control: ``AdaptiveAugmentation`` adapts the module's ``augment_pipe``. Without an ADA pipe
(``augment=None``, the default) ``augment_pipe`` *is* the scaling, so the callback adapts the scaling
strength ``p`` from r_t; with an ADA pipe the callback adapts ADA's ``p`` and the scaling keeps
``scaling_p``.
"""

from __future__ import annotations

from typing import Any

import torch

from lightning_genaug._checks import check_choice, check_positive_int, check_range
from lightning_genaug.augment.scaling import DataScaling
from lightning_genaug.models.scalegan.regularizers import variance_penalty
from lightning_genaug.models.stylegan2 import StyleGAN2ADA

REGULARIZERS = ("variance", "r1", "none")


class ScaleGAN(StyleGAN2ADA):
    """StyleGAN2 + Scale-GAN data scaling + variance-based D regulariser (LightningModule).

    Every :class:`~lightning_genaug.models.stylegan2.StyleGAN2ADA` argument is accepted as a keyword
    (``config``, ``resolution``, ``lr``, ``gamma``, ``r1_interval``, ...); ``gamma`` and
    ``r1_interval`` weight and schedule whichever regulariser is chosen.

    Args:
        scaling: ``DataScaling`` schedule (``"uniform"``, ``"fixed"``, ``"diffusion"``), or ``None``
            for no scaling (the regulariser-only ablation).
        scaling_p: initial scaling strength in [0, 1] (adapted by ``AdaptiveAugmentation`` when no
            ADA pipe is configured).
        scaling_kwargs: further ``DataScaling`` arguments (``min_scale``, ``scale``, ``noise_std``,
            ``apply_prob``, ``t_min``, ``t_max``, ``beta_start``, ``beta_end``).
        regularizer: ``"variance"``, ``"r1"`` or ``"none"``.
        variance_sigma: perturbation scale ``sigma`` of the variance regulariser (images in [-1, 1]).
        variance_pairs: perturbation pairs per image in the variance regulariser.
        augment: ``AugmentPipe`` preset composed before the scaling, or ``None`` (default) for
            scaling alone.
        **kwargs: the other ``StyleGAN2ADA`` arguments.

    Example:
        >>> model = ScaleGAN(config="tiny", resolution=8, channels=1, num_classes=0)
        >>> model.augment_pipe is model.scaling
        True
        >>> model.sample(2).shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        scaling: str | None = "uniform",
        scaling_p: float = 0.5,
        scaling_kwargs: dict[str, Any] | None = None,
        regularizer: str = "variance",
        variance_sigma: float = 0.01,
        variance_pairs: int = 1,
        augment: str | None = None,
        **kwargs: Any,
    ) -> None:
        regularizer = check_choice("regularizer", regularizer, REGULARIZERS)
        if regularizer == "none":
            if kwargs.get("gamma"):
                raise ValueError(
                    f"`regularizer='none'` turns D's regulariser off, but `gamma={kwargs['gamma']}` was "
                    "given; drop `gamma` or choose `regularizer: variance` or `r1`."
                )
            kwargs["gamma"] = 0.0
        check_range("variance_sigma", variance_sigma, 0.0, low_inclusive=False)
        check_positive_int("variance_pairs", variance_pairs)
        super().__init__(augment=augment, **kwargs)
        data_scaling = (
            None if scaling is None else DataScaling(scaling, p=scaling_p, **(scaling_kwargs or {}))
        )
        # Registered once: as the pipe the ADA controller drives, or after ADA's pipe when there is one.
        self.scaling_after_augment: DataScaling | None = None
        if self.augment_pipe is None:
            self.augment_pipe = data_scaling
        else:
            self.scaling_after_augment = data_scaling

    @property
    def scaling(self) -> DataScaling | None:
        """The data scaling (``augment_pipe`` itself when no ADA pipe is configured), or ``None``."""
        if self.scaling_after_augment is not None:
            return self.scaling_after_augment
        return self.augment_pipe if isinstance(self.augment_pipe, DataScaling) else None

    def augment_for_discriminator(self, images: torch.Tensor) -> torch.Tensor:
        """What D sees: ADA's augmentation (if any), then the data scaling (if any).

        Args:
            images: real or generated ``(B, C, H, W)``.

        Returns:
            ``(B, C, H, W)``, differentiable with respect to ``images``.
        """
        images = super().augment_for_discriminator(images)
        if self.scaling_after_augment is not None:
            images = self.scaling_after_augment(images)
        return images

    def d_regularization_loss(self, real: torch.Tensor, real_c: torch.Tensor) -> torch.Tensor:
        """``Dreg``: the variance regulariser, or StyleGAN2's R1 when ``regularizer="r1"``.

        Variance: ``gamma / 2 * mean_x(Var_e D(x' + sigma e) / sigma^2)`` with ``x'`` the reals as D
        sees them (one draw of augmentation and scaling shared by the perturbed copies, so the
        variance measures D's sensitivity to the perturbation only). Before the interval gain.
        """
        if self.hparams.regularizer == "r1":
            return super().d_regularization_loss(real, real_c)
        with torch.no_grad():
            seen = self.augment_for_discriminator(real)
        penalty = variance_penalty(
            self.D,
            seen,
            real_c,
            sigma=self.hparams.variance_sigma,
            num_pairs=self.hparams.variance_pairs,
        )
        self.log("loss/variance", penalty.mean().detach())
        return penalty.mean() * (self.train_config.gamma / 2)
