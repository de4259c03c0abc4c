"""Optional and heavy dependencies, checked once, imported lazily (no import-time side effects)."""

from __future__ import annotations

from lightning_utilities.core.imports import RequirementCache

WANDB_AVAILABLE = RequirementCache("wandb")
TORCH_FIDELITY_AVAILABLE = RequirementCache("torch-fidelity")
TENSORBOARD_AVAILABLE = RequirementCache("tensorboard")
