"""The ``lightning-genaug`` command: LightningCLI with every module and datamodule class path allowed.

Every run writes to its own folder: without a ``trainer.logger`` in the config, the logger is a
``CSVLogger`` in ``trainer.default_root_dir`` with Lightning's versioning
(``<default_root_dir>/lightning_logs/version_N/``: ``metrics.csv``, ``config.yaml``, ``checkpoints/``,
``samples/``, ``predictions/``), so ``--trainer.default_root_dir`` moves all of a run's outputs and a
second run never overwrites the first. A ``WandbLogger`` left at its default ``save_dir`` writes
under ``trainer.default_root_dir`` as well.

Examples:
    lightning-genaug fit --config examples/configs/ada.yaml
    lightning-genaug fit --print_config --model StyleGAN2ADA --data DigitsDataModule
    lightning-genaug test --config examples/configs/ada.yaml \
        --ckpt_path runs/ada/lightning_logs/version_0/checkpoints/last.ckpt
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from jsonargparse import Namespace
from lightning.pytorch.cli import ArgsType, LightningCLI

# Imported so that their classes can be named by their short names (``--model StyleGAN2ADA``,
# ``class_path: AdaptiveAugmentation``); any other importable class path works too.
PROJECT_MODULES: Sequence[str] = (
    "lightning_genaug.augment",
    "lightning_genaug.callbacks",
    "lightning_genaug.data",
    "lightning_genaug.metrics.trained_extractor",
    "lightning_genaug.models",
    "lightning_genaug.regularizers",
)

DEFAULT_LOGGER = "lightning.pytorch.loggers.CSVLogger"
"""The logger of a config that names none: versioned folders under ``trainer.default_root_dir``."""


class GenAugCLI(LightningCLI):
    """LightningCLI in subclass mode for models and datamodules.

    GAN modules configure their own optimisers, so no ``--optimizer`` group is added. A config
    without ``trainer.logger`` gets a ``CSVLogger`` in ``trainer.default_root_dir`` (see the module
    docstring); the config is saved in the run's own versioned folder.
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

    def before_instantiate_classes(self) -> None:
        """Keep every output of a run under ``trainer.default_root_dir``.

        A config without a logger gets the versioned ``CSVLogger`` there; a ``WandbLogger`` left at
        its default ``save_dir`` (``"."``) writes there too.
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        save_dir = trainer.default_root_dir or "."
        if trainer.logger is None or trainer.logger is True:
            trainer.logger = Namespace(class_path=DEFAULT_LOGGER, init_args=Namespace(save_dir=save_dir))
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for logger in loggers:
            if (
                isinstance(logger, Namespace)
                and str(logger.get("class_path", "")).endswith("WandbLogger")
                and logger.get("init_args") is not None
                and logger.init_args.get("save_dir") in (None, ".")
            ):
                logger.init_args.save_dir = save_dir


def main(args: ArgsType = None) -> None:
    """Entry point of the ``lightning-genaug`` console script."""
    GenAugCLI(args=args)


if __name__ == "__main__":
    main()
