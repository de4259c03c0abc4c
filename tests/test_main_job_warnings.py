"""The README's main job prints no warning its user cannot act on (issue 34).

Every warning of a fit of ``examples/configs/ada.yaml`` is asserted here: Python warnings as a user's
interpreter shows them (deprecations hidden), and WARNING records and Lightning's INFO tips on the
package's and Lightning's loggers.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest

from lightning_genaug.cli import GenAugCLI, main

REPO = Path(__file__).resolve().parents[1]
MAIN_JOB = REPO / "examples" / "configs" / "ada.yaml"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_capturing(args: list[str]) -> tuple[list[str], list[str]]:
    """``(warnings, log lines)`` of ``lightning-genaug <args>`` as a user's shell would show them."""
    handler = Records()
    loggers = [
        logging.getLogger(name) for name in ("lightning_genaug", "lightning.pytorch", "lightning.fabric")
    ]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # every warning once per place, as the default "default" action
            warnings.filterwarnings("ignore", category=DeprecationWarning)  # Python's defaults
            warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
            main(args)
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    lines = [
        f"{record.levelname}: {record.getMessage()}"
        for record in handler.records
        # Lightning's tips and its note that a checkpoint's `weights_only` was not set: noise to a user
        if record.levelno >= logging.WARNING
        or "Tip" in record.getMessage()
        or "weights_only" in record.getMessage()
    ]
    return [f"{warning.category.__name__}: {warning.message}" for warning in caught], lines


def test_a_short_fit_of_the_main_job_emits_no_warning(tmp_path: Path, monkeypatch):
    """No batch-size warning (ada.yaml sets gamma and ema_kimg), no empty validation loader, no tips."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    monkeypatch.setenv("LIGHTNING_GENAUG_CACHE", str(tmp_path / "cache"))
    args = ["fit", "--config", str(MAIN_JOB), "--trainer.max_steps", "4"]
    caught, lines = run_capturing([*args, "--trainer.enable_progress_bar", "false"])
    assert caught == []
    assert lines == []
    assert next((tmp_path / "runs" / "ada").rglob("last.ckpt")).is_file()  # the run did train and save


def test_the_main_job_without_validation_data_turns_validation_off_unless_asked(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    args = ["--config", str(MAIN_JOB)]
    assert GenAugCLI(args=args, run=False).datamodule.has_validation_data is False
    cli = GenAugCLI(args=args, run=False)
    cli.before_fit()
    assert cli.trainer.limit_val_batches == 0
    held_out = GenAugCLI(args=[*args, "--data.val_fraction", "0.1"], run=False)
    held_out.before_fit()
    assert held_out.trainer.limit_val_batches == 1.0
    asked = GenAugCLI(args=[*args, "--trainer.limit_val_batches", "2"], run=False)
    asked.before_fit()
    assert asked.trainer.limit_val_batches == 2


def test_a_mismatch_found_in_setup_is_one_error_line_and_exit_code_2(tmp_path: Path, monkeypatch, capsys):
    """The issue's crash, now before the first step: colour data, the digits config's grey extractor."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    args = [
        "fit",
        "--config",
        str(MAIN_JOB),
        "--data.channels",
        "3",
        "--trainer.enable_progress_bar",
        "false",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error_lines == [
        "error: Image channels differ: GenerativeMetrics' `feature_extractor` (ClassifierFeatures) "
        "`in_channels` has 1, DigitsDataModule's images has 3; set the feature_extractor's `in_channels: 3` "
        "(`init_args.in_channels` in a config)."
    ]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_wandb_logger_is_not_given_wandbs_deprecated_anonymous_setting(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = ["--config", str(MAIN_JOB), "--trainer.logger", "WandbLogger"]
    logger = GenAugCLI(args=args, run=False).trainer.logger
    assert type(logger).__name__ == "WandbLogger"
    assert "anonymous" not in logger._wandb_init  # Lightning passes anonymous=None; wandb warns about it
