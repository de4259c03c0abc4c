"""From a file to a ready network in one call: ``load(path)`` for checkpoints and official pickles.

``StyleGAN2ADA.load`` and ``SparseTransformerDistAug.load`` are the per-class entry points;
:func:`load_network` picks the class from the file itself (what the after-training subcommands use).
A ready network is in eval mode with gradients off: sampling, style mixing, projection (which
optimises latents, never weights) and export need nothing else.

A ``.ckpt`` is read as data (``torch.load(weights_only=True)``) and the module is built here, not by
Lightning's ``load_from_checkpoint``, because that one hands the hyper-parameters to jsonargparse,
which imports and builds whatever ``class_path`` a file names. Loading for use:

- **builds no class a file names**, except from :data:`LOADABLE_CLASSES` (the module) and
  :data:`ALLOWED_OBJECTS` (``DistAugTransforms``, which sampling needs); the training-only objects of
  :data:`TRAINING_ONLY` (StyleGAN2ADA's ``augment``, ``regularizer``, ``consistency``) are never built
  (the loaded module has ``augment_pipe = None``) and their state is skipped;
- **checks every hyper-parameter** before anything is built: plain data of at most
  :data:`MAX_HPARAM_VALUES` values (so formatting one in an error is bounded), no ``class_path``
  elsewhere;
- **allocates only what the file holds**: the module is first built on the meta device
  (:func:`plan_on_meta`), refused as soon as its tensors would exceed twice the bytes of the file's
  tensors plus :data:`ALLOCATION_SLACK`, and its state-dict names and shapes must equal the file's;
  only then is it built for real.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import lightning.pytorch as pl
import torch
from torch import nn
from torch.nn.modules import module as torch_module

ModuleT = TypeVar("ModuleT", bound=pl.LightningModule)
NetT = TypeVar("NetT", bound=nn.Module)

PACKAGE = __package__.split(".")[0]
# The module classes a checkpoint may name (``hyper_parameters["_class_path"]``), by class name; each is
# imported from its fixed home here, never from a path read from the file.
LOADABLE_CLASSES = {
    "StyleGAN2ADA": f"{PACKAGE}.models.stylegan2",
    "ScaleGAN": f"{PACKAGE}.models.scalegan",
    "SparseTransformerDistAug": f"{PACKAGE}.models.sparse_transformer",
}
# The first state-dict key of each loadable family (checked in order), for checkpoints that do not
# name their class (written from Python rather than by LightningCLI).
_FAMILY_BY_KEY_PREFIX = (
    ("G_ema.", "StyleGAN2ADA"),
    ("ema_net.", "SparseTransformerDistAug"),
)
# Hyper-parameters holding training-only objects that loading for use never builds, per family root:
# ``{argument: attribute}`` (the attribute's state is skipped).
TRAINING_ONLY = {
    "StyleGAN2ADA": {"augment": "augment_pipe", "regularizer": "regularizer", "consistency": "consistency"},
}
# Hyper-parameters holding objects that loading builds, per family root: ``{argument: (class name,
# module)}``; a ``class_path`` naming anything else is refused before anything is imported.
ALLOWED_OBJECTS = {
    "SparseTransformerDistAug": {"augment": ("DistAugTransforms", f"{PACKAGE}.augment.distaug")},
}
# Most values (containers and leaves, shared ones counted each time they are reached) in one
# checkpoint's hyper-parameters, and longest string.
MAX_HPARAM_VALUES = 10_000
MAX_HPARAM_STRING = 4_096
# What a network may allocate beyond the tensors its file holds: ALLOCATION_FACTOR times their bytes
# (a file may store them at lower precision) plus ALLOCATION_SLACK (constant filters, counters).
ALLOCATION_FACTOR = 2
ALLOCATION_SLACK = 16 * 2**20


def check_network_file(path: str | os.PathLike) -> Path:
    """``path`` as a ``Path``, or a ``FileNotFoundError`` that says what to pass instead."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Network file {str(path)!r} does not exist; pass a checkpoint written by training (e.g. "
            "runs/ada/lightning_logs/version_0/checkpoints/last.ckpt) or a stylegan2-ada-pytorch .pkl."
        )
    return path


