"""The after-training subcommands of ``lightning-genaug``: one parser each, one loader for all.

``lightning-genaug generate|style-mix|interpolate|project|export NETWORK ...`` check their arguments and
output paths, load ``NETWORK`` (a ``.ckpt`` or an official ``.pkl``) with
:func:`~lightning_genaug.models.load_network`, run the tool and print one line saying what was
written. A bad argument, path or network file ends the command with one line naming the problem and
the fix (exit code 2), never a traceback, and before any work: the options and paths are checked
before torch is imported (:mod:`~lightning_genaug.tools.parsers`), the device and the network's
weights before the tool runs. A file the tool would write that exists already is refused unless
``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lightning_genaug.tools import parsers
from lightning_genaug.tools.arguments import ToolArgumentError, ToolParser, check_device

if TYPE_CHECKING:  # pragma: no cover
    import torch

PROG = "lightning-genaug"


@dataclass(frozen=True)
class Tool:
    """A subcommand: its one-line help, examples, options, path checks, module, and the networks it accepts.

    Attributes:
        summary: the one line of ``lightning-genaug --help``.
        examples: command lines, one a line, without ``lightning-genaug``.
        add_arguments: adds the tool's options to its parser (imports no torch).
        check_paths: checks the parsed paths before the network is loaded (imports no torch).
        module_name: the module whose ``run(options, model)`` does the work, imported when it runs.
        stylegan_only: the tool needs a StyleGAN2 network.
    """

    summary: str
    examples: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    check_paths: Callable[[argparse.Namespace], None]
    module_name: str
    stylegan_only: bool = True

    @property
    def module(self) -> ModuleType:
        """The implementing module (importing it imports torch)."""
        return importlib.import_module(self.module_name)


TOOLS: dict[str, Tool] = {
    "generate": Tool(
        "Generate images from a trained network: one PNG per seed (and a grid).",
        "generate runs/ada/.../last.ckpt --seeds 0-35 --class 3 --grid --outdir out/generate\n"
        "generate network-snapshot.pkl --seeds 6600-6625 --truncation-psi 0.7 --outdir out\n"
        "generate distaug.ckpt --seeds 0-15 --transform rot90 --temperature 0.94 --outdir out",
        parsers.add_generate_arguments,
        parsers.check_generate_paths,
        "lightning_genaug.tools.generate",
        stylegan_only=False,
    ),
    "style-mix": Tool(
        "Generate a style-mixing grid: row seeds with the styles of column seeds.",
        "style-mix network.pkl --rows 85,100,75 --cols 55,821,1789 --styles 0-3 --outdir out/mix",
        parsers.add_style_mix_arguments,
        parsers.check_style_mix_paths,
        "lightning_genaug.tools.style_mix",
    ),
    "interpolate": Tool(
        "Write a latent-walk video (MP4, or GIF) through the images of some seeds.",
        "interpolate network.pkl --seeds 0-3 --frames-per-seed 30 --out walk.mp4\n"
        "interpolate network.pkl --seeds 0-11 --grid 2x2 --out walk.gif",
        parsers.add_interpolate_arguments,
        parsers.check_interpolate_paths,
        "lightning_genaug.tools.interpolate",
    ),
    "project": Tool(
        "Project a real image into the latent space: find the w that reproduces it.",
        "project network.pkl --target photo.png --steps 1000 --outdir out/projection",
        parsers.add_project_arguments,
        parsers.check_project_paths,
        "lightning_genaug.tools.project",
    ),
    "export": Tool(
        "Export the generator (mapping + synthesis, constant noise) as TorchScript or ONNX.",
        "export network.pkl --format onnx --out G.onnx --truncation-psi 0.7",
        parsers.add_export_arguments,
        parsers.check_export_paths,
        "lightning_genaug.tools.export",
    ),
}
"""The after-training subcommands, by name."""


def tool_parser(name: str) -> ToolParser:
    """The argument parser of subcommand ``name`` (its ``--help`` lists every option)."""
    tool = TOOLS[name]
    examples = "\n".join(f"  {PROG} {line}" for line in tool.examples.splitlines())
    parser = ToolParser(
        prog=f"{PROG} {name}",
        description=tool.summary,
        epilog=f"Examples:\n{examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tool.add_arguments(parser)
    return parser


def run_tool(name: str, argv: list[str]) -> str:
    """Parse ``argv``, check paths and device, load the network, run the tool; returns (and prints) its line.

    Raises:
        SystemExit: code 2 with one line on stderr for a bad argument, an output that cannot or must
            not be written, a missing or unfit network file, or a missing optional dependency.
    """
    parser = tool_parser(name)
    options = parser.parse_args(argv)
    tool = TOOLS[name]
    try:
        tool.check_paths(options)
        check_device(options.device)
        model = load_tool_network(options.network, options.device)
        if tool.stylegan_only and not hasattr(model, "G_ema"):
            raise ValueError(
                f"{name} needs a StyleGAN2 network, {options.network} holds a {type(model).__name__}"
            )
        check_finite_weights(model, options.network)
        message = tool.module.run(options, model)
    except ToolArgumentError as error:
        parser.error(parser.option_message(error).rstrip("."))
    except (ValueError, OSError, ModuleNotFoundError, pickle.UnpicklingError) as error:
        parser.error(str(error).rstrip("."))
    print(message)
    return message


def load_tool_network(path: str, device: str) -> Any:
    """:func:`~lightning_genaug.models.load_network`, its errors made one line naming the file.

    Raises:
        ValueError: the file names a class that cannot be imported, or its weights do not fit the
            network its hyper-parameters describe (missing, unexpected or mis-shaped tensors).
    """
    from lightning_genaug.models.any_network import load_network

    try:
        return load_network(path, map_location=device)
    except (ImportError, AttributeError) as error:  # a class path of another version of the package
        raise ValueError(
            f"{path!r} names a module class this version of lightning-genaug does not have ({error}); "
            "load it with the version that wrote it"
        ) from error
    except RuntimeError as error:
        summary = state_dict_mismatch(str(error))
        if summary is None:
            raise
        raise ValueError(
            f"{path!r} does not fit the network its hyper-parameters describe: {summary}; pass the "
            "checkpoint training wrote, unmodified, with its hyper_parameters"
        ) from error


def state_dict_mismatch(message: str) -> str | None:
    """A short account of torch's ``load_state_dict`` error ``message``; ``None`` for another error.

    >>> state_dict_mismatch('Error(s) in loading state_dict:\\n\\tMissing key(s) in state_dict: "a", "b".')
    '2 tensors missing (first: a)'
    """
    if not message.startswith("Error(s) in loading state_dict"):
        return None
    parts = []
    for label, pattern in (
        ("missing", r"Missing key\(s\) in state_dict: (.*?)\.\s*$"),
        ("unexpected", r"Unexpected key\(s\) in state_dict: (.*?)\.\s*$"),
    ):
        found = re.search(pattern, message, re.MULTILINE)
        if found:
            keys = re.findall(r'"([^"]+)"', found.group(1))
            parts.append(f"{len(keys)} tensors {label} (first: {keys[0]})" if keys else f"tensors {label}")
    sizes = re.findall(
        r"size mismatch for ([^:]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from checkpoint, "
        r"the shape in current model is torch\.Size\((\[[^\]]*\])\)",
        message,
    )
    if sizes:
        key, found, wanted = sizes[0]
        parts.append(f"{len(sizes)} of the wrong shape (first: {key} is {found}, the network's is {wanted})")
    return "; ".join(parts) or "the tensors do not match"


def check_finite_weights(model: torch.nn.Module, network: str) -> None:
    """Refuse a network whose generating weights hold NaN or infinity (its images would be black).

    The EMA generator's parameters and buffers for a StyleGAN2 network, every parameter otherwise.

    Raises:
        ValueError: naming the first broken tensor and how many there are.
    """
    import torch

    tensors = model.G_ema.state_dict() if hasattr(model, "G_ema") else dict(model.named_parameters())
    prefix = "G_ema." if hasattr(model, "G_ema") else ""
    broken = [
        key
        for key, tensor in tensors.items()
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if broken:
        raise ValueError(
            f"{network} holds NaN or infinite weights ({prefix}{broken[0]} and {len(broken) - 1} more "
            "tensors), so every image would be blank; training diverged: use an earlier checkpoint"
        )


__all__ = [
    "TOOLS",
    "Tool",
    "check_finite_weights",
    "load_tool_network",
    "run_tool",
    "state_dict_mismatch",
    "tool_parser",
]
