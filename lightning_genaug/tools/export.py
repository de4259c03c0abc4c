"""``lightning-genaug export``: G_ema as one traced graph (TorchScript or ONNX), z (and c) in, images out."""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from lightning_genaug.imports import require_onnx_export
from lightning_genaug.models.stylegan2.generation import generator_device
from lightning_genaug.tools.arguments import ToolArgumentError
from lightning_genaug.tools.parsers import EXPORT_FORMATS as FORMATS

EXAMPLE_BATCH = 2


class ExportableGenerator(nn.Module):
    """A generator's mapping and synthesis with truncation fixed and the constant noise maps.

    Shape:
        ``z (N, z_dim)``, ``c (N, c_dim)`` one-hot (only for a conditional generator) ->
        ``(N, C, H, W)`` float32 in [-1, 1].
    """

    def __init__(self, G: nn.Module, truncation_psi: float = 1.0) -> None:
        super().__init__()
        self.G = G
        self.truncation_psi = truncation_psi

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        ws = self.G.mapping(z, c, truncation_psi=self.truncation_psi)  # (N, num_ws, w_dim)
        # Unfused modulation: the fused path is a grouped convolution with one group per sample, which
        # fixes the batch size in a traced graph.
        return self.G.synthesis(ws, noise_mode="const", fused_modconv=False).clamp(-1, 1)


def example_inputs(G: nn.Module, batch_size: int = EXAMPLE_BATCH) -> tuple[torch.Tensor, ...]:
    """``(z,)`` or ``(z, c)`` for ``G``: what the exported graph takes."""
    device = generator_device(G)
    z = torch.randn(batch_size, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    if G.c_dim == 0:
        return (z,)
    return z, torch.eye(G.c_dim, device=device)[torch.arange(batch_size) % G.c_dim]


def export_generator(G: nn.Module, path: Path, export_format: str, truncation_psi: float = 1.0) -> Path:
    """Write ``G`` (mapping + synthesis, constant noise) as TorchScript (``.pt``) or ONNX (``.onnx``).

    The batch dimension stays dynamic in both. ONNX export needs onnx and onnxscript.

    Args:
        G: a StyleGAN2 ``Generator``.
        path: output file (parent folders are created).
        export_format: ``"torchscript"`` or ``"onnx"``.
        truncation_psi: truncation fixed into the graph.

    Returns:
        ``path``.
    """
    if export_format not in FORMATS:
        raise ToolArgumentError(
            "export_format", f"{{name}} must be one of {', '.join(FORMATS)}, got {export_format!r}"
        )
    wrapper = ExportableGenerator(G.eval(), truncation_psi).eval()
    inputs = example_inputs(G)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warns about the Python shape checks of our modules; shapes are fixed but the batch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # torch.jit is deprecated but still the only .pt format
        if export_format == "torchscript":
            torch.jit.trace(wrapper, inputs, check_trace=False).save(str(path))
            return path
        require_onnx_export()
        warnings.simplefilter("ignore", UserWarning)  # "axis name batch will not be used": z and c share it
        names = ["z", "c"][: len(inputs)]
        batch = torch.export.Dim("batch", min=1)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            wrapper,
            inputs,
            str(path),
            dynamo=True,
            input_names=names,
            output_names=["images"],
            dynamic_shapes={name: {0: batch} for name in names},
            external_data=False,
            verbose=False,
        )
    return path


def run(options: argparse.Namespace, model: torch.nn.Module) -> str:
    """Export ``model.G_ema``; returns the summary line."""
    G = model.G_ema
    path = export_generator(G, options.out, options.export_format, options.truncation_psi)
    inputs = "z (N, {}){}".format(G.z_dim, f", c (N, {G.c_dim}) one-hot" if G.c_dim else "")
    shape = f"(N, {G.img_channels}, {G.img_resolution}, {G.img_resolution})"
    return f"Wrote {path} ({options.export_format}): {inputs} -> images {shape} in [-1, 1]"


__all__ = ["ExportableGenerator", "example_inputs", "export_generator"]
