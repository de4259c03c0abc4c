"""LightningCLI for ``lightning-genaug fit|validate|test|predict``: :class:`GenAugCLI`.

Imported by :func:`lightning_genaug.cli.main` only for those subcommands: ``prepare`` and the
after-training tools start without jsonargparse, Lightning or torch. A bad value of a config or of the
command line ends the run with one line, ``error: --option: what is wrong; the fix (see ... --help)``,
exit code 2 (:class:`OneLineArgumentParser`); ``JSONARGPARSE_DEBUG=1`` shows the full story instead.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, NoReturn

import lightning.pytorch as pl
from jsonargparse import ArgumentParser, Namespace
from jsonargparse._common import debug_mode_active
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from lightning_genaug._checks import MismatchError
from lightning_genaug.cli import DESCRIPTION
from lightning_genaug.models.stylegan2.official import is_network_pickle
from lightning_genaug.runs import (
    ContinuingCSVLogger,
    link_wandb_files,
    logger_save_dir,
    run_dir,
    version_of_run_folder,
    wandb_config,
)
from lightning_genaug.tools.commands import TOOLS
from lightning_genaug.tools.parsers import PREPARE_SUMMARY

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

KIMG_PROGRESS_BAR = "lightning_genaug.callbacks.KimgProgressBar"
"""The progress bar of ``fit`` unless the config names one or turns the bar off."""

DEFAULT_LOGGER = "lightning_genaug.runs.ContinuingCSVLogger"
"""The logger of a config that names none: versioned folders under ``trainer.default_root_dir``.

Lightning's ``CSVLogger`` named in a config is replaced by this subclass too: a resumed run that continues
its version folder appends to its ``metrics.csv`` instead of deleting it.
"""

_LIGHTNING_CSV_LOGGERS = (
    "CSVLogger",
    "lightning.pytorch.loggers.CSVLogger",
    "lightning.pytorch.loggers.csv_logs.CSVLogger",
)

log = logging.getLogger(__name__)

# Messages of the libraries underneath that no option of a run can change, silenced for the run only:
# Lightning's advertisement for its LitLogger (an INFO record at every fit), and the deprecation torch
# (2.14 here) raises from Lightning's own pytree code (`LeafSpec`) at every dataloader it combines.
_LIBRARY_NOISE = {
    "lightning_info": ("💡 Tip: For seamless cloud logging",),
    "warnings": (r"`isinstance\(treespec, LeafSpec\)` is deprecated",),
}
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropLibraryTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(tip) for tip in _LIBRARY_NOISE["lightning_info"])


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Within the block, the messages of :data:`_LIBRARY_NOISE` are not shown; everything else is."""
    tips = _DropLibraryTips()
    loggers = [logging.getLogger(name) for name in _RANK_ZERO_LOGGERS]
    with warnings.catch_warnings():
        for pattern in _LIBRARY_NOISE["warnings"]:
            warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
        for logger in loggers:
            logger.addFilter(tips)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(tips)


class OneLineArgumentParser(LightningArgumentParser):
    """jsonargparse's parser with one-line errors: ``error: --option: problem; fix (see `... --help`)``.

    jsonargparse prints the usage (50 lines for ``fit``) and the story of every union member it tried;
    this parser prints one line: an unknown key with the closest known one, a value of the wrong
    type with its full option. ``JSONARGPARSE_DEBUG=1`` keeps jsonargparse's behaviour.
    """

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_mode_active():
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        # A mismatch found in `setup` already names the option to change; --help would not say more.
        hint = "" if isinstance(ex, MismatchError) else f" (see `{prog} --help`)"
        sys.stderr.write(f"error: {one_line_error(message, parser)}{hint}\n")
        raise SystemExit(2)


def _closest(name: str, known: Sequence[str]) -> str:
    """``; did you mean `x`?`` for the known name closest to ``name``, or nothing."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else ""


def _init_arguments(class_path: str) -> list[str]:
    """The ``__init__`` arguments of the class at ``class_path`` (none if it cannot be imported)."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        return []
    arguments: list[str] = []
    for klass in inspect.getmro(cls):
        if "__init__" in vars(klass):
            parameters = inspect.signature(klass.__init__).parameters.values()
            arguments += [p.name for p in parameters if p.name != "self" and p.kind is not p.VAR_KEYWORD]
    return arguments


