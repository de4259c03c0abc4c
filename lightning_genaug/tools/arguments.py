"""Command-line values of the after-training tools: seed ranges, grids, devices, paths, one-line errors.

The tools' Python functions name a bad argument as Python spells it (:class:`ToolArgumentError`:
``class_idx``); the command line says the same with its option (``--class``).

This module imports no torch (``class_labels`` imports it when called): a command's ``--help`` and
its argument errors answer before the seconds that importing torch takes.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:  # pragma: no cover
    import torch

MAX_TRUNCATION_PSI = 2.0
"""``--truncation-psi`` is refused above this (1 is no truncation; > 1 extrapolates away from w_avg)."""

MAX_SEEDS = 100_000
"""A seed list (``--seeds``, ``--rows``, ...) names at most this many values: one run writes at most as
many images as the 50k of an FID evaluation, twice over. A larger list is split into several runs."""

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
"""The devices ``--device`` accepts (a GPU index may follow: ``cuda:1``)."""

_DEVICE = re.compile(rf"^({'|'.join(DEVICE_TYPES)})(:\d+)?$")


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
            if action.dest == error.argument:
                return error.naming(
                    action.option_strings[0]
                    if action.option_strings
                    else action.metavar or action.dest.upper()
                )
        return str(error)


def parse_int_list(text: str) -> list[int]:
    """Comma-separated integers and inclusive ranges, as the reference scripts read ``--seeds``.

    >>> parse_int_list("0-3,42")
    [0, 1, 2, 3, 42]

    Raises:
        argparse.ArgumentTypeError: a part is neither ``N`` nor ``A-B`` with ``0 <= A <= B``.
    """
    ranges: list[range] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not (first.isdigit() and (not dash or last.isdigit())) or (dash and int(last) < int(first)):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a list of non-negative integers and inclusive ranges A-B with A <= B "
                f"(the part {part!r} is not); write it like 0-9,42"
            )
        ranges.append(range(int(first), int(last if dash else first) + 1))
    count = sum(len(values) for values in ranges)
    if count > MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} names {count:,} values, more than the {MAX_SEEDS:,} one run takes; split it into "
            f"several runs (e.g. 0-{MAX_SEEDS - 1}, then {MAX_SEEDS}-{2 * MAX_SEEDS - 1})"
        )
    return [value for values in ranges for value in values]


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


def parse_device(text: str) -> str:
    """``--device``: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``xpu`` (whether it exists is checked later).

    >>> parse_device("cuda:1")
    'cuda:1'
    """
    if not _DEVICE.match(text.strip().lower()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device; use cpu, cuda (the first GPU), cuda:N, mps (Apple) or xpu (Intel)"
        )
    return text.strip().lower()


def check_device(device: str) -> None:
    """``device`` (``--device``) is one torch can use on this machine.

    Raises:
        ToolArgumentError: no GPU of that kind is visible, or the index is out of range; the message
            says which devices there are.
    """
    import torch

    kind, _, index = device.partition(":")
    if kind == "cpu":
        return
    backend = torch.backends.mps if kind == "mps" else getattr(torch, kind, None)
    count = 0
    if backend is not None and backend.is_available():
        count = 1 if kind == "mps" else backend.device_count()
    if count == 0:
        raise ToolArgumentError(
            "device", f"{{name}} {device}: torch sees no {kind} device on this machine; use --device cpu"
        )
    if index and int(index) >= count:
        raise ToolArgumentError(
            "device",
            f"{{name}} {device}: this machine has {count} {kind} device(s), {kind}:0 to {kind}:{count - 1}",
        )


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_dir(path: Path, argument: str) -> None:
    """``path`` is a folder or can become one, and files can be created there; nothing is written.

    Args:
        path: the folder (``--outdir``).
        argument: the ``dest`` of its option, for the message.

    Raises:
        ToolArgumentError: ``path`` is a file, lies below a file, or its first existing folder
            refuses a new file.
    """
    existing = _first_existing(path)
    if existing == path.absolute() and not existing.is_dir():
        raise ToolArgumentError(
            argument, f"{{name}} {str(path)!r} is a file, not a folder; choose a folder (created if missing)"
        )
    if not existing.is_dir():
        raise ToolArgumentError(
            argument, f"{{name}} {str(path)!r} lies below the file {str(existing)!r}; choose a folder"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ToolArgumentError(
            argument,
            f"{{name}} {str(path)!r}: cannot create files in {str(existing)!r} ({error.strerror}); "
            "choose a folder you can write to",
        ) from error


def check_output_file(path: Path, argument: str, overwrite: bool) -> None:
    """``path`` (``--out``) can be written: not a folder, its folder writable, not there unless ``overwrite``.

    Raises:
        ToolArgumentError: naming the problem and the fix.
    """
    if path.is_dir():
        raise ToolArgumentError(
            argument, f"{{name}} {str(path)!r} is a folder; give a file name, e.g. {str(path / 'G.onnx')!r}"
        )
    check_output_dir(path.parent, argument)
    check_not_there([path], argument, overwrite)


def check_not_there(paths: Iterable[Path], argument: str, overwrite: bool) -> None:
    """None of ``paths`` exists, unless ``overwrite`` (``--overwrite``) says to replace them.

    Raises:
        ToolArgumentError: naming the first file that exists and how many more do.
    """
    if overwrite:
        return
    existing = [path for path in paths if path.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more of the files it would write)" if len(existing) > 1 else ""
        raise ToolArgumentError(
            argument,
            f"{{name}}: {str(existing[0])!r} exists{more}; pass --overwrite to replace, or choose another "
            "place",
        )


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
    import torch

    check_class(class_idx, num_classes)
    return None if num_classes == 0 else torch.full((n,), class_idx, dtype=torch.long)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """The network file and the device: every tool takes them."""
    parser.add_argument(
        "network", metavar="NETWORK", help="a .ckpt written by training or a stylegan2-ada-pytorch .pkl"
    )
    parser.add_argument(
        "--device",
        type=parse_device,
        default="cpu",
        help="device to run on: cpu, cuda, cuda:N, mps or xpu (default: %(default)s)",
    )


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: replace files a tool would write that exist already (else it refuses to start)."""
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing output files (default: refuse to start)"
    )


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
    "DEVICE_TYPES",
    "MAX_SEEDS",
    "MAX_TRUNCATION_PSI",
    "ToolArgumentError",
    "ToolParser",
    "add_generation_arguments",
    "add_network_arguments",
    "add_overwrite_argument",
    "check_class",
    "check_device",
    "check_not_there",
    "check_output_dir",
    "check_output_file",
    "class_labels",
    "parse_device",
    "parse_grid",
    "parse_int_list",
    "parse_truncation_psi",
    "positive_int",
]
