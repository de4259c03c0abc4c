"""Optional and heavy dependencies, checked once, imported lazily (no import-time side effects)."""

from __future__ import annotations

from types import ModuleType

from lightning_utilities.core.imports import RequirementCache

WANDB_AVAILABLE = RequirementCache("wandb")
TORCH_FIDELITY_AVAILABLE = RequirementCache("torch-fidelity")
TENSORBOARD_AVAILABLE = RequirementCache("tensorboard")
LITDATA_AVAILABLE = RequirementCache("litdata")


def require_litdata() -> ModuleType:
    """Import litdata (the streaming data engine) or say which extra installs it."""
    if not LITDATA_AVAILABLE:
        raise ModuleNotFoundError(
            "Streaming data needs litdata, an optional dependency: "
            'pip install "lightning-genaug[stream]" (or pip install litdata).'
        )
    import litdata

    return litdata