def one_line_error(message: str, parser: ArgumentParser) -> str:
    """jsonargparse's (multi-line) error ``message`` as one line naming the option and the fix.

    Three shapes are recognised: an unknown option of the subcommand (``trainer.max_epoch``), an
    unknown argument of a configured class (``batch_sise`` of ``DigitsDataModule``), and a value of the
    wrong type (``p: nan``); any other message has its lines joined.

    >>> one_line_error("Subcommand 'fit' does not accept option 'trainer.max_epoch'", ArgumentParser())
    'unknown key `trainer.max_epoch`'
    """
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    unknown = re.search(r"does not accept option '([^']+)'", message) or re.search(
        r"Unrecognized arguments: --?(\S+)", message
    )
    if unknown:
        key = unknown.group(1)
        known = [action.dest for action in parser._actions if action.dest and action.dest != "help"]
        return f"unknown key `{key}`{_closest(key, known)}"
    rejected = re.search(
        r"Problem with given class_path '([^']+)':\s*Option '([^']+)' is not accepted", message
    )
    if rejected:
        class_path, key = rejected.groups()
        top = re.match(r'Parser key "([^"]+)"', lines[0])
        option = f"--{top.group(1)}: " if top else ""
        class_name = class_path.rsplit(".", 1)[-1]
        return f"{option}unknown key `{key}` of {class_name}{_closest(key, _init_arguments(class_path))}"
    wrong_type = re.search(r"Expected a <class '(\w+)'>\. Got value: (.*)", message)
    if wrong_type:
        expected, value = wrong_type.groups()
        keys = re.findall(r'Parser key "([^"]+)"', message)
        nested = re.findall(r"NestedArg\(key='([^']+)'", message)
        option = ".".join(keys[:1] + nested[-1:]) if nested else ".".join(keys)
        note = " (not a number)" if value.strip().lower() in ("nan", "inf", "-inf", "+inf") else ""
        return f"--{option}: expected a {expected}, got {value.strip()!r}{note}"
    return "; ".join(line for line in lines if not line.startswith(("Given value", "Subtypes:", "Errors:")))


class RunConfig(SaveConfigCallback):
    """LightningCLI's ``SaveConfigCallback``, writing ``config.yaml`` in the run's own folder.

    The folder is :func:`~lightning_genaug.runs.run_dir` (``<save_dir>/<project>/<run id>`` for a
    ``WandbLogger``, where Lightning's would write to the ``save_dir`` every run of a project shares).
    Also, on rank 0: every ``WandbLogger`` gets the whole parsed config as its run config (model, data,
    trainer with each callback under its class name: :func:`~lightning_genaug.runs.wandb_config`) and a
    link to W&B's files of the run in ``<run folder>/wandb/``; a ``fit --ckpt_path`` says in one line
    whether the run continues the checkpoint's folder or where its logs go instead.
    """

    _run_folder: str | None = None  # the run's folder, set in ``setup`` (read by ``save_config``)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        folder = self._run_folder = run_dir(trainer)  # a collective: every rank takes part
        if self.save_to_log_dir:
            config_path = os.path.join(folder, self.config_filename)
            fs = get_filesystem(folder)
            if not self.overwrite:
                exists = fs.isfile(config_path) if trainer.is_global_zero else False
                if trainer.strategy.broadcast(exists):
                    raise RuntimeError(
                        f"{config_path} exists: another run wrote it. Give this run its own folder "
                        '(another logger version), or `save_config_kwargs={"overwrite": True}`.'
                    )
            if trainer.is_global_zero:
                fs.makedirs(folder, exist_ok=True)
                options = {"skip_none": False, "overwrite": self.overwrite, "multifile": self.multifile}
                self.parser.save(self.config, config_path, **options)
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
            if stage == "fit":
                _say_where_a_resumed_run_logs(self.config.get("ckpt_path"), folder)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The whole config to every ``WandbLogger``'s run config; W&B's files linked into the run folder."""
        loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not loggers:
            return
        config = wandb_config(json.loads(self.parser.dump(self.config, format="json", skip_none=False)))
        for logger in loggers:
            logger.log_hyperparams(config)
            if self._run_folder is not None and "://" not in self._run_folder:
                link_wandb_files(logger, self._run_folder)


def _say_where_a_resumed_run_logs(ckpt_path: Any, folder: str) -> None:
    """One line for ``fit --ckpt_path``: the run continues the checkpoint's folder, or logs in ``folder``."""
    if not ckpt_path or not os.path.isfile(os.fspath(ckpt_path)):
        return
    ckpt = os.path.abspath(os.fspath(ckpt_path))
    # Lightning's rank-zero logger: shown by the command, as Lightning's own "Restoring states" line is.
    if "://" not in folder and ckpt.startswith(os.path.abspath(folder) + os.sep):
        rank_zero_info(f"Resuming from {ckpt_path}: this run continues its logs in {folder}.")
    else:
        rank_zero_info(
            f"Resuming from {ckpt_path}, which is not in a run folder of this logger: this run's logs, "
            f"config, samples and checkpoints go to {folder}."
        )


