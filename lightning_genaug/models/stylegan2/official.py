"""Network pickles of the official StyleGAN2-ADA (stylegan2-ada-pytorch), read as data, never as code.

An official ``network-snapshot-*.pkl`` is a pickled dict ``{"G", "D", "G_ema", "augment_pipe",
"training_set_kwargs"}``. Its networks are saved with the reference's ``torch_utils.persistence``:
each module pickles as a call ``_reconstruct_persistent_obj(meta)`` whose ``meta`` holds the
*source code* of the module that defined it (``module_src``), the class name, and the object's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs`` ...). Loading such a pickle
with :func:`pickle.load` executes that source code.

:func:`read_network_pickle` is a data reader (:mod:`lightning_genaug.safe_pickle` with the
constructors of tensors and persistent modules). What it guarantees, for any file:

- **Only data is built.** The pickle may name only constructors of tensors, storages, containers
  and numpy scalars/arrays, and the persistent-object record (each persistent module becomes an
  inert :class:`PersistentObject`; ``module_src`` is dropped unread). Any other global is refused
  by name. Tensors are rebuilt without hooks or ``requires_grad``; storages are read with
  ``torch.load(weights_only=True)``.
- **Nothing outside the returned value changes**, whether the file is accepted or refused: the
  ``BUILD`` opcode (``__setstate__`` / ``__dict__`` update) is honoured only on a numpy array or dtype
  the reader itself has just created for it, never on a function, class, module or allowed global;
  ``APPEND``/``SETITEM``/``ADDITEMS`` only on lists, dicts and sets.
- **It ends fast.** Every object is walked once (shared sub-objects are memoised; a module that
  appears twice, or inside itself, is refused), nesting is bounded by
  :data:`~lightning_genaug.safe_pickle.MAX_DEPTH`, and a storage may not claim more elements than the
  bytes the file holds for it, so the tensor bytes allocated never exceed the file's size.
- **Every refusal is one** :class:`NetworkPickleError` naming the file and the reason.

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

from lightning_genaug.safe_pickle import (
    DATA_LEAVES,
    MALFORMED,
    NUMPY_GLOBALS,
    DataUnpickler,
    read_data,
    refusal_reason,
)

log = logging.getLogger(__name__)

OFFICIAL_SUFFIX = ".pkl"
NETWORK_KEYS = ("G", "D", "G_ema")
# Buffers the reference saves but our modules rebuild (constant resampling filters).
SKIPPED_BUFFERS = ("resample_filter",)
# Most dimensions of one tensor (network weights have at most 4).
MAX_TENSOR_DIMS = 8


class NetworkPickleError(pickle.UnpicklingError, ValueError):
    """A network pickle refused by :func:`read_network_pickle`; the message names the file and the reason."""


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
        kwargs = self.state.get("_init_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise pickle.UnpicklingError(f"the {self.class_name}'s _init_kwargs is a {type(kwargs).__name__}")
        return dict(kwargs)

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every parameter and buffer below this object, keyed like ``nn.Module.state_dict``.

        Raises:
            pickle.UnpicklingError: a sub-module is not a persistent module, or appears twice (a
                network's modules form a tree; a shared or cyclic one would be walked forever).
        """
        out: dict[str, torch.Tensor] = {}
        pending: list[tuple[str, PersistentObject]] = [(prefix, self)]
        seen: dict[int, str] = {}
        while pending:
            path, module = pending.pop()
            if id(module) in seen:
                raise pickle.UnpicklingError(
                    f"the module at {path.rstrip('.') or 'the top'!r} is the same object as the one at "
                    f"{seen[id(module)].rstrip('.') or 'the top'!r}; a network's modules form a tree"
                )
            seen[id(module)] = path
            for group in ("_parameters", "_buffers"):
                for name, tensor in _as_dict(module.state.get(group), f"{path}{group}").items():
                    if tensor is not None:
                        out[path + str(name)] = tensor
            for name, child in reversed(_as_dict(module.state.get("_modules"), f"{path}_modules").items()):
                if isinstance(child, PersistentObject):
                    pending.append((f"{path}{name}.", child))
                elif child is not None:
                    raise pickle.UnpicklingError(
                        f"sub-module {path + str(name)!r} is a {type(child).__name__}, not a persistent "
                        "module"
                    )
        return out


