"""Named dataclass configs plus field overrides, the preset mechanism of the model families.

Modules take ``config`` (a preset name) and ``config_overrides`` (fields to replace), so a YAML reads
the same for a StyleGAN2 and a Sparse Transformer. ``sparse_transformer_config`` is :func:`resolve_preset`
over the Sparse Transformer's presets; ``stylegan2_config`` also has the ``"auto"`` preset computed from
the resolution and the number of GPUs, and applies its overrides with :func:`replace_fields`. Each
family's presets and config function carry its name (``STYLEGAN2_PRESETS``, ``stylegan2_config``,
``SPARSE_TRANSFORMER_PRESETS``, ``sparse_transformer_config``; the augmentation groups of ``AugmentPipe``
are ``AUGMENT_PRESETS``)::

    config: tiny
    config_overrides: {channel_max: 64}
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypedDict, TypeVar

from lightning_genaug._checks import check_choice

ConfigT = TypeVar("ConfigT")


def replace_fields(config: ConfigT, overrides: Mapping[str, Any], *, frozen: tuple[str, ...] = ()) -> ConfigT:
    """``config`` with the dataclass fields in ``overrides`` replaced (validated by the config itself).

    Args:
        config: a dataclass instance.
        overrides: field name -> new value.
        frozen: field names that may not be overridden (e.g. a preset's ``name``).

    Raises:
        ValueError: a name is not a field of the config, or is in ``frozen``.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Small:
        ...     width: int = 8
        >>> replace_fields(Small(), {"width": 16})
        Small(width=16)
    """
    names = {field.name for field in dataclasses.fields(config)} - set(frozen)
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"Unknown {type(config).__name__} field(s) {unknown} in `config_overrides`; valid fields are: "
            f"{', '.join(sorted(names))}."
        )
    return dataclasses.replace(config, **overrides)


def overrides_type(config_type: type, name: str, exclude: tuple[str, ...] = ()) -> type:
    """A ``TypedDict`` (every key optional) of the fields of ``config_type`` minus ``exclude``.

    The type of a module's ``config_overrides``: the CLI then checks each key and value against the
    config's own field types, and the dataclass stays the one home of the field list.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Small:
        ...     name: str = "small"
        ...     width: int = 8
        >>> Overrides = overrides_type(Small, "SmallOverrides", exclude=("name",))
        >>> Overrides.__annotations__, Overrides.__total__
        ({'width': <class 'int'>}, False)
    """
    hints = typing.get_type_hints(config_type)
    names = [field.name for field in dataclasses.fields(config_type) if field.name not in exclude]
    return TypedDict(name, {field: hints[field] for field in names}, total=False)


def resolve_preset(presets: Mapping[str, ConfigT], name: str, overrides: Mapping[str, Any]) -> ConfigT:
    """The preset ``name`` of ``presets`` with ``overrides`` applied (see :func:`replace_fields`).

    Raises:
        ValueError: unknown preset name (the error lists the valid ones) or unknown field.
    """
    return replace_fields(presets[check_choice("config", name, presets)], overrides, frozen=("name",))


__all__ = ["overrides_type", "replace_fields", "resolve_preset"]