class GenAugCLI(LightningCLI):
    """LightningCLI in subclass mode for models and datamodules.

    GAN modules configure their own optimisers, so no ``--optimizer`` group is added. A config
    without ``trainer.logger`` gets a ``CSVLogger`` in ``trainer.default_root_dir`` (see the module
    docstring); the config is saved in the run's own folder (:class:`RunConfig`), and ``fit --ckpt_path``
    with a checkpoint of a run folder continues that folder (:meth:`instantiate_classes`).
    """

    def __init__(self, args: ArgsType = None, run: bool = True) -> None:
        for module in PROJECT_MODULES:
            importlib.import_module(module)
        with _quiet_libraries():
            super().__init__(
                parser_class=OneLineArgumentParser,
                subclass_mode_model=True,
                subclass_mode_data=True,
                auto_configure_optimizers=False,
                save_config_callback=RunConfig,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"description": DESCRIPTION},
                args=args,
                run=run,
            )

    def _run_subcommand(self, subcommand: str) -> None:
        """Run it; data, model and metrics that disagree (found in ``setup``) stop with one line, exit code 2.

        ``JSONARGPARSE_DEBUG=1`` raises the :class:`~lightning_genaug._checks.MismatchError` with its
        traceback instead, as for a bad value.
        """
        try:
            super()._run_subcommand(subcommand)
        except MismatchError as error:
            self._error(str(error), ex=error)

    def _error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """End the run with one line, as the parser of the subcommand does (its --help is named)."""
        subcommands = getattr(self.parser, "_subcommands_action", None)
        parsers = subcommands._name_parser_map if subcommands is not None else {}
        parsers.get(self.subcommand, self.parser).error(message, ex=ex)
        raise AssertionError("unreachable: error() exits")  # pragma: no cover

    def before_fit(self) -> None:
        """A datamodule without validation data (``val_fraction: 0``, no ``val_dir``) turns validation off.

        Lightning would otherwise ask for the empty loader and warn that its length is zero at every fit.
        An explicit ``trainer.limit_val_batches`` is left as it is.
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        has_validation = getattr(self.datamodule, "has_validation_data", None)
        if has_validation is False and config.trainer.get("limit_val_batches") is None:
            log.info("%s has no validation data: validation is off.", type(self.datamodule).__name__)
            self.trainer.limit_val_batches = 0

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's subcommands, then ``prepare`` and the after-training tools (for ``--help`` only).

        :func:`main` runs those before LightningCLI parses anything; here they only get their line under
        "Available subcommands".
        """
        super()._add_subcommands(parser, **kwargs)
        summaries = {"prepare": PREPARE_SUMMARY, **{name: tool.summary for name, tool in TOOLS.items()}}
        for name, summary in summaries.items():
            parser._subcommands_action.add_subcommand(name, ArgumentParser(description=summary), help=summary)

    def before_instantiate_classes(self) -> None:
        """Keep every output of a run under ``trainer.default_root_dir``; show the run's pace when fitting.

        A config without a logger gets the versioned ``CSVLogger`` there (Lightning's ``CSVLogger`` named
        in a config becomes :data:`DEFAULT_LOGGER`, which appends to a resumed run's ``metrics.csv``); a
        ``WandbLogger`` left at its default ``save_dir`` (``"."``) writes there too. ``fit`` with the
        progress bar on and no progress bar of the config's own gets
        :class:`~lightning_genaug.callbacks.KimgProgressBar` (``s/kimg`` and the run's time left); so does a
        ``run=False`` CLI (a script building a Trainer).
        """
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        if self.subcommand in (None, "fit") and trainer.get("enable_progress_bar") is not False:
            callbacks = trainer.get("callbacks") or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            if not any("ProgressBar" in str(getattr(callback, "class_path", "")) for callback in callbacks):
                trainer.callbacks = [*callbacks, Namespace(class_path=KIMG_PROGRESS_BAR)]
        save_dir = trainer.default_root_dir or "."
        if trainer.logger is None or trainer.logger is True:
            trainer.logger = Namespace(class_path=DEFAULT_LOGGER, init_args=Namespace(save_dir=save_dir))
        loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
        for logger in loggers:
            if isinstance(logger, Namespace) and str(logger.get("class_path", "")) in _LIGHTNING_CSV_LOGGERS:
                logger.class_path = DEFAULT_LOGGER
            if (
                isinstance(logger, Namespace)
                and str(logger.get("class_path", "")).endswith("WandbLogger")
                and logger.get("init_args") is not None
                and logger.init_args.get("save_dir") in (None, ".")
            ):
                logger.init_args.save_dir = save_dir

    def instantiate_classes(self) -> None:
        """Build the configured classes; a bad value stops with one line, like jsonargparse's own errors.

        A ``ValueError`` or ``TypeError`` raised by a class while it is built (an unknown preset, a
        negative batch size, ``target: 1.5``) is printed as ``error: --option: message`` with the
        usage line, exit code 2. ``JSONARGPARSE_DEBUG=1`` raises it with its full traceback instead.
        ``fit --ckpt_path`` with a checkpoint of a run folder continues that folder's logger version
        (:func:`_continue_run_folder`).
        """
        try:
            super().instantiate_classes()
        except (ValueError, TypeError) as error:
            cause = _innermost(error)
            config = self.config[self.subcommand] if self.subcommand else self.config
            option = _option_of(config, _constructed_class(cause.__traceback__), str(cause))
            self._error(f"{option}: {cause}" if option else str(cause), ex=error)
        for logger in self.trainer.loggers:
            _leave_wandb_anonymous_unset(logger)
        if self.subcommand == "fit":
            _continue_run_folder(self.trainer, self.config.fit.get("ckpt_path"))

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path net.pkl``: an official network pickle becomes the model's ``init_from``.

        Lightning reads ``ckpt_path`` with ``torch.load``, which cannot (and must not) read such a
        pickle; the module reads it without running its code in ``setup`` instead.
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if is_network_pickle(ckpt_path):
            init_args = self.config[subcommand].model.init_args
            if "init_from" not in init_args:
                raise ValueError(
                    f"`--ckpt_path {ckpt_path}` is a network pickle, which only a model with an `init_from` "
                    "argument (StyleGAN2ADA) can read."
                )
            init_args.init_from, self.config[subcommand].ckpt_path = str(ckpt_path), None
            ckpt_path = None
        given = self.config[subcommand].get("model") if subcommand else None
        if not ckpt_path or not os.path.isfile(os.fspath(ckpt_path)) or not isinstance(given, Namespace):
            super()._parse_ckpt_path()
            return
        parser = self._subcommand_parsers[subcommand]
        given = given.clone()
        defaults = parser.parse_object({"model": {"class_path": given.class_path}}).model
        super()._parse_ckpt_path()  # the checkpoint's hyperparameters replace the given ones
        resumed = self.config[subcommand].model
        try:
            taken = resume_arguments(given, defaults, resumed, ckpt_path)
        except MismatchError as error:
            parser.error(str(error), ex=error)
        for key, (value, saved) in taken.items():
            _set_at(resumed.init_args, key, value)
            rank_zero_info(f"Resuming with --model.{key} {value!r} (the checkpoint has {_shown(saved)}).")


