"""The ``lightning-genaug`` command: LightningCLI with every module and datamodule class path allowed.

Examples:
    lightning-genaug fit --config examples/configs/ada.yaml
    lightning-genaug fit --print_config --model StyleGAN2ADA --data DigitsDataModule
    lightning-genaug test --config examples/configs/ada.yaml --ckpt_path runs/ada/.../last.ckpt
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from lightning.pytorch.cli import ArgsType, LightningCLI

# Imported so that their classes can be named by their short names (``--model StyleGAN2ADA``,
# ``class_path: AdaptiveAugmentation``); any other importable class path works too.
PROJECT_MODULES: Sequence[str] = (
    "lightning_genaug.data",
    "lightning_genaug.callbacks.ada",
    "lightning_genaug.callbacks.metrics",
    "lightning_genaug.callbacks.samples",
    "lightning_genaug.models.stylegan2",
    "lightning_genaug.models.sparse_transformer",
    "lightning_genaug.models.scalegan",
)


class GenAugCLI(LightningCLI):
    """LightningCLI in subclass mode for models and datamodules.

    GAN modules configure their own optimisers, so no ``--optimizer`` group is added; configs are
    saved next to the logs, overwriting a previous run's copy in the same folder.
    """

    def __init__(self, args: ArgsType = None, run: bool = True) -> None:
        for module in PROJECT_MODULES:
            importlib.import_module(module)
        super().__init__(
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "description": (
                    "Train and evaluate generative image models with non-leaking augmentation "
                    "(StyleGAN2-ADA, DistAug, Scale-GAN) on Lightning. Run `lightning-genaug fit --help` "
                    "for the options of a subcommand."
                ),
            },
            args=args,
            run=run,
        )


def main(args: ArgsType = None) -> None:
    """Entry point of the ``lightning-genaug`` console script."""
    GenAugCLI(args=args)


if __name__ == "__main__":
    main()
