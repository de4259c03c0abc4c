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

from collections.abc import Mapping

import lightning.pytorch as pl
import torch
from torch import nn

from lightning_genaug.distributed import backward_and_sync
from lightning_genaug.models.stylegan2.configs import StyleGAN2Config
from lightning_genaug.models.stylegan2.precision import autocast_off
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


def guarded_step(
    module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    phase: str,
    network: nn.Module,
) -> None:
    """Backward (autocast off) and step, refusing a non-finite loss or gradient before the step happens.

    Under DDP only ``network``'s gradients are averaged over processes (plain ``ddp`` works, see
    :func:`~lightning_genaug.distributed.backward_and_sync`); the checks then see values every
    process shares, so all of them stop together.
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast_off(module.device.type):
        mean_loss = backward_and_sync(module, loss, network)
    batch = int(module.num_batches)
    check_finite(mean_loss, phase, "loss", batch, module.global_step)
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    if grads:
        check_finite(torch.nn.utils.get_total_norm(grads), phase, "gradient norm", batch, module.global_step)
    optimizer.step()


def check_finite_state(networks: Mapping[str, nn.Module]) -> None:
    """Refuse (``FloatingPointError``) to save a checkpoint holding a non-finite tensor of ``networks``."""
    for name, network in networks.items():
        for key, tensor in network.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise FloatingPointError(f"Refusing to save a checkpoint: {name}.{key} is not finite.")
