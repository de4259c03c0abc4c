"""Argument and tensor checks shared by every part of the package.

Each check raises a ``ValueError``/``TypeError`` that names the argument, the allowed values and
the value received, so a user error never surfaces as a traceback from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check that ``low <= value <= high`` (bounds optional, inclusivity configurable).

    >>> check_range("target", 0.6, 0.0, 1.0)
    0.6
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}.")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"`{name}` must be in {bounds}, got {value!r}.")
    return value


def check_positive_int(name: str, value: int, *, allow_zero: bool = False) -> int:
    """Check that ``value`` is an ``int`` greater than 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"`{name}` must be {'>= 0' if allow_zero else '> 0'}, got {value}.")
    return value


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``; strings are compared case-insensitively.

    Returns the normalised value (lower-cased for strings).

    >>> check_choice("heuristic", "RT", ["rt", "rv"])
    'rt'
    """
    choices = list(choices)
    normalised = value.lower() if isinstance(value, str) else value
    if normalised not in choices:
        raise ValueError(f"Unknown `{name}` {value!r}; valid values are: {', '.join(map(str, choices))}.")
    return normalised


def check_images(images: Any, name: str = "images", *, channels: Iterable[int] | None = None) -> torch.Tensor:
    """Check that ``images`` is a float tensor of shape ``(B, C, H, W)``.

    Args:
        images: the object to check.
        name: how the tensor is called in the error message.
        channels: allowed channel counts (``None`` allows any).

    Returns:
        ``images`` unchanged.
    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"`{name}` must be a torch.Tensor of shape (B, C, H, W), got {type(images).__name__}."
        )
    if images.ndim != 4:
        raise ValueError(
            f"`{name}` must be 4-D (B, C, H, W), got shape {tuple(images.shape)}; "
            "add a batch dimension with `x.unsqueeze(0)` for a single image."
        )
    if not images.is_floating_point():
        raise TypeError(
            f"`{name}` must be a floating-point tensor in [-1, 1], got dtype {images.dtype}; "
            "convert uint8 images with `x.float() / 127.5 - 1`."
        )
    if channels is not None:
        allowed = list(channels)
        if images.shape[1] not in allowed:
            raise ValueError(
                f"`{name}` has {images.shape[1]} channels (shape {tuple(images.shape)}); expected "
                f"{' or '.join(map(str, allowed))}. Is the tensor channels-last (B, H, W, C)? "
                "Use `x.permute(0, 3, 1, 2)`."
            )
    return images


class MissingPathError(FileNotFoundError, ValueError):
    """A path argument that names nothing: a ``FileNotFoundError`` that the CLI prints as one line (a
    ``ValueError`` raised while building a class, as for any bad value)."""


class MismatchError(ValueError):
    """Two parts of a run (data, model, metrics) disagree on the images or the classes.

    Raised in ``setup``, before the first training step; the message is one line naming both values
    and the option to change. ``lightning-genaug`` prints it as one ``error:`` line (exit code 2).
    """


def check_same(quantity: str, first: tuple[str, Any], second: tuple[str, Any], fix: str) -> None:
    """Raise :class:`MismatchError` when two parts of a run give ``quantity`` different values.

    Args:
        quantity: what is compared, e.g. ``"channels"``.
        first: ``(who, value)``, e.g. ``("StyleGAN2ADA (`model.channels`)", 3)``.
        second: the same for the other part.
        fix: the sentence that says which option to change.

    >>> check_same("channels", ("the model", 1), ("the data", 1), "set them equal.")
    >>> check_same("channels", ("the model", 3), ("the data", 1), "set them equal.")
    Traceback (most recent call last):
    ...
    lightning_genaug._checks.MismatchError: channels differ: the model has 3, the data has 1; set them equal.
    """
    (first_name, first_value), (second_name, second_value) = first, second
    if first_value != second_value:
        raise MismatchError(
            f"{quantity} differ: {first_name} has {first_value}, {second_name} has {second_value}; {fix}"
        )