def _as_dict(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise pickle.UnpicklingError(f"{where!r} is a {type(value).__name__}, not a dict")
    return value


def _rebuild_persistent(meta: Any) -> PersistentObject:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: records, never executes."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or "class_name" not in meta:
        raise pickle.UnpicklingError("a persistent object in the pickle has no class record")
    return PersistentObject(str(meta["class_name"]), _as_dict(meta.get("state"), "state").copy())


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a plain tensor inside its storage, no hooks."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"a tensor is built on a {type(storage).__name__}, not a storage")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if (
        not isinstance(offset, int)
        or offset < 0
        or len(shape) != len(strides)
        or len(shape) > MAX_TENSOR_DIMS
    ):
        raise pickle.UnpicklingError(f"a tensor has offset {offset!r}, size {size!r} and stride {stride!r}")
    available = storage._untyped_storage.nbytes() // storage._dtype.itemsize
    numel = int(np.prod(shape, dtype=object))
    extent = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + 1 if numel else 0
    if numel > available or extent > available:
        raise pickle.UnpicklingError(
            f"a tensor of size {shape} (stride {strides}, offset {offset}) claims more than its storage "
            f"of {available} elements holds"
        )
    tensor = torch.empty(0, dtype=storage._dtype)
    return tensor.set_(storage._untyped_storage, offset, shape, strides)


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list) or not all(type(n) is int and n >= 0 for n in value):
        raise pickle.UnpicklingError(f"a tensor's {what} is {value!r}, not a tuple of non-negative integers")
    return tuple(value)


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the plain tensor, no hooks."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f"a parameter wraps a {type(data).__name__}, not a tensor")
    return data


def _load_storage(data: Any) -> torch.storage.TypedStorage:
    """Stand-in for ``torch.storage._load_from_bytes``: checks the size claims, then ``weights_only``.

    The bytes are a legacy ``torch.save`` of one storage: three small header pickles (magic number,
    protocol, system info), the pickled storage record ``("storage", type, key, location, numel, view)``,
    the pickled list of keys, then each storage's element count and raw bytes. ``torch.load``
    allocates ``numel`` elements before it reads them, so a record that claims more than the bytes
    that follow is refused first.
    """
    if not isinstance(data, bytes):
        raise pickle.UnpicklingError(f"a storage is given as a {type(data).__name__}, not bytes")
    claimed: list[int] = []

    def record(pid: Any) -> None:
        if not (
            isinstance(pid, tuple)
            and len(pid) >= 5
            and pid[0] == "storage"
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            raise pickle.UnpicklingError(f"a storage record is {pid!r}")
        claimed.append(pid[4] * pid[1].itemsize)

    stream = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info: plain data
        DataUnpickler(stream, {}).load()
    DataUnpickler(stream, _STORAGE_TYPES, persistent_load=record).load()
    DataUnpickler(stream, {}).load()  # the storage keys
    if sum(claimed) > len(data) - stream.tell():
        raise pickle.UnpicklingError(
            f"a storage claims {sum(claimed)} bytes but the pickle holds {len(data) - stream.tell()} for it"
        )
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


class _StorageType:
    """A ``torch.<Name>Storage`` as named in a storage record: only its dtype is read."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.itemsize = dtype.itemsize


_STORAGE_TYPES = {
    ("torch", name): _StorageType(getattr(torch, name)._dtype)
    for name in dir(torch)
    if name.endswith("Storage")
    and isinstance(getattr(torch, name), type)
    and name != "TypedStorage"
    and issubclass(getattr(torch, name), torch.storage._LegacyStorage)
}
# The globals a network pickle may name: constructors of data (numpy's arrays and dtypes are bound per
# reader, see ``DataUnpickler``).
DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _rebuild_persistent,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("dnnlib.util", "EasyDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    **NUMPY_GLOBALS,
    **{("torch", name): dtype for name, dtype in vars(torch).items() if isinstance(dtype, torch.dtype)},
}


# What a network pickle holds as it is: plain data, and the tensors, dtypes and storages built above.
_LEAVES = (*DATA_LEAVES, torch.Tensor, torch.dtype, torch.storage.TypedStorage)


def load_data_pickle(path: str | os.PathLike) -> Any:
    """The value a pickle file holds, read as data only (see the module docstring for the guarantees).

    Raises:
        NetworkPickleError: the file names a global outside :data:`DATA_GLOBALS`, asks for the state
            of anything but a fresh array, is truncated, nested too deep, shares a module or claims
            more bytes than it holds; the message names the file and the reason.
    """
    try:
        return read_data(
            Path(path).read_bytes(),
            DATA_GLOBALS,
            expected="a stylegan2-ada-pytorch network pickle",
            leaves=_LEAVES,
            children_of=lambda obj: [obj.state] if isinstance(obj, PersistentObject) else None,
        )
    except MALFORMED as error:
        raise _refusal(path, error) from None


def _refusal(path: str | os.PathLike, error: BaseException) -> NetworkPickleError:
    reason = refusal_reason(error)
    return NetworkPickleError(
        f"Network pickle {str(path)!r} is refused: {reason}. Only stylegan2-ada-pytorch network snapshots "
        "(network-snapshot-*.pkl or the official pretrained .pkl files) are read."
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
    """Read a stylegan2-ada-pytorch ``.pkl`` as data, without executing code from it.

    Raises:
        FileNotFoundError: the file does not exist.
        NetworkPickleError: (a ``pickle.UnpicklingError`` and a ``ValueError``) the file is not a
            network snapshot we can read: it needs a global outside the allow-list, is hostile or
            malformed, or its networks use options we do not build. The message names the file and why.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Network pickle {str(path)!r} does not exist; pass the path of a stylegan2-ada-pytorch "
            "network-snapshot-*.pkl (or one of the official pretrained .pkl files)."
        )
    data = load_data_pickle(path)
    if not isinstance(data, dict) or any(not isinstance(data.get(k), PersistentObject) for k in NETWORK_KEYS):
        found = sorted(map(str, data))[:10] if isinstance(data, dict) else type(data).__name__
        raise NetworkPickleError(
            f"{str(path)!r} is not a stylegan2-ada-pytorch network pickle: expected a dict with "
            f"persistent modules {list(NETWORK_KEYS)}, found {found}. TensorFlow-era pickles must first be "
            "converted with the reference's legacy.py."
        )
    try:
        return _networks_from(data, str(path))
    except NetworkPickleError:
        raise
    except MALFORMED as error:
        raise _refusal(path, error) from None


