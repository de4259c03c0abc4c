"""Command-line values of the after-training tools: seed ranges, grids, options, one-line errors.

The tools' Python functions name a bad argument as Python spells it (:class:`ToolArgumentError`:
``class_idx``); the command line says the same with its option (``--class``).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

import torch

MAX_TRUNCATION_PSI = 2.0
"""``--truncation-psi`` is refused above this (1 is no truncation; > 1 extrapolates away from w_avg)."""


class ToolArgumentError(ValueError):
    """A bad argument of an after-training tool's Python function, named the way its caller wrote it.

    ``str(error)`` names the Python argument (``class_idx``); :meth:`naming` puts the command line's
    option (``--class``) in its place.

    Args:
        argument: the Python argument (the ``dest`` of its command-line option).
        template: the message, with ``{name}`` where the argument's name goes.

    >>> error = ToolArgumentError("class_idx", "pass {name} with a class in [0, 9]")
    >>> str(error), error.naming("--class")
    ('pass `class_idx` with a class in [0, 9]', 'pass --class with a class in [0, 9]')
    """

    def __init__(self, argument: str, template: str) -> None:
        self.argument = argument
        self.template = template
        super().__init__(self.naming(f"`{argument}`"))

    def naming(self, name: str) -> str:
        """The message with ``name`` for the argument."""
        return self.template.format(name=name)


class ToolParser(argparse.ArgumentParser):
    """``argparse`` with one-line errors: ``lightning-genaug generate: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)

    def option_message(self, error: ToolArgumentError) -> str:
        """``error`` naming the option whose ``dest`` is its argument (``--class`` for ``class_idx``)."""
        for action in self._actions:
            if action.dest == error.argument and action.option_strings:
                return error.naming(action.option_strings[0])
        return str(error)


def parse_int_list(text: str) -> list[int]:
    """Comma-separated integers and inclusive ranges, as the reference scripts read ``--seeds``.

    >>> parse_int_list("0-3,42")
    [0, 1, 2, 3, 42]

    Raises:
        argparse.ArgumentTypeError: a part is neither ``N`` nor ``A-B`` with ``0 <= A <= B``.
    """
    values: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())) or (dash and int(last) < int(first)):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a list of non-negative integers and inclusive ranges A-B with A <= B "
                f"(the part {part!r} is not); write it like 0-9,42"
            )
        values.extend(range(int(first), int(last if dash else first) + 1))
    return values


def parse_grid(text: str) -> tuple[int, int]:
    """``"COLSxROWS"`` to ``(columns, rows)``.

    >>> parse_grid("3x2")
    (3, 2)
    """
    columns, _, rows = text.lower().partition("x")
    if not (columns.isdigit() and rows.isdigit() and int(columns) > 0 and int(rows) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a grid COLSxROWS of positive integers, e.g. 2x2")
    return int(columns), int(rows)


def parse_truncation_psi(text: str) -> float:
    """A float in ``[0, MAX_TRUNCATION_PSI]``.

    >>> parse_truncation_psi("0.7")
    0.7
    """
    try:
        psi = float(text)
    except ValueError:
        psi = float("nan")
    if not 0.0 <= psi <= MAX_TRUNCATION_PSI:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not in [0, {MAX_TRUNCATION_PSI:g}]: 1 means no truncation, 0.5-0.7 the usual "
            "trade of variety for quality"
        )
    return psi


def positive_int(text: str) -> int:
    """An integer > 0 (``--steps``, ``--frames-per-seed``, ``--batch-size``)."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def check_class(class_idx: int | None, num_classes: int) -> None:
    """``class_idx`` (``--class``) against the network: required and in range when conditional, else absent.

    Raises:
        ToolArgumentError: naming the valid classes (or saying to leave ``class_idx`` out).
    """
    if num_classes == 0:
        if class_idx is not None:
            raise ToolArgumentError("class_idx", "the network is unconditional: leave out {name}")
        return
    if class_idx is None or not 0 <= class_idx < num_classes:
        given = "none given" if class_idx is None else f"got {class_idx}"
        raise ToolArgumentError(
            "class_idx",
            "the network is class-conditional: pass {name} with a class in "
            f"[0, {num_classes - 1}] ({given})",
        )


def class_labels(class_idx: int | None, num_classes: int, n: int) -> torch.Tensor | None:
    """``n`` labels of class ``class_idx``; ``None`` for an unconditional network (see :func:`check_class`).

    >>> class_labels(2, 3, 2)
    tensor([2, 2])
    """
    check_class(class_idx, num_classes)
    return None if num_classes == 0 else torch.full((n,), class_idx, dtype=torch.long)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The network file and the device: every tool takes them."""
    parser.add_argument(
        "network", metavar="NETWORK", help="a .ckpt written by training or a stylegan2-ada-pytorch .pkl"
    )
    parser.add_argument("--device", default="cpu", help="device to run on, e.g. cuda (default: %(default)s)")


def add_truncation_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """``--truncation-psi`` (alias ``--trunc``), checked to lie in [0, 2]."""
    parser.add_argument(
        "--truncation-psi",
        "--trunc",
        dest="truncation_psi",
        type=parse_truncation_psi,
        default=1.0,
        metavar="PSI",
        help=help,
    )


def add_class_argument(parser: argparse.ArgumentParser) -> None:
    """``--class``: the label of a class-conditional network."""
    parser.add_argument(
        "--class",
        dest="class_idx",
        type=int,
        default=None,
        metavar="CLASS",
        help="class label (required for a class-conditional network)",
    )


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Truncation, class and noise: what every StyleGAN2 image tool takes."""
    add_truncation_argument(parser, "truncation psi in [0, 2] (default: %(default)s, no truncation)")
    add_class_argument(parser)
    parser.add_argument(
        "--noise-mode",
        choices=("const", "random", "none"),
        default="const",
        help="per-pixel noise of the synthesis layers (default: %(default)s)",
    )


__all__ = [
    "MAX_TRUNCATION_PSI",
    "ToolArgumentError",
    "ToolParser",
    "add_generation_arguments",
    "add_network_arguments",
    "check_class",
    "class_labels",
    "parse_grid",
    "parse_int_list",
    "parse_truncation_psi",
    "positive_int",
]
