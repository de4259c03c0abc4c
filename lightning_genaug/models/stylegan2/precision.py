"""Where StyleGAN2ADA computes in bf16 and where it must not.

The main phases' forward passes may run under bf16 autocast (``autocast_bf16``); every backward
pass and both regularisation phases run with autocast off, even inside Lightning's ``bf16-mixed``.
"""

from __future__ import annotations

import contextlib

import torch


def main_phase_autocast(device_type: str, enabled: bool | None) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device_type`` for the main phases' forward passes.

    Args:
        device_type: ``"cuda"``, ``"cpu"``, ...
        enabled: the module's ``autocast_bf16``: ``None`` means on CUDA only.

    Returns:
        The autocast context, or a no-op that leaves an enclosing autocast (Lightning's
        ``precision``) in charge.
    """
    if enabled is None:
        enabled = device_type == "cuda"
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16)


def autocast_off(device_type: str) -> torch.autocast:
    """No autocast on ``device_type``, even inside Lightning's ``bf16-mixed``.

    For every backward and the regularisers: torch advises against backward passes under autocast,
    and refuses them when a float16 block (``num_fp16_res``) ran inside a bfloat16 autocast
    ("Unexpected floating ScalarType in at::autocast::prioritize", from the backward of the blocks'
    convolutions). The regularisers' double backward is also sensitive to rounding. The float16
    blocks still run in float16 on CUDA, as in the reference.
    """
    return torch.autocast(device_type, enabled=False)
