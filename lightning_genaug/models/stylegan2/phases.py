"""Which of the four phases a training batch runs, and the guard every phase's step goes through.

=========  ===========================================  ================================
phase      loss                                         when
=========  ===========================================  ================================
``Gmain``  ``softplus(-D(A(G(z))))``                    every batch
``Greg``   path length ``pl_weight * (l - a)^2``        every ``pl_interval``
``Dmain``  ``softplus(D(A(G(z)))) + softplus(-D(A(x)))``  every batch
           (+ ``consistency``, e.g. bCR)
``Dreg``   ``regularizer`` (R1: ``gamma / 2 *``         every ``every_n_batches``
           ``||grad_x D(A(x))||^2``)
=========  ===========================================  ================================

The losses themselves are in :mod:`~lightning_genaug.models.stylegan2.losses` and
:mod:`lightning_genaug.regularizers`.
"""

from __future__ import annotations

import torch

from lightning_genaug.models.stylegan2.configs import StyleGAN2Config
from lightning_genaug.regularizers import DiscriminatorRegularizer


def phase_schedule(
    batch_index: int, config: StyleGAN2Config, regularizer: DiscriminatorRegularizer | None
) -> list[str]:
    """The phases run for the ``batch_index``-th batch of a run (counting from 0, across epochs).

    Args:
        batch_index: batches trained before this one.
        config: the run's config (``pl_weight``, ``pl_interval``: path length is off at weight 0).
        regularizer: D's regulariser, which says when it is due; ``None``: no ``Dreg``.

    >>> from lightning_genaug.models.stylegan2.configs import stylegan2_config
    >>> from lightning_genaug.regularizers import R1
    >>> config = stylegan2_config("tiny", 8)
    >>> phase_schedule(0, config, R1(gamma=1.0, every_n_batches=16)), phase_schedule(4, config, None)
    (['Gmain', 'Greg', 'Dmain', 'Dreg'], ['Gmain', 'Greg', 'Dmain'])
    """
    phases = ["Gmain"]
    if config.pl_weight > 0 and batch_index % config.pl_interval == 0:
        phases.append("Greg")
    phases.append("Dmain")
    if regularizer is not None and regularizer.is_due(batch_index):
        phases.append("Dreg")
    return phases


def check_finite(value: torch.Tensor, phase: str, what: str, batch_index: int, global_step: int) -> None:
    """Raise ``FloatingPointError`` naming the phase and the way out when ``value`` is NaN or infinite.

    Called before the optimiser step, so the weights and the last checkpoint are still intact.
    """
    if not torch.isfinite(value):
        raise FloatingPointError(
            f"Non-finite {what} ({value.item()}) in phase {phase} at batch {batch_index} "
            f"(global step {global_step}); training stopped before the optimiser step, so the "
            "weights and the last checkpoint are intact. Lower `lr`, raise `gamma`, or resume from "
            "the last checkpoint."
        )