_ABSENT = object()
"""A key a config does not have (``None`` is a value)."""


def resume_arguments(given: Namespace, defaults: Namespace, resumed: Namespace, ckpt_path: Any = "") -> dict:
    """What a resumed run takes from its command line and config rather than from its checkpoint.

    LightningCLI replaces the model's init arguments by the checkpoint's hyperparameters. A value the
    command line or the config gives (one other than the class's default) that differs from the
    checkpoint's is either one of the class's ``run_arguments`` (how long and how the run goes:
    ``max_kimg``), which the resumed run takes, or part of the model the checkpoint saved, which a
    resumed run cannot change: refused, as Lightning's ``load_state_dict`` would refuse another shape.

    Args:
        given: the parsed ``model`` (``class_path``, ``init_args``) before the checkpoint's were read.
        defaults: the same class with every argument at its default.
        resumed: the ``model`` LightningCLI built from the checkpoint's hyperparameters.
        ckpt_path: the checkpoint, for the message.

    Returns:
        ``{dotted key under init_args: (given value, checkpoint's value)}`` of the run arguments to take.

    Raises:
        MismatchError: one line naming every other key given a value the checkpoint does not have.

    Example:
        >>> def model(**init_args):
        ...     return Namespace(class_path="lightning_genaug.StyleGAN2ADA", init_args=Namespace(**init_args))
        >>> resume_arguments(model(max_kimg=200), model(max_kimg=None), model(max_kimg=100))
        {'max_kimg': (200, 100)}
        >>> resume_arguments(model(freeze_d=2), model(freeze_d=0), model(freeze_d=0), "last.ckpt")
        Traceback (most recent call last):
        ...
        lightning_genaug._checks.MismatchError: --model.freeze_d: 2 given, the checkpoint has 0; ...
    """
    model_class = _import_class(str(given.class_path))
    if str(given.class_path) != str(resumed.class_path) and model_class is not _import_class(
        str(resumed.class_path)
    ):
        raise MismatchError(
            f"--model: the checkpoint {ckpt_path} holds a {str(resumed.class_path).rsplit('.', 1)[-1]}, "
            f"not a {str(given.class_path).rsplit('.', 1)[-1]}; name its class, or start a new run."
        )
    run_arguments = getattr(model_class, "run_arguments", ())
    default_leaves = _leaves(defaults.get("init_args"))
    taken, refused = {}, []
    for key, value in _leaves(given.get("init_args")).items():
        saved = _value_at(resumed.get("init_args"), key)
        if default_leaves.get(key, _ABSENT) == value or saved == value:
            continue  # left at its default, or what the checkpoint has
        if any(key == name or key.startswith(f"{name}.") for name in run_arguments):
            taken[key] = (value, saved)
        else:
            refused.append(f"--model.{key}: {value!r} given, the checkpoint has {_shown(saved)}")
    if refused:
        changeable = ", ".join(run_arguments) or "none of its arguments"
        fix = "give the checkpoint's value"
        if "init_from" in default_leaves:
            fix += (
                f", or start a new run from its weights: `--model.init_from {ckpt_path}` without --ckpt_path"
            )
        raise MismatchError(
            f"{'; '.join(refused)}; a resumed run ({ckpt_path}) keeps the model its checkpoint saved "
            f"(only {changeable} may change): {fix}."
        )
    return taken