def ready_for_inference(model: ModuleT, map_location: str | torch.device | None = None) -> ModuleT:
    """``model`` moved to ``map_location`` (when given), in eval mode, with gradients off."""
    if map_location is not None:
        model = model.to(torch.device(map_location))
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------- allocation on meta
def held_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """The bytes of the distinct storages under ``tensors`` (views of one storage count once).

    >>> base = torch.zeros(256)
    >>> held_bytes([base, base[:10], base[128:]]), held_bytes([torch.zeros(3), torch.zeros(3)])
    (1024, 24)
    """
    storages: dict[tuple[str, int], int] = {}
    anonymous = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        if storage.data_ptr() == 0:
            anonymous += storage.nbytes()
        else:
            storages[(str(storage.device), storage.data_ptr())] = storage.nbytes()
    return anonymous + sum(storages.values())


class NetworkFileError(ValueError):
    """A network file refused while loading; the message is one line naming the file and the problem."""


class AllocationError(NetworkFileError):
    """A file refused because the network it describes would allocate more than the tensors it holds."""


class _OverBudget(Exception):
    """Raised from inside a constructor on the meta device once it has registered too many bytes."""


@contextlib.contextmanager
def _allocation_budget(limit: int) -> Iterator[list[int]]:
    """Count the bytes of parameters and buffers registered by this thread; past ``limit``, stop.

    Yields:
        A one-item list holding the bytes registered so far.
    """
    thread, registered = threading.get_ident(), [0]

    def count(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        if tensor is not None and threading.get_ident() == thread:
            registered[0] += tensor.numel() * tensor.element_size()
            if registered[0] > limit:
                raise _OverBudget

    handles = [
        torch_module.register_module_parameter_registration_hook(count),
        torch_module.register_module_buffer_registration_hook(count),
    ]
    try:
        yield registered
    finally:
        for handle in handles:
            handle.remove()


def module_bytes(module: nn.Module) -> int:
    """The bytes of ``module``'s parameters and buffers (any device, the meta device included)."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def plan_on_meta(build: Callable[[], NetT], held: int, source: str) -> NetT:
    """``build()`` on the meta device, refused once it would allocate more than the file's tensors.

    Nothing is allocated: parameters and buffers have shapes only. The construction stops as soon as
    the bytes registered exceed ``ALLOCATION_FACTOR * held + ALLOCATION_SLACK``, so a file that asks
    for a huge network costs no more time than a network of its own size.

    Args:
        build: makes the network (its tensors go to the meta device).
        held: bytes of the tensors the file holds (:func:`held_bytes`).
        source: the file, for the error message.

    Returns:
        The network on the meta device (compare its ``state_dict`` shapes with the file's).

    Raises:
        AllocationError: (a :class:`NetworkFileError`, a ``ValueError``) the network would allocate more
            than the file justifies (one line, with both sizes).
        NetworkFileError: building the network from the file's values fails (its reason, cut short).
    """
    limit = ALLOCATION_FACTOR * held + ALLOCATION_SLACK
    planned = None
    with torch.device("meta"), _allocation_budget(limit) as registered:
        try:
            network = build()
        except _OverBudget:
            planned = registered[0]
        except Exception as error:  # the file's values reach constructors: any failure is a refusal
            reason = " ".join(str(error).split())
            raise NetworkFileError(
                f"{source!r} is refused: the network it describes cannot be built ({type(error).__name__}: "
                f"{_short(reason, 300)}); pass a file written by training or by the reference, unaltered."
            ) from None
    if planned is None:
        planned = module_bytes(network)
    if planned > limit:
        raise AllocationError(
            f"{source!r} is refused: the network it describes would allocate at least {_size(planned)} of "
            f"tensors, but the file holds {_size(held)} of them (a file must hold every tensor of its "
            "network; nothing was allocated). Pass a file written by training or by the reference, unaltered."
        )
    return network


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def state_problems(
    planned: Mapping[str, torch.Tensor],
    held: Mapping[str, torch.Tensor],
    *,
    prefix: str = "",
    source: str = "file",
) -> list[str]:
    """Names missing from the ``source``, unexpected in it, or of another shape (names cut to 80 characters).

    ``prefix`` goes before every name (``"G."``); ``source`` names what holds ``held`` (``"pickle"``).
    """

    def named(name: str) -> str:
        return _short(prefix + name, 80)

    problems = [f"{named(name)}: not in the {source}" for name in planned if name not in held]
    problems += [f"{named(name)}: not in the model" for name in held if name not in planned]
    problems += [
        f"{named(name)}: {source} {tuple(held[name].shape)} vs model {tuple(tensor.shape)}"
        for name, tensor in planned.items()
        if name in held and held[name].shape != tensor.shape
    ]
    return problems


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# --------------------------------------------------------------------------------- checkpoints
def _read_checkpoint(path: Path) -> tuple[dict[str, Any], str | None]:
    """The checkpoint dict (memory-mapped, on the CPU) and the device its first storage was saved on."""
    locations: list[str] = []

    def keep_on_cpu(storage: Any, location: str) -> Any:
        locations.append(location)
        return storage

    try:  # memory-mapped: only the entries read leave the disk
        checkpoint = torch.load(path, map_location=keep_on_cpu, weights_only=True, mmap=True)
    except Exception as error:  # torch raises several types for files it cannot read
        raise ValueError(
            f"{str(path)!r} cannot be read as a Lightning checkpoint with torch.load(weights_only=True) "
            f"({type(error).__name__}); pass a .ckpt written by training or a stylegan2-ada-pytorch .pkl."
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{str(path)!r} holds a {type(checkpoint).__name__}, not a Lightning checkpoint dict."
        )
    return checkpoint, (locations[0] if locations else None)


def _state_dict(checkpoint: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ValueError(
            f"{str(path)!r} has no state_dict of named tensors; pass a .ckpt written by training."
        )
    return state


def _hyper_parameters(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    hparams = checkpoint.get("hyper_parameters")
    if hparams is None:
        return {}
    if not isinstance(hparams, dict) or not all(isinstance(key, str) for key in hparams):
        raise ValueError(
            f"{str(path)!r}: hyper_parameters is a {type(hparams).__name__} without string keys, not the "
            "dict Lightning writes; pass a .ckpt written by training."
        )
    return hparams


def checkpoint_class(path: str | os.PathLike) -> type[pl.LightningModule]:
    """The module class that wrote a Lightning checkpoint.

    LightningCLI records it in ``hyper_parameters["_class_path"]``, which is used when it names one of
    :data:`LOADABLE_CLASSES` (imported from its home in this package; a path read from a file never
    chooses what gets imported); otherwise the state dict tells the family apart (``G_ema.*``:
    :class:`StyleGAN2ADA`, ``ema_net.*``: :class:`SparseTransformerDistAug`).

    Raises:
        ValueError: the file is not a checkpoint of a module that can be loaded here.
    """
    path = check_network_file(path)
    checkpoint, _ = _read_checkpoint(path)
    class_path = _hyper_parameters(checkpoint, path).get("_class_path")
    state = checkpoint.get("state_dict")
    keys = [key for key in state if isinstance(key, str)] if isinstance(state, dict) else []
    candidates = [
        name for prefix, name in _FAMILY_BY_KEY_PREFIX if any(key.startswith(prefix) for key in keys)
    ]
    if isinstance(class_path, str) and class_path.startswith(f"{PACKAGE}."):
        name = class_path.rpartition(".")[2]
        if name in LOADABLE_CLASSES:
            candidates.insert(0, name)
    if not candidates:
        raise ValueError(
            f"{str(path)!r} holds no StyleGAN2ADA or SparseTransformerDistAug weights; pass a checkpoint of "
            "one of them or a stylegan2-ada-pytorch .pkl."
        )
    return getattr(importlib.import_module(LOADABLE_CLASSES[candidates[0]]), candidates[0])


def _family(cls: type) -> str | None:
    """The name of the loadable family root ``cls`` derives from (``ScaleGAN``: ``StyleGAN2ADA``)."""
    for root in ("StyleGAN2ADA", "SparseTransformerDistAug"):
        home = importlib.import_module(LOADABLE_CLASSES[root])
        if issubclass(cls, getattr(home, root)):
            return root
    return None


def _init_parameters(cls: type) -> list[str]:
    """The keyword arguments ``cls(...)`` accepts, following ``**kwargs`` into the base class."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))


def _check_plain(name: str, value: Any, path: Path, objects_allowed: bool) -> None:
    """Refuse a hyper-parameter that is large, not plain data, or names a class where none is built."""
    pending, count = [value], 0
    while pending:
        item = pending.pop()
        count += 1
        if count > MAX_HPARAM_VALUES:
            raise ValueError(
                f"{str(path)!r} is refused: hyper-parameter {name!r} holds more than {MAX_HPARAM_VALUES} "
                "values; pass a .ckpt written by training."
            )
        if isinstance(item, dict):
            if "class_path" in item and not objects_allowed:
                raise ValueError(
                    f"{str(path)!r} is refused: hyper-parameter {name!r} names a class (class_path) where "
                    "none is built; nothing was imported. Pass a .ckpt written by training."
                )
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            pending += item
        elif isinstance(item, str | bytes) and len(item) > MAX_HPARAM_STRING:
            raise ValueError(
                f"{str(path)!r} is refused: hyper-parameter {name!r} holds a string of {len(item)} "
                f"characters (at most {MAX_HPARAM_STRING}); pass a .ckpt written by training."
            )
        elif not isinstance(item, str | bytes | int | float | bool | type(None)):
            raise ValueError(
                f"{str(path)!r} is refused: hyper-parameter {name!r} holds a {type(item).__name__}, not "
                "plain data; pass a .ckpt written by training."
            )


def _object_factory(name: str, value: Any, allowed: tuple[str, str], path: Path) -> Callable[[], Any]:
    """What builds the object a ``{class_path, init_args}`` hyper-parameter describes, if it is allowed.

    Checked now; built only when the factory is called (once on the meta device, once for real).
    """
    if value is None:
        return lambda: None
    class_name, home = allowed
    class_path = value.get("class_path") if isinstance(value, dict) else None
    accepted = {
        class_name,
        f"{PACKAGE}.{class_name}",
        f"{home}.{class_name}",
        f"{home.rpartition('.')[0]}.{class_name}",
    }
    if not isinstance(class_path, str) or class_path not in accepted:
        shown = (
            repr(_short(class_path, 80)) if isinstance(class_path, str) else f"a {type(class_path).__name__}"
        )
        raise ValueError(
            f"{str(path)!r} is refused: hyper-parameter {name!r} names the class {shown}, which loading "
            f"never builds (only {home}.{class_name}); nothing was imported or built. Pass a .ckpt written "
            "by training."
        )
    cls = getattr(importlib.import_module(home), class_name)
    parameters = set(_init_parameters(cls))
    init_args = value.get("init_args") or {}
    extra = set(value) - {"class_path", "init_args", "dict_kwargs"}
    if (
        extra
        or value.get("dict_kwargs")
        or not isinstance(init_args, dict)
        or not set(init_args) <= parameters
    ):
        raise ValueError(
            f"{str(path)!r} is refused: hyper-parameter {name!r} gives {class_name} other arguments than "
            f"{sorted(parameters)}; pass a .ckpt written by training."
        )
    return lambda: cls(**init_args)


def module_factory(
    cls: type[ModuleT], hparams: dict[str, Any], path: Path
) -> tuple[Callable[[], ModuleT], tuple[str, ...]]:
    """What rebuilds ``cls`` from a checkpoint's hyper-parameters, every one checked first.

    Returns:
        ``(build, skipped)``: a function that builds the module (call it on the meta device first), and
        the state-dict prefixes of the training-only objects left out (see :data:`TRAINING_ONLY`).

    Raises:
        ValueError: a hyper-parameter is not plain data, too large, or names a class that is not built.
    """
    family = _family(cls)
    dropped = TRAINING_ONLY.get(family, {})
    allowed = ALLOWED_OBJECTS.get(family, {})
    kwargs: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    for name in _init_parameters(cls):
        if name in dropped:
            kwargs[name] = None
        elif name in hparams and not name.startswith("_"):
            _check_plain(name, hparams[name], path, objects_allowed=name in allowed)
            if name in allowed:
                factories[name] = _object_factory(name, hparams[name], allowed[name], path)
            else:
                kwargs[name] = hparams[name]

    def build() -> ModuleT:
        return cls(**kwargs, **{name: factory() for name, factory in factories.items()})

    return build, tuple(f"{attribute}." for attribute in dropped.values())


def load_checkpoint(
    cls: type[ModuleT], path: str | os.PathLike, map_location: str | torch.device | None = None
) -> ModuleT:
    """``cls`` rebuilt from a Lightning checkpoint for inference, reading the file as data only.

    The hyper-parameters are checked (:func:`module_factory`), the module is planned on the meta device
    against the file's tensors (:func:`plan_on_meta`, :func:`state_problems`), then built and loaded
    strictly. No ``Trainer`` is involved and no class the file names is built beyond the allow-lists.

    Args:
        cls: the module class (``StyleGAN2ADA``, ``ScaleGAN``, ``SparseTransformerDistAug``).
        path: the ``.ckpt``.
        map_location: device for the weights; ``None``: where they were saved (when available there).

    Returns:
        The module in eval mode with gradients off.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a checkpoint, names classes, or does not fit the module its
            hyper-parameters describe; one line naming the file and the problem.
    """
    path = check_network_file(path)
    checkpoint, saved_on = _read_checkpoint(path)
    build, skipped = module_factory(cls, _hyper_parameters(checkpoint, path), path)
    state = {
        key: value for key, value in _state_dict(checkpoint, path).items() if not key.startswith(skipped)
    }
    planned = plan_on_meta(build, held_bytes(state.values()), str(path))
    problems = state_problems(planned.state_dict(), state)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)" if len(problems) > 5 else "")
        raise ValueError(
            f"{str(path)!r} does not fit the {cls.__name__} its hyper-parameters describe ({shown}); it was "
            "refused before allocating. Pass the checkpoint unaltered, as training wrote it."
        )
    model = build()
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(state, strict=True)
    if (
        map_location is None
        and saved_on is not None
        and saved_on.startswith("cuda")
        and torch.cuda.is_available()
    ):
        map_location = saved_on
    return ready_for_inference(model, map_location)


__all__ = [
    "ALLOCATION_FACTOR",
    "ALLOCATION_SLACK",
    "ALLOWED_OBJECTS",
    "AllocationError",
    "NetworkFileError",
    "LOADABLE_CLASSES",
    "MAX_HPARAM_VALUES",
    "TRAINING_ONLY",
    "check_network_file",
    "checkpoint_class",
    "held_bytes",
    "module_factory",
    "load_checkpoint",
    "module_bytes",
    "plan_on_meta",
    "ready_for_inference",
    "state_problems",
]
