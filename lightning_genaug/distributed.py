"""Data-parallel GAN training under Lightning's plain ``ddp`` strategy: gradients synced per network.

Lightning's DDP strategy wraps the whole ``LightningModule`` in one ``DistributedDataParallel``
whose reducer expects, after every backward, a gradient for *every* parameter. A GAN's backward
passes each reach one network (G's loss freezes D, D's loss detaches G's images), so plain
``strategy="ddp"`` fails with "Expected to have finished reduction in the prior iteration", and the
usual workaround, ``ddp_find_unused_parameters_true``, walks the autograd graph after every forward
and still all-reduces a (zero) gradient for the network that is not stepped.

:func:`backward_and_sync` does what the StyleGAN2-ADA reference does by giving each network its own
synchronisation: it runs ``manual_backward`` with the whole-module reducer switched off (DDP's
``no_sync``) and then averages the gradients of the one network that is about to be stepped, in
one flat all-reduce. Any strategy works: ``ddp``, ``ddp_find_unused_parameters_true`` (the graph
walk is skipped too), ``ddp_spawn``; without a DDP wrapper (one process, FSDP, DeepSpeed) it is
``manual_backward`` unchanged.

Use it in place of ``self.manual_backward(loss)`` in any manual-optimisation GAN::

    opt_d.zero_grad()
    backward_and_sync(self, d_loss, self.discriminator)
    opt_d.step()
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from contextlib import nullcontext

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["average_gradients", "backward_and_sync", "seed_per_rank"]


def _whole_module_ddp(module: pl.LightningModule) -> DistributedDataParallel | None:
    """The strategy's DDP wrapper around ``module`` while fitting under a DDP strategy, else ``None``."""
    trainer = module._trainer
    if trainer is None:
        return None
    wrapper = getattr(trainer.strategy, "model", None)
    return wrapper if isinstance(wrapper, DistributedDataParallel) else None


def backward_and_sync(module: pl.LightningModule, loss: torch.Tensor, network: nn.Module) -> torch.Tensor:
    """``module.manual_backward(loss)``, then ``network``'s gradients averaged over all processes.

    The strategy's whole-module DDP reducer is off during the backward, so only ``network`` (the
    one its optimiser steps next) is synchronised; gradients of the other networks stay local, as
    after a backward on one process. Every process must call this in the same order with the same
    ``network`` (the phases of a GAN step are the same on every rank).

    Args:
        module: the LightningModule under manual optimisation.
        loss: 0-d loss of this process.
        network: the submodule whose gradients are averaged (e.g. ``self.D`` before ``opt_d.step()``).

    Returns:
        0-d float32: ``loss`` averaged over processes (``loss`` itself on one process), detached.
        Non-finite on every process when it is non-finite on one, so a NaN guard stops all of them.
    """
    wrapper = _whole_module_ddp(module)
    with nullcontext() if wrapper is None else wrapper.no_sync():
        module.manual_backward(loss)
    loss = loss.detach().float()
    if wrapper is None or not dist.is_initialized() or dist.get_world_size(wrapper.process_group) == 1:
        return loss
    return average_gradients(network.parameters(), wrapper.process_group, extra=loss)


def average_gradients(
    parameters: Iterable[nn.Parameter],
    group: dist.ProcessGroup | None = None,
    extra: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Average ``.grad`` of ``parameters`` over the processes of ``group``: one all-reduce per dtype.

    Only parameters that require grad take part (the same set on every rank: frozen layers are
    skipped). A missing gradient counts as zero in the average; a parameter that has no gradient on
    any process keeps ``grad=None`` (so Adam skips it, as it would on one process). One presence
    flag per parameter travels in the same buffer, so this costs a single collective per dtype.

    Args:
        parameters: an iterable of parameters (e.g. ``network.parameters()``).
        group: the process group (``None``: the default group).
        extra: an optional 0-d float32 tensor averaged in the same collective (e.g. the loss).

    Returns:
        ``extra`` averaged over the processes, or ``None`` when ``extra`` is ``None``.
    """
    world_size = dist.get_world_size(group)
    by_dtype: dict[torch.dtype, list[nn.Parameter]] = defaultdict(list)
    for param in parameters:
        if param.requires_grad:
            by_dtype[param.dtype].append(param)
    if extra is not None:
        by_dtype.setdefault(torch.float32, [])
    averaged_extra = None
    for dtype, params in by_dtype.items():
        carries_extra = extra is not None and dtype == torch.float32
        device = params[0].device if params else extra.device
        # [grad_0, ..., grad_n-1 (flattened), present_0, ..., present_n-1, extra?]
        tail = torch.tensor(
            [float(p.grad is not None) for p in params] + ([0.0] if carries_extra else []), dtype=dtype
        ).to(device)
        if carries_extra:
            tail[-1] = extra
        grads = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in params]
        flat = torch.cat([*grads, tail])
        dist.all_reduce(flat, group=group)
        flat /= world_size
        numels = [p.numel() for p in params]
        total = sum(numels)
        present = flat[total : total + len(params)].tolist()  # one device-to-host copy
        for param, grad, count in zip(params, flat[:total].split(numels), present, strict=True):
            if count > 0:
                param.grad = grad.view_as(param)
        if carries_extra:
            averaged_extra = flat[-1]
    return averaged_extra


def seed_per_rank(rank: int, world_size: int) -> None:
    """Give each of ``world_size`` processes its own stream of torch's global generator.

    ``seed_everything`` seeds every rank alike, so a GAN drawing its latents, noise inputs and
    augmentations from the global generator would draw the same ones on every rank: the global batch
    of generated images would be ``world_size`` copies of one rank's. The reference seeds rank ``r``
    with ``seed * num_gpus + r``; here every rank draws one number from its (still identical)
    generator and re-seeds with that number plus its rank, so a run stays reproducible from its seed.
    With one process nothing is drawn and nothing changes.

    >>> _ = torch.manual_seed(0); seed_per_rank(0, 1); float(torch.rand(()))  # one process: untouched
    0.49625658988952637
    """
    if world_size <= 1:
        return
    shared = int(torch.randint(2**62, ()))
    torch.manual_seed(shared + rank)