def _import_class(class_path: str) -> Any:
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a parsed config by its dotted key, Namespaces and dicts followed (not ``__path__``)."""
    if isinstance(value, Namespace):
        items = [(key, child) for key, child in vars(value).items() if not key.startswith("__")]
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        return {prefix: value} if prefix else {}
    if not items:
        return {prefix: value} if prefix else {}
    leaves: dict[str, Any] = {}
    for key, child in items:
        leaves.update(_leaves(child, f"{prefix}.{key}" if prefix else key))
    return leaves


def _value_at(value: Any, key: str) -> Any:
    """The value at a dotted key of a parsed config, or :data:`_ABSENT`."""
    for part in key.split("."):
        if isinstance(value, Namespace):
            value = vars(value).get(part, _ABSENT)
        elif isinstance(value, dict):
            value = value.get(part, _ABSENT)
        else:
            return _ABSENT
    return value


def _set_at(config: Namespace, key: str, value: Any) -> None:
    """Set a dotted key of a parsed config, making a dict of a ``None`` on the way (``config_overrides``)."""
    *parents, last = key.split(".")
    for part in parents:
        child = getattr(config, part, None) if isinstance(config, Namespace) else config.get(part)
        if not isinstance(child, Namespace | dict):
            child = {}
            if isinstance(config, Namespace):
                setattr(config, part, child)
            else:
                config[part] = child
        config = child
    if isinstance(config, Namespace):
        setattr(config, last, value)
    else:
        config[last] = value


def _shown(value: Any) -> str:
    return "none" if value is _ABSENT else repr(value)


def _continue_run_folder(trainer: pl.Trainer, ckpt_path: Any) -> str | None:
    """A checkpoint in ``<save_dir>/<name>/<version>/checkpoints/``: the first logger continues ``<version>``.

    Only a ``CSVLogger``, ``TensorBoardLogger`` or ``WandbLogger`` given no version (or W&B id) of its own,
    before it has started; a W&B run then resumes the run of that id. Returns the version continued, if any.
    """
    if not trainer.loggers or not isinstance(ckpt_path, str | os.PathLike):
        return None
    logger = trainer.loggers[0]
    save_dir = logger_save_dir(logger, trainer.default_root_dir)
    version = version_of_run_folder(ckpt_path, save_dir, str(logger.name or ""))
    if version is None:
        return None
    if isinstance(logger, CSVLogger | TensorBoardLogger) and logger._version is None:
        logger._version = version
        if isinstance(logger, ContinuingCSVLogger):
            logger.replace_resumed_steps = True
    elif isinstance(logger, WandbLogger) and logger._id is None and logger._experiment is None:
        logger._id = logger._wandb_init["id"] = version
    else:
        return None
    return version


def _leave_wandb_anonymous_unset(logger: Any) -> None:
    """Drop the ``anonymous=None`` that Lightning's ``WandbLogger`` passes to ``wandb.init``.

    Recent wandb (0.31 here) answers it with "The anonymous setting has no effect" at every run;
    passing nothing starts the same run without the warning.
    """
    init_kwargs = getattr(logger, "_wandb_init", None)
    if isinstance(init_kwargs, dict) and "anonymous" in init_kwargs and init_kwargs["anonymous"] is None:
        del init_kwargs["anonymous"]


def _innermost(error: BaseException) -> BaseException:
    """The first error of a chain (jsonargparse wraps a constructor's error in its own)."""
    while isinstance(error.__cause__, ValueError | TypeError):
        error = error.__cause__
    return error


def _constructed_class(traceback: TracebackType | None) -> str | None:
    """The name of the class whose ``__init__`` raised, from the outermost ``__init__`` frame."""
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
            return type(frame.f_locals["self"]).__name__
        traceback = traceback.tb_next
    return None


def _option_of(config: Namespace, class_name: str | None, message: str) -> str | None:
    """The command-line option of the argument a message names (``--model.augment.preset``).

    The first configured ``class_path`` that names ``class_name`` gives the option's prefix; the first
    backquoted name in the message, when it is one of that class's arguments, its last part.
    """
    named = re.search(r"`(\w+)`", message)
    for prefix, entry in _class_entries(config, ""):
        if class_name is not None and str(entry.class_path).rsplit(".", 1)[-1] == class_name:
            init_args = entry.get("init_args") or Namespace()
            argument = named.group(1) if named and named.group(1) in init_args else None
            return f"--{prefix}.{argument}" if argument else f"--{prefix}"
    return None


def _class_entries(value: Any, prefix: str) -> Iterator[tuple[str, Namespace]]:
    """Every ``class_path`` entry of a config, with its dotted option (``init_args`` left out)."""
    if isinstance(value, Namespace):
        if "class_path" in value:
            yield prefix, value
            value = value.get("init_args") or Namespace()
        for key, child in vars(value).items():
            yield from _class_entries(child, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _class_entries(child, f"{prefix}[{index}]")
