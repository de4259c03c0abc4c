"""Optional and heavy dependencies, checked once, imported lazily (no import-time side effects)."""

from __future__ import annotations

from types import ModuleType

from lightning_utilities.core.imports import RequirementCache

WANDB_AVAILABLE = RequirementCache("wandb")
TORCH_FIDELITY_AVAILABLE = RequirementCache("torch-fidelity")
TENSORBOARD_AVAILABLE = RequirementCache("tensorboard")
LITDATA_AVAILABLE = RequirementCache("litdata")
IMAGEIO_FFMPEG_AVAILABLE = RequirementCache("imageio-ffmpeg") and RequirementCache("imageio")
ONNX_EXPORT_AVAILABLE = RequirementCache("onnx") and RequirementCache("onnxscript")


def require_litdata() -> ModuleType:
    """Import litdata (the streaming data engine) or say which extra installs it."""
    if not LITDATA_AVAILABLE:
        raise ModuleNotFoundError(
            "Streaming data needs litdata, an optional dependency: "
            'pip install "lightning-genaug[stream]" (or pip install litdata).'
        )
    import litdata

    return litdata


TOOLS_EXTRA = 'pip install "lightning-genaug[tools]"'
"""Installs every optional dependency of the after-training tools (imageio-ffmpeg, onnx, onnxruntime)."""


def require_onnx_export() -> None:
    """Raise unless ``torch.onnx.export`` can run (it needs onnx and onnxscript)."""
    if not ONNX_EXPORT_AVAILABLE:
        raise ModuleNotFoundError(
            f"ONNX export needs onnx and onnxscript, optional dependencies: {TOOLS_EXTRA} "
            "(or pip install onnx onnxscript)."
        )
