"""The ``lightning-genaug`` command: LightningCLI with every module and datamodule class path allowed.

Every run writes to its own folder: without a ``trainer.logger`` in the config, the logger is a
``CSVLogger`` in ``trainer.default_root_dir`` with Lightning's versioning
(``<default_root_dir>/lightning_logs/version_N/``: ``metrics.csv``, ``config.yaml``, ``checkpoints/``,
``samples/``, ``predictions/``), so ``--trainer.default_root_dir`` moves all of a run's outputs and a
second run never overwrites the first. A ``WandbLogger`` left at its default ``save_dir`` writes
under ``trainer.default_root_dir`` as well, each run in ``<project>/<run id>/``. Whatever the logger, a
run's files go to one folder (:func:`lightning_genaug.runs.run_dir`) and its rows to one step axis,
training batches (:func:`lightning_genaug.runs.log_step`); ``fit --ckpt_path`` with a checkpoint of a
run folder continues that folder.

Examples:
    lightning-genaug fit --config examples/configs/ada.yaml
    lightning-genaug fit --print_config --model StyleGAN2ADA --data DigitsDataModule
    lightning-genaug test --config examples/configs/ada.yaml \
        --ckpt_path runs/ada/lightning_logs/version_0/checkpoints/last.ckpt
    lightning-genaug predict --config examples/configs/ada.yaml --ckpt_path network-snapshot.pkl
    lightning-genaug prepare ~/images ~/images-256 --resolution 256 --center-crop
    lightning-genaug generate runs/ada/lightning_logs/version_0/checkpoints/last.ckpt --seeds 0-9 --class 3 \
        --outdir out/generate

``prepare`` and the after-training tools (``generate``, ``style-mix``, ``interpolate``, ``project``,
``export``: :mod:`lightning_genaug.tools.commands`) are plain ``argparse`` commands run before LightningCLI;
they are listed beside its subcommands in ``lightning-genaug --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lightning_genaug.tools.commands import TOOLS, run_tool

if TYPE_CHECKING:  # pragma: no cover
    from lightning_genaug.fit_cli import GenAugCLI

_FIT_CLI_NAMES = ("GenAugCLI", "PROJECT_MODULES", "PREPARE_SUMMARY", "KIMG_PROGRESS_BAR", "DEFAULT_LOGGER")
"""Names of :mod:`lightning_genaug.fit_cli` also reachable here (imported when first used)."""


DESCRIPTION = (
    "Train and evaluate generative image models with non-leaking augmentation (StyleGAN2-ADA, DistAug, "
    "Scale-GAN) on Lightning. Run `lightning-genaug fit --help` for the options of a subcommand."
)
"""The first paragraph of ``lightning-genaug --help``."""

LIGHTNING_SUBCOMMANDS = {
    "fit": "Runs the full optimization routine.",
    "validate": "Perform one evaluation epoch over the validation set.",
    "test": "Perform one evaluation epoch over the test set. It's separated from fit to make sure you never "
    "run on your",
    "predict": "Run inference on your data. This will call the model forward function to compute "
    "predictions. Useful to",
}
"""LightningCLI's subcommands and the line it shows for each (the start of ``Trainer``'s docstrings)."""


def top_level_parser() -> Any:
    """The parser of ``lightning-genaug --help``, without Lightning (which imports torch: seconds).

    It lists the subcommands as :class:`~lightning_genaug.fit_cli.GenAugCLI`'s parser does; a test
    compares the two help texts.
    """
    from jsonargparse import ActionConfigFile, ArgumentParser

    from lightning_genaug.tools.parsers import PREPARE_SUMMARY

    parser = ArgumentParser(description=DESCRIPTION)
    parser.add_argument(
        "-c", "--config", action=ActionConfigFile, help="Path to a configuration file in json or yaml format."
    )
    subcommands = parser.add_subcommands()
    summaries = {**LIGHTNING_SUBCOMMANDS, "prepare": PREPARE_SUMMARY}
    summaries.update((name, tool.summary) for name, tool in TOOLS.items())
    for name, summary in summaries.items():
        subcommands.add_subcommand(name, ArgumentParser(description=summary), help=summary)
    return parser


def __getattr__(name: str) -> Any:
    if name in _FIT_CLI_NAMES:
        from lightning_genaug import fit_cli

        return getattr(fit_cli, name)
    raise AttributeError(f"module 'lightning_genaug.cli' has no attribute {name!r}")


def main(args: Sequence[str] | dict[str, Any] | None = None) -> None:
    """Entry point of the ``lightning-genaug`` console script; ``prepare`` and the tools skip LightningCLI.

    Their ``--help`` and argument errors answer before torch is imported, and so does
    ``lightning-genaug --help``; ``fit`` and the other LightningCLI subcommands import
    :mod:`lightning_genaug.fit_cli`.
    """
    command_line = sys.argv[1:] if args is None else args
    name = command_line[0] if isinstance(command_line, (list, tuple)) and command_line else None
    if name in ("-h", "--help") and len(command_line) == 1:
        top_level_parser().parse_args(["--help"])  # prints the help and exits, before torch is imported
    if name == "prepare":
        from lightning_genaug.tools.parsers import prepare_parser

        options = prepare_parser().parse_args(list(command_line[1:]))  # before torch is imported
        from lightning_genaug.data.streaming import prepare_command

        prepare_command(list(command_line[1:]), options)
        return
    if name in TOOLS:
        run_tool(name, list(command_line[1:]))
        return
    from lightning_genaug.fit_cli import GenAugCLI

    GenAugCLI(args=args)


__all__ = ["GenAugCLI", "main"]


if __name__ == "__main__":
    main()
