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
- **It ends fast.** Every object is walked once (shared sub-objects are memoised; a module, or a
  module's table of parameters, buffers or sub-modules, that appears twice, or inside itself, is
  refused), nesting is bounded by :data:`~lightning_genaug.safe_pickle.MAX_DEPTH`, dict keys are plain
  short values (hashing is bounded), and names are strings of at most :data:`MAX_NAME` characters.
- **Tensor memory never exceeds the file's size.** A storage may not claim more elements than the
  bytes the file holds for it, each storage is materialised once however often the file refers to it,
  and all storages together may not exceed the file's size.
- **Every refusal is one** :class:`NetworkPickleError` naming the file and the reason, which describes
  the file's values by type, count and short names, never by formatting them.

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

from lightning_genaug.models.loading import NetworkFileError, held_bytes, plan_on_meta, state_problems
from lightning_genaug.safe_pickle import (
    DATA_LEAVES,
    MALFORMED,
    NUMPY_GLOBALS,
    DataUnpickler,
    read_data,
    refusal_reason,
    short_names,
)

log = logging.getLogger(__name__)

OFFICIAL_SUFFIX = ".pkl"
NETWORK_KEYS = ("G", "D", "G_ema")
# Buffers the reference saves but our modules rebuild (constant resampling filters).
SKIPPED_BUFFERS = ("resample_filter",)
# Most dimensions of one tensor (network weights have at most 4).
MAX_TENSOR_DIMS = 8
# Longest module, tensor or class name accepted (the reference's are under 30 characters).
MAX_NAME = 200


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
        seen: dict[int, str] = {}  # modules and their tables, each listed once
        while pending:
            path, module = pending.pop()
            tables = [_as_dict(module.state.get(group), f"{_where(path)}.{group}") for group in _TABLES]
            for obj, what in ((module, ""), *zip(tables, _TABLES, strict=True)):
                if obj and id(obj) in seen:  # (an empty table holds nothing to list twice)
                    same = f"shares its {what} with" if what else "is the same object as"
                    raise pickle.UnpicklingError(
                        f"the module at {_where(path)!r} {same} the one at {_where(seen[id(obj)])!r}; a "
                        "network's modules form a tree"
                    )
                seen[id(obj)] = path
            parameters, buffers, modules = tables
            for name, tensor in (*parameters.items(), *buffers.items()):
                if tensor is not None:
                    out[path + _check_name(name, path)] = tensor
            for name, child in reversed(modules.items()):
                if isinstance(child, PersistentObject):
                    pending.append((f"{path}{_check_name(name, path)}.", child))
                elif child is not None:
                    raise pickle.UnpicklingError(
                        f"sub-module {_where(path + _check_name(name, path))!r} is a {type(child).__name__}, "
                        "not a persistent module"
                    )
        return out


_TABLES = ("_parameters", "_buffers", "_modules")


def _where(path: str) -> str:
    """A module path for a message: its last 100 characters."""
    path = path.rstrip(".") or "the top"
    return path if len(path) <= 100 else "..." + path[-97:]


def _check_name(name: Any, path: str | None) -> str:
    """A name of a module or tensor below ``path`` (``None``: a class name), at most :data:`MAX_NAME` long."""
    if isinstance(name, str) and len(name) <= MAX_NAME:
        return name
    what = f"a string of {len(name)} characters" if isinstance(name, str) else f"a {type(name).__name__}"
    where = "a class name" if path is None else f"a name in the module at {_where(path)!r}"
    raise pickle.UnpicklingError(f"{where} is {what}, not a name of at most {MAX_NAME} characters")


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
    # Not copied: a state shared by two objects is refused when their tensors are listed.
    return PersistentObject(_check_name(meta["class_name"], None), _as_dict(meta.get("state"), "state"))


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a plain tensor inside its storage, no hooks."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"a tensor is built on a {type(storage).__name__}, not a storage")
    shape = _int_tuple(size, "size")
    strides = _int_tuple(stride, "stride")
    if (
        type(offset) is not int
        or not 0 <= offset < _MAX_INDEX
        or len(shape) != len(strides)
        or len(shape) > MAX_TENSOR_DIMS
    ):
        offset_text = (
            offset if type(offset) is int and abs(offset) < _MAX_INDEX else f"a {type(offset).__name__}"
        )
        raise pickle.UnpicklingError(
            f"a tensor has offset {offset_text}, {len(shape)} sizes and {len(strides)} strides (at most "
            f"{MAX_TENSOR_DIMS}, as many strides as sizes)"
        )
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


