"""Network pickles of the official StyleGAN2-ADA (stylegan2-ada-pytorch), read without running their code.

An official ``network-snapshot-*.pkl`` is a pickled dict ``{"G", "D", "G_ema", "augment_pipe",
"training_set_kwargs"}``. Its networks are saved with the reference's ``torch_utils.persistence``:
each module pickles as a call ``_reconstruct_persistent_obj(meta)`` whose ``meta`` holds the
*source code* of the module that defined it (``module_src``), the class name, and the object's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs`` ...). Loading such a pickle
with :func:`pickle.load` executes that source code.

:func:`read_network_pickle` never does: a restricted unpickler resolves only an allow-list of
globals (tensor and storage rebuilders, ``OrderedDict``, numpy scalars, the reference's
``EasyDict`` as a plain ``dict``) and turns each persistent object into a :class:`PersistentObject`
record (class name, state); ``module_src`` is dropped unread. Any other global raises
:class:`pickle.UnpicklingError` naming it. Storages inside the pickle are read with
``torch.load(weights_only=True)``.

The weights map one to one onto our networks (same names and shapes); the reference's constant
``resample_filter`` buffers (the ``[1, 3, 3, 1]`` low-pass filter, not learned) are skipped because our
modules rebuild them.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray

log = logging.getLogger(__name__)

OFFICIAL_SUFFIX = ".pkl"
NETWORK_KEYS = ("G", "D", "G_ema")
# Buffers the reference saves but our modules rebuild (constant resampling filters).
SKIPPED_BUFFERS = ("resample_filter",)


@dataclass
class PersistentObject:
    """A module saved by the reference's ``persistence`` machinery, as inert data.

    Attributes:
        class_name: the reference's class name (``"Generator"``, ``"AugmentPipe"`` ...).
        state: the object's ``__dict__`` as pickled (``_parameters``, ``_buffers``, ``_modules``,
            ``_init_kwargs`` and plain attributes).
    """

    class_name: str
    state: dict[str, Any]

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """The keyword arguments the reference constructed this object with."""
        return dict(self.state.get("_init_kwargs") or {})

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every parameter and buffer below this object, keyed like ``nn.Module.state_dict``."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, tensor in (self.state.get(group) or {}).items():
                if tensor is not None:
                    out[prefix + name] = tensor
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                out.update(child.tensors(f"{prefix}{name}."))
            elif child is not None:
                raise pickle.UnpicklingError(
                    f"Sub-module {prefix + name!r} is a {type(child).__name__}, not a persistent module."
                )
        return out


def _rebuild_persistent(meta: dict[str, Any]) -> PersistentObject:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: records, never executes."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise pickle.UnpicklingError(
            "A persistent object in the pickle has no class record; not a network pickle."
        )
    return PersistentObject(str(meta["class_name"]), dict(meta.get("state") or {}))


def _load_storage(data: bytes) -> Any:
    """Stand-in for ``torch.storage._load_from_bytes``, reading the storage with ``weights_only=True``."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the plain tensor, no hooks."""
    return data


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _rebuild_persistent,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    **{(module, "scalar"): _multiarray.scalar for module in _NUMPY_CORE},
    **{(module, "_reconstruct"): _multiarray._reconstruct for module in _NUMPY_CORE},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED_GLOBALS` (and ``torch`` dtypes); everything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(
            f"The pickle refers to `{module}.{name}`, which a stylegan2-ada-pytorch network pickle does "
            "not need; it is not loaded (this reader never runs code from a pickle)."
        )


@dataclass
class OfficialNetworks:
    """What :func:`read_network_pickle` extracts from an official network pickle.

    Attributes:
        weights: ``{"G": state dict, "D": ..., "G_ema": ...}`` keyed like our networks.
        resolution: ``img_resolution`` of the generator.
        channels: ``img_channels``.
        num_classes: ``c_dim`` (0 for unconditional networks).
        config_overrides: :class:`~lightning_genaug.models.stylegan2.configs.StyleGAN2Config` fields
            that define the network shapes (``z_dim``, ``mapping_layers``, ``channel_base`` ...).
        augment_p: the ``p`` of the pickle's ``augment_pipe`` (``None`` when it has none).
        training_set_kwargs: the reference's dataset options, when saved.
    """

    weights: dict[str, dict[str, torch.Tensor]]
    resolution: int
    channels: int
    num_classes: int
    config_overrides: dict[str, Any] = field(default_factory=dict)
    augment_p: float | None = None
    training_set_kwargs: dict[str, Any] | None = None


def is_network_pickle(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` names an official network pickle (by its ``.pkl`` suffix)."""
    return path is not None and Path(path).suffix.lower() == OFFICIAL_SUFFIX


def read_network_pickle(path: str | os.PathLike) -> OfficialNetworks:
    """Read a stylegan2-ada-pytorch ``.pkl`` without executing code from it.

    Raises:
        FileNotFoundError: the file does not exist.
        pickle.UnpicklingError: the pickle needs a global outside the allow-list (named in the message).
        ValueError: the pickle is not a network snapshot, or its networks use options we do not build.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Network pickle {str(path)!r} does not exist; pass the path of a stylegan2-ada-pytorch "
            "network-snapshot-*.pkl (or one of the official pretrained .pkl files)."
        )
    with path.open("rb") as handle:
        data = _RestrictedUnpickler(handle).load()
    if not isinstance(data, dict) or any(not isinstance(data.get(k), PersistentObject) for k in NETWORK_KEYS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{str(path)!r} is not a stylegan2-ada-pytorch network pickle: expected a dict with "
            f"persistent modules {list(NETWORK_KEYS)}, found {found}. TensorFlow-era pickles must first be "
            "converted with the reference's legacy.py."
        )
    generator, discriminator = data["G"].init_kwargs, data["D"].init_kwargs
    augment_pipe = data.get("augment_pipe")
    augment_p = None
    if isinstance(augment_pipe, PersistentObject) and "p" in augment_pipe.tensors():
        augment_p = float(augment_pipe.tensors()["p"])
    return OfficialNetworks(
        weights={key: _strip_constant_buffers(data[key].tensors()) for key in NETWORK_KEYS},
        resolution=int(generator["img_resolution"]),
        channels=int(generator["img_channels"]),
        num_classes=int(generator.get("c_dim", 0)),
        config_overrides=network_config(generator, discriminator, str(path)),
        augment_p=augment_p,
        training_set_kwargs=data.get("training_set_kwargs"),
    )