def _networks_from(data: dict[str, Any], source: str) -> OfficialNetworks:
    generator, discriminator = data["G"].init_kwargs, data["D"].init_kwargs
    augment_pipe = data.get("augment_pipe")
    augment_p = None
    if isinstance(augment_pipe, PersistentObject) and "p" in augment_pipe.tensors():
        augment_p = float(augment_pipe.tensors()["p"])
    training_set_kwargs = data.get("training_set_kwargs")
    return OfficialNetworks(
        weights={key: _strip_constant_buffers(data[key].tensors()) for key in NETWORK_KEYS},
        resolution=int(generator["img_resolution"]),
        channels=int(generator["img_channels"]),
        num_classes=int(generator.get("c_dim", 0)),
        config_overrides=network_config(generator, discriminator, source),
        augment_p=augment_p,
        training_set_kwargs=training_set_kwargs if isinstance(training_set_kwargs, dict) else None,
    )


def _strip_constant_buffers(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tensors.items() if k.rsplit(".", 1)[-1] not in SKIPPED_BUFFERS}


def network_config(generator: dict[str, Any], discriminator: dict[str, Any], source: str) -> dict[str, Any]:
    """Our config fields from the reference's constructor arguments of G and D.

    Defaults are the reference's constructor defaults (``SynthesisNetwork``: ``num_fp16_res=0``,
    ``conv_clamp=None``; ``MappingNetwork``: 8 layers; ``Discriminator``: ``resnet``).

    Raises:
        NetworkPickleError: G and D disagree on the channel schedule, or G uses an architecture we do
            not build.
    """
    mapping = dict(generator.get("mapping_kwargs") or {})
    synthesis = dict(generator.get("synthesis_kwargs") or {})
    epilogue = dict(discriminator.get("epilogue_kwargs") or {})
    if synthesis.get("architecture", "skip") != "skip":
        raise NetworkPickleError(
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
            raise NetworkPickleError(
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