# Sizes, strides and offsets are below 2**63 (what torch indexes with).
_MAX_INDEX = 2**63


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if (
        not isinstance(value, tuple | list)
        or len(value) > MAX_TENSOR_DIMS
        or not all(type(n) is int and 0 <= n < _MAX_INDEX for n in value)
    ):
        count = f" of {len(value)}" if isinstance(value, tuple | list) else ""
        raise pickle.UnpicklingError(
            f"a tensor's {what} is a {type(value).__name__}{count}, not a tuple of at most {MAX_TENSOR_DIMS} "
            "non-negative integers below 2**63"
        )
    return tuple(value)


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the plain tensor, no hooks."""
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError(f"a parameter wraps a {type(data).__name__}, not a tensor")
    return data


class _StorageLoader:
    """Stand-in for ``torch.storage._load_from_bytes``, one per file read.

    The bytes are a legacy ``torch.save`` of one storage: three small header pickles (magic number,
    protocol, system info), the pickled storage record ``("storage", type, key, location, numel, view)``,
    the pickled list of keys, then each storage's element count and raw bytes. ``torch.load``
    allocates ``numel`` elements before it reads them, so a record that claims more than the bytes
    that follow is refused first. Each bytes object is materialised once (a file that refers to it
    again through the memo gets the same storage), and all storages together may not exceed
    ``limit`` bytes (the file's size).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._loaded: dict[int, tuple[bytes, torch.storage.TypedStorage]] = {}

    def __call__(self, data: Any) -> torch.storage.TypedStorage:
        if not isinstance(data, bytes):
            raise pickle.UnpicklingError(f"a storage is given as a {type(data).__name__}, not bytes")
        if id(data) in self._loaded:  # the same bytes again: the storage already made from them
            return self._loaded[id(data)][1]
        claimed = _claimed_bytes(data)
        if self.total + claimed > self.limit:
            raise pickle.UnpicklingError(
                f"its storages claim {self.total + claimed} bytes, more than the file's {self.limit}"
            )
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        self.total += (
            storage._untyped_storage.nbytes() if isinstance(storage, torch.storage.TypedStorage) else claimed
        )
        self._loaded[id(data)] = (data, storage)  # the bytes are kept so that their id stays theirs
        return storage


def _claimed_bytes(data: bytes) -> int:
    """The bytes the storage record in ``data`` claims, refused when more than the bytes that follow."""
    claimed: list[int] = []

    def record(pid: Any) -> None:
        if not (
            type(pid) is tuple
            and len(pid) >= 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and type(pid[4]) is int
            and pid[4] >= 0
        ):
            count = f" of {len(pid)} items" if type(pid) is tuple else ""
            raise pickle.UnpicklingError(
                f"a storage record is a {type(pid).__name__}{count}, not ('storage', type, key, location, "
                "numel, ...)"
            )
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
    return sum(claimed)


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
# reader, see ``DataUnpickler``; ``torch.storage._load_from_bytes`` per file, see ``_StorageLoader``).
DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _rebuild_persistent,
    ("torch.storage", "_load_from_bytes"): _StorageLoader(limit=0),  # admits none; bound per file
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
    raw = Path(path).read_bytes()
    constructors = {**DATA_GLOBALS, ("torch.storage", "_load_from_bytes"): _StorageLoader(len(raw))}
    try:
        return read_data(
            raw,
            constructors,
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
        found = f"keys {short_names(data)}" if isinstance(data, dict) else f"a {type(data).__name__}"
        raise NetworkPickleError(
            f"{str(path)!r} is not a stylegan2-ada-pytorch network pickle: expected a dict with "
            f"persistent modules {list(NETWORK_KEYS)}, found {found}. TensorFlow-era pickles must first be "
            "converted with the reference's legacy.py."
        )
    try:
        networks = _networks_from(data, str(path))
        check_networks_fit(networks, str(path))
    except NetworkPickleError:
        raise
    except MALFORMED as error:
        raise _refusal(path, error) from None
    return networks


def check_networks_fit(networks: OfficialNetworks, source: str) -> None:
    """The networks a pickle's own configuration describes hold exactly its tensors; checked on meta.

    The configuration (``img_resolution``, ``z_dim``, ``channel_base`` ...) is what ``load`` builds, so
    it is planned on the meta device first (:func:`~lightning_genaug.models.loading.plan_on_meta`):
    refused as soon as it would allocate more than twice the bytes of the file's tensors (plus 16 MiB),
    then every tensor name and shape must match. A file cannot make ``load`` allocate more than it holds.

    Raises:
        NetworkPickleError: the configuration describes other or larger networks than the tensors held.
    """
    from lightning_genaug.models.stylegan2.configs import build_networks, stylegan2_config

    def build() -> nn.ModuleDict:
        config = stylegan2_config("auto", networks.resolution, **networks.config_overrides)
        generator, discriminator = build_networks(
            config, networks.resolution, networks.channels, networks.num_classes
        )
        return nn.ModuleDict({"G": generator, "D": discriminator})

    tensors = [tensor for weights in networks.weights.values() for tensor in weights.values()]
    try:
        planned = plan_on_meta(build, held_bytes(tensors), source)
    except NetworkFileError as error:
        raise NetworkPickleError(str(error)) from None
    problems = weight_problems({"G": planned.G, "D": planned.D, "G_ema": planned.G}, networks)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)" if len(problems) > 5 else "")
        raise NetworkPickleError(
            f"Network pickle {source!r} is refused: it does not hold the tensors of the networks its own "
            f"configuration describes ({shown}); nothing was allocated. Only unaltered stylegan2-ada-pytorch "
            "network snapshots are read."
        )


def _networks_from(data: dict[str, Any], source: str) -> OfficialNetworks:
    generator, discriminator = data["G"].init_kwargs, data["D"].init_kwargs
    augment_pipe = data.get("augment_pipe")
    augment_p = None
    if isinstance(augment_pipe, PersistentObject):
        p = augment_pipe.tensors().get("p")
        if isinstance(p, torch.Tensor) and p.numel() == 1:
            augment_p = float(p)
    training_set_kwargs = data.get("training_set_kwargs")
    return OfficialNetworks(
        weights={key: _strip_constant_buffers(data[key].tensors()) for key in NETWORK_KEYS},
        resolution=_number(generator, "img_resolution", None, int),
        channels=_number(generator, "img_channels", None, int),
        num_classes=_number(generator, "c_dim", 0, int),
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
    mapping = _as_dict(generator.get("mapping_kwargs"), "G.mapping_kwargs")
    synthesis = _as_dict(generator.get("synthesis_kwargs"), "G.synthesis_kwargs")
    epilogue = _as_dict(discriminator.get("epilogue_kwargs"), "D.epilogue_kwargs")
    architecture = synthesis.get("architecture", "skip")
    if architecture != "skip":
        shown = (
            repr(architecture[:40]) if isinstance(architecture, str) else f"a {type(architecture).__name__}"
        )
        raise NetworkPickleError(
            f"{source!r}: the generator uses synthesis architecture {shown}; only "
            "'skip' (the reference's default and every official network) is supported."
        )
    d_architecture = discriminator.get("architecture", "resnet")
    if not isinstance(d_architecture, str) or len(d_architecture) > MAX_NAME:
        raise NetworkPickleError(
            f"{source!r}: D's architecture is a {type(d_architecture).__name__}, not a name."
        )
    config = {
        "z_dim": _number(generator, "z_dim", None, int),
        "w_dim": _number(generator, "w_dim", None, int),
        "mapping_layers": _number(mapping, "num_layers", 8, int),
        "mapping_lr_multiplier": _number(mapping, "lr_multiplier", 0.01, float),
        "channel_base": _number(synthesis, "channel_base", 32768, int),
        "channel_max": _number(synthesis, "channel_max", 512, int),
        "num_fp16_res": _number(synthesis, "num_fp16_res", 0, int),
        "conv_clamp": _number(synthesis, "conv_clamp", None, float, optional=True),
        "d_architecture": d_architecture,
        "mbstd_num_channels": _number(epilogue, "mbstd_num_channels", 1, int),
    }
    for name in ("channel_base", "channel_max"):
        d_value = _number(discriminator, name, 32768 if name == "channel_base" else 512, int)
        if d_value != config[name]:
            raise NetworkPickleError(
                f"{source!r}: G has {name}={config[name]} but D has {name}={d_value}; one config field "
                "builds both networks here, so such a pickle is not supported."
            )
    return config


def _number(
    kwargs: dict[str, Any], name: str, default: Any, kind: type, optional: bool = False
) -> int | float | None:
    """``kwargs[name]`` (or ``default`` when absent) as a ``kind``; a refusal naming it when not a number.

    Raises:
        pickle.UnpicklingError: the value is not an int (``kind=int``) or a real number (``float``).
    """
    if name not in kwargs:
        if default is None and not optional:
            raise pickle.UnpicklingError(f"the constructor argument {name!r} is missing")
        return default
    value = kwargs[name]
    if value is None and optional:
        return None
    numbers = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    if not isinstance(value, numbers) or isinstance(value, bool):
        raise pickle.UnpicklingError(
            f"the constructor argument {name!r} is a {type(value).__name__}, not a number"
        )
    return kind(value)


def weight_problems(modules: dict[str, nn.Module], networks: OfficialNetworks) -> list[str]:
    """Every tensor of ``modules`` missing from the pickle, unexpected, or of another shape (names cut short).

    ``modules`` may live on the meta device: only names and shapes are compared.
    """
    problems: list[str] = []
    for key, module in modules.items():
        held = networks.weights[key]
        problems += state_problems(module.state_dict(), held, prefix=f"{key}.", source="pickle")
    return problems


def misfit_error(problems: list[str], source: str) -> ValueError:
    """The one error naming the first tensors that do not fit (see :func:`weight_problems`)."""
    shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)" if len(problems) > 8 else "")
    return ValueError(
        f"Network pickle {source!r} does not fit this model: {shown}. Leave resolution, channels, "
        "num_classes and config_overrides unset so that they are read from the pickle."
    )