def _strip_constant_buffers(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.rsplit(".", 1)[-1] not in SKIPPED_BUFFERS}


def network_config(generator: dict[str, Any], discriminator: dict[str, Any], source: str) -> dict[str, Any]:
    """Our config fields from the reference's constructor arguments of G and D.

    Defaults are the reference's constructor defaults (``SynthesisNetwork``: ``num_fp16_res=0``,
    ``conv_clamp=None``; ``MappingNetwork``: 8 layers; ``Discriminator``: ``resnet``).

    Raises:
        ValueError: G and D disagree on the channel schedule, or G uses an architecture we do not build.
    """
    mapping = dict(generator.get("mapping_kwargs") or {})
    synthesis = dict(generator.get("synthesis_kwargs") or {})
    epilogue = dict(discriminator.get("epilogue_kwargs") or {})
    if synthesis.get("architecture", "skip") != "skip":
        raise ValueError(
            f"{source!r}: the generator uses synthesis architecture {synthesis['architecture']!r}; only "
            "'skip' (the reference's default and every official network) is supported."
        )
    config = {
        "z_dim": int(generator["z_dim"]),
        "w_dim": int(generator["w_dim"]),
        "mapping_layers": int(mapping.get("num_layers", 8)),
        "mapping_lr_multiplier": float(mapping.get("lr_multiplier", 0.01)),
        "channel_base": int(synthesis.get("channel_base", 32768)),
        "channel_max": int(synthesis.get("channel_max", 512)),
        "num_fp16_res": int(synthesis.get("num_fp16_res", 0)),
        "conv_clamp": synthesis.get("conv_clamp"),
        "d_architecture": str(discriminator.get("architecture", "resnet")),
        "mbstd_num_channels": int(epilogue.get("mbstd_num_channels", 1)),
    }
    for name in ("channel_base", "channel_max"):
        d_value = int(discriminator.get(name, 32768 if name == "channel_base" else 512))
        if d_value != config[name]:
            raise ValueError(
                f"{source!r}: G has {name}={config[name]} but D has {name}={d_value}; one config field "
                "builds both networks here, so such a pickle is not supported."
            )
    return config


def load_official_weights(modules: dict[str, nn.Module], networks: OfficialNetworks, source: str) -> None:
    """Copy the pickle's G, D and G_ema tensors into our networks, all or nothing.

    Args:
        modules: ``{"G": generator, "D": discriminator, "G_ema": ema generator}``.
        networks: the pickle's content from :func:`read_network_pickle`.
        source: the pickle's path, for error messages.

    Raises:
        ValueError: names every tensor that is missing, unexpected or of another shape.
    """
    problems: list[str] = []
    for key, module in modules.items():
        target, weights = module.state_dict(), networks.weights[key]
        problems += [f"{key}.{name}: not in the pickle" for name in target if name not in weights]
        problems += [f"{key}.{name}: not in this model" for name in weights if name not in target]
        problems += [
            f"{key}.{name}: pickle {tuple(weights[name].shape)} vs model {tuple(tensor.shape)}"
            for name, tensor in target.items()
            if name in weights and weights[name].shape != tensor.shape
        ]
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
        raise ValueError(
            f"Network pickle {source!r} does not fit this model: {shown}. Leave resolution, channels, "
            "num_classes and config_overrides unset so that they are read from the pickle."
        )
    with torch.no_grad():
        for key, module in modules.items():
            for name, tensor in module.state_dict().items():
                tensor.copy_(networks.weights[key][name])
