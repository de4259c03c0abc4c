"""The after-training subcommands of ``lightning-genaug``: one parser each, one loader for all.

``lightning-genaug generate|style-mix|interpolate|project|export NETWORK ...`` load ``NETWORK`` (a
``.ckpt`` or an official ``.pkl``) with :func:`~lightning_genaug.models.loading.load_network`, run the
tool and print one line saying what was written. Bad arguments end the command with one line
naming the problem and the fix (exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass
from types import ModuleType

from lightning_genaug.models.loading import load_network
from lightning_genaug.tools import export, generate, interpolate, project, style_mix
from lightning_genaug.tools.arguments import ToolArgumentError, ToolParser

PROG = "lightning-genaug"


@dataclass(frozen=True)
class Tool:
    """A subcommand: its one-line help, examples, implementing module, and the networks it accepts."""

    summary: str
    examples: str
    module: ModuleType
    stylegan_only: bool = True


TOOLS: dict[str, Tool] = {
    "generate": Tool(
        "Generate images from a trained network: one PNG per seed (and a grid).",
        "generate runs/ada/.../last.ckpt --seeds 0-35 --class 3 --grid --outdir out/generate\n"
        "generate network-snapshot.pkl --seeds 6600-6625 --truncation-psi 0.7 --outdir out\n"
        "generate distaug.ckpt --seeds 0-15 --transform rot90 --temperature 0.94 --outdir out",
        generate,
        stylegan_only=False,
    ),
    "style-mix": Tool(
        "Generate a style-mixing grid: row seeds with the styles of column seeds.",
        "style-mix network.pkl --rows 85,100,75 --cols 55,821,1789 --styles 0-3 --outdir out/mix",
        style_mix,
    ),
    "interpolate": Tool(
        "Write a latent-walk video (MP4, or GIF) through the images of some seeds.",
        "interpolate network.pkl --seeds 0-3 --frames-per-seed 30 --out walk.mp4\n"
        "interpolate network.pkl --seeds 0-11 --grid 2x2 --out walk.gif",
        interpolate,
    ),
    "project": Tool(
        "Project a real image into the latent space: find the w that reproduces it.",
        "project network.pkl --target photo.png --steps 1000 --outdir out/projection",
        project,
    ),
    "export": Tool(
        "Export the generator (mapping + synthesis, constant noise) as TorchScript or ONNX.",
        "export network.pkl --format onnx --out G.onnx --truncation-psi 0.7",
        export,
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
    tool.module.add_arguments(parser)
    return parser


def run_tool(name: str, argv: list[str]) -> str:
    """Parse ``argv``, load the network, run the tool; returns (and prints) its summary line.

    Raises:
        SystemExit: code 2 with one line on stderr for a bad argument, a missing or unfit file, or a
            missing optional dependency.
    """
    parser = tool_parser(name)
    options = parser.parse_args(argv)
    try:
        model = load_network(options.network, map_location=options.device)
        if TOOLS[name].stylegan_only and not hasattr(model, "G_ema"):
            raise ValueError(
                f"{name} needs a StyleGAN2 network, {options.network} holds a {type(model).__name__}"
            )
        message = TOOLS[name].module.run(options, model)
    except ToolArgumentError as error:
        parser.error(parser.option_message(error).rstrip("."))
    except (ValueError, FileNotFoundError, ModuleNotFoundError, pickle.UnpicklingError) as error:
        parser.error(str(error).rstrip("."))
    print(message)
    return message


__all__ = ["TOOLS", "Tool", "run_tool", "tool_parser"]
