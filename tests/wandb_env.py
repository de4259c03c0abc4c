"""The environment of an offline W&B run whose files all stay in one folder (tests only)."""

from __future__ import annotations

from pathlib import Path


def end_wandb() -> None:
    """Finish the run and drop W&B's process-wide settings, so that the next test's environment counts
    (otherwise a later run in the same pytest worker keeps an earlier test's ``WANDB_DIR``)."""
    import wandb

    wandb.finish()
    wandb.teardown()


def offline_wandb_env(folder: Path) -> dict[str, str]:
    """W&B offline and silent, no code saving, its run, cache, config and data folders under ``folder``."""
    return {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
        "WANDB_DISABLE_CODE": "true",
        "WANDB_DIR": str(folder),
        "WANDB_CACHE_DIR": str(folder / "wandb-cache"),
        "WANDB_CONFIG_DIR": str(folder / "wandb-config"),
        "WANDB_DATA_DIR": str(folder / "wandb-data"),
    }
