"""How every model family records its composed objects in a checkpoint's hyperparameters: one way.

A module built by LightningCLI receives its composed objects (``augment``, ``regularizer``, ...) from
``class_path``/``init_args`` configs, and Lightning records those configs. A module built in Python
receives the objects themselves; :func:`save_hyperparameters` records each as the config that rebuilds
it when the object can say it (``as_config()``, e.g.
:meth:`~lightning_genaug.augment.distaug.DistAugTransforms.as_config`), and otherwise leaves it out:
its tensors are in the state dict and ``load_from_checkpoint`` takes the default unless the object is
passed again. Either way, a recorded config is rebuilt by LightningCLI's instantiator.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from types import FrameType

import lightning.pytorch as pl

INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"
"""Rebuilds a module from its checkpoint's hyperparameters with jsonargparse (``class_path`` dicts too)."""


def save_hyperparameters(
    module: pl.LightningModule,
    composed: Sequence[str],
    ignore: Sequence[str] = ("predict",),
    frame: FrameType | None = None,
) -> None:
    """``module.save_hyperparameters`` of its ``__init__`` arguments, composed objects recorded as configs.

    Args:
        module: the module, from its ``__init__``.
        composed: the arguments that hold objects (``"augment"``, ``"regularizer"``, ...).
        ignore: arguments never recorded (``predict``: what a run writes, not what the model is).
        frame: the ``__init__`` frame (default: the caller's).
    """
    frame = frame if frame is not None else inspect.currentframe().f_back
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        module.save_hyperparameters(ignore=list(ignore), frame=frame)
    for name in composed:
        value = module.hparams.get(name)
        if value is None or isinstance(value, dict):
            continue  # None, or the CLI's own config
        if callable(getattr(value, "as_config", None)):
            module.hparams[name] = value.as_config()
        else:
            del module.hparams[name]
    if any(isinstance(module.hparams.get(name), dict) for name in composed):
        module.hparams.setdefault("_instantiator", INSTANTIATOR)


__all__ = ["INSTANTIATOR", "save_hyperparameters"]
