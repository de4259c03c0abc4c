"""The `lightning-genaug` command: help, printed configs, and clear errors for bad configs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightning_genaug.cli import main

REPO = Path(__file__).resolve().parents[1]
BORING = "lightning.pytorch.demos.boring_classes.BoringModel"


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the CLI in-process as if from a shell; returns (exit code, stdout + stderr)."""

    def run(args: list[str]) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        captured = capsys.readouterr()
        return exit_info.value.code or 0, captured.out + captured.err

    return run


def test_console_script_help_lists_the_subcommands():
    executable = shutil.which("lightning-genaug")
    assert executable is not None, "the console script is not installed"
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    after_training = ("generate", "style-mix", "interpolate", "project", "export")
    for subcommand in ("fit", "validate", "test", "predict", "prepare", *after_training):
        assert re.search(rf"^\s+{subcommand}\s", result.stdout, re.MULTILINE), subcommand


def test_the_top_level_help_is_the_one_lightningcli_would_print(capsys, monkeypatch):
    """``lightning-genaug --help`` answers without Lightning (seconds sooner) and says what GenAugCLI says."""
    from lightning_genaug.cli import top_level_parser
    from lightning_genaug.fit_cli import GenAugCLI

    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    with pytest.raises(SystemExit):
        GenAugCLI(args=["--help"])
    lightning_help = capsys.readouterr().out
    assert top_level_parser().format_help() == lightning_help
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == lightning_help


def test_print_config_with_short_class_names(cli):
    code, output = cli(["fit", "--print_config", "--model", BORING, "--data", "DigitsDataModule"])
    assert code == 0
    config = yaml.safe_load(output)
    assert config["data"]["class_path"].endswith(".DigitsDataModule")
    assert config["data"]["init_args"]["resolution"] == 16
    assert config["model"]["class_path"] == BORING
    assert "trainer" in config and "optimizer" not in config


@pytest.mark.parametrize("model", ["StyleGAN2ADA", "ScaleGAN", "SparseTransformerDistAug"])
def test_print_config_of_every_project_module(cli, model: str):
    code, output = cli(["fit", "--print_config", "--model", model, "--data", "DigitsDataModule"])
    assert code == 0
    config = yaml.safe_load(output)
    assert config["model"]["class_path"].endswith(model)
    assert "config" in config["model"]["init_args"]  # the module's own arguments are listed


def test_unknown_class_is_a_clear_error(cli, tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text(f"model:\n  class_path: {BORING}\ndata:\n  class_path: NoSuchDataModule\n")
    code, output = cli(["fit", "--config", str(config)])
    assert code != 0
    assert "NoSuchDataModule" in output and "Traceback" not in output


def test_typo_in_a_key_is_a_clear_error(cli, tmp_path: Path):
    config = tmp_path / "typo.yaml"
    config.write_text(
        f"model:\n  class_path: {BORING}\n"
        "data:\n  class_path: DigitsDataModule\n  init_args:\n    resolutoin: 16\n"
    )
    code, output = cli(["fit", "--config", str(config)])
    assert code != 0
    assert "resolutoin" in output and "Traceback" not in output


TINY_FIT = ["fit", "--model", "StyleGAN2ADA", "--model.config", "tiny", "--data", "DigitsDataModule"]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--model.config", "bogus"],
            "error: --model.config: Unknown `config` 'bogus'; valid values are: auto,",
        ),
        (["--model.augment.preset", "bgx"], "error: --model.augment.preset: Unknown `preset` 'bgx'; valid"),
        (["--data.batch_size", "-3"], "error: --data.batch_size: `batch_size` must be > 0, got -3."),
        (
            ["--trainer.callbacks+", "AdaptiveAugmentation", "--trainer.callbacks.target", "1.5"],
            "error: --trainer.callbacks[0].target: `target` must be in [0.0, 1.0) with heuristic='auto', "
            "which may hold r_t, got 1.5; give heuristic='gap' to hold D's held-out gap at 1.5.",
        ),
        (
            ["--trainer.callbacks+", "AdaptiveAugmentation", "--trainer.callbacks.heuristic", "rtv"],
            "error: --trainer.callbacks[0].heuristic: Unknown `heuristic` 'rtv'; valid values are: auto, "
            "rt, rt_clean, rv, gap.",
        ),
    ],
    ids=["model", "nested", "data", "callback", "heuristic"],
)
def test_a_bad_value_is_one_line_naming_the_option_and_exit_code_2(cli, args, line):
    code, output = cli([*TINY_FIT, *args])
    assert code == 2
    assert "Traceback" not in output
    assert [text for text in output.splitlines() if text.startswith("error:")] == [
        next(text for text in output.splitlines() if text.startswith(line))
    ]


def test_the_heuristic_and_the_fixed_strength_are_reachable_from_yaml(cli, tmp_path: Path):
    config = tmp_path / "strength.yaml"
    config.write_text(
        "trainer:\n  callbacks:\n    - class_path: AdaptiveAugmentation\n"
        "      init_args: {heuristic: gap, target: 0.5}\n"
        "    - class_path: FixedAugmentation\n"
    )
    code, output = cli([*TINY_FIT, "--config", str(config), "--print_config"])
    assert code == 0
    adaptive, fixed = yaml.safe_load(output)["trainer"]["callbacks"]
    assert adaptive["class_path"].endswith("AdaptiveAugmentation")
    assert adaptive["init_args"]["heuristic"] == "gap"
    assert fixed["class_path"].endswith("FixedAugmentation")


def test_jsonargparse_debug_shows_the_traceback_of_a_bad_value(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    monkeypatch.setenv("JSONARGPARSE_DEBUG", "true")
    with pytest.raises(Exception, match="Unknown `config` 'bogus'") as error:
        main([*TINY_FIT, "--model.config", "bogus"])
    assert isinstance(error.value.__cause__, ValueError)


def quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.DOTALL)
    assert block is not None, "README's Quickstart has no code block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quickstart_is_two_commands_and_ci_runs_the_test_one():
    commands = quickstart_commands()
    assert len(commands) == 2
    main_job, test_command = commands
    assert "lightning-genaug fit --config examples/configs/ada.yaml" in main_job
    assert (REPO / "examples/configs/ada.yaml").is_file()
    ci_script = (REPO / ".ci/run").read_text()
    # CI creates its own venv, then runs the README's install and test steps verbatim.
    for step in test_command.split("&&")[-2:]:
        assert step.strip() in ci_script, step


def test_a_config_without_logger_gets_versioned_csv_logs_in_default_root_dir(tmp_path: Path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger

    from lightning_genaug.cli import GenAugCLI

    monkeypatch.chdir(tmp_path)
    args = ["--model", BORING, "--data", "DigitsDataModule"]
    args += ["--trainer.default_root_dir", str(tmp_path / "r")]
    trainer = GenAugCLI(args=args, run=False).trainer
    assert isinstance(trainer.logger, CSVLogger)
    assert Path(trainer.logger.log_dir) == tmp_path / "r" / "lightning_logs" / "version_0"


def test_a_wandb_logger_at_its_default_save_dir_writes_under_default_root_dir(tmp_path: Path, monkeypatch):
    from lightning_genaug.cli import GenAugCLI

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    args = ["--model", BORING, "--data", "DigitsDataModule"]
    args += ["--trainer.default_root_dir", str(tmp_path / "r")]
    trainer = GenAugCLI(args=[*args, "--trainer.logger", "WandbLogger"], run=False).trainer
    assert Path(trainer.logger.save_dir) == tmp_path / "r"


def test_a_single_augmentation_strength_is_set_from_the_command_line(cli):
    """Every AugmentPipe strength is a keyword argument, so the paper's ablations are configurable."""
    config = REPO / "examples" / "configs" / "ada.yaml"
    args = ["fit", "--config", str(config), "--model.augment.init_args.rotate", "0.5", "--print_config"]
    code, output = cli(args)
    assert code == 0, output
    augment = yaml.safe_load(output)["model"]["init_args"]["augment"]
    assert augment["class_path"].endswith(".AugmentPipe")
    assert augment["init_args"]["rotate"] == 0.5
    assert augment["init_args"]["preset"] == "bgc" and augment["init_args"]["xflip"] is None


def test_a_scheduled_p_is_configured_by_its_short_name(cli, tmp_path: Path):
    config = tmp_path / "scheduled.yaml"
    config.write_text(
        "model:\n  class_path: StyleGAN2ADA\ndata:\n  class_path: DigitsDataModule\n"
        "trainer:\n  callbacks:\n    - class_path: ScheduledAugmentation\n"
        "      init_args: {ramp_kimg: 500, max_p: 0.6}\n"
    )
    code, output = cli(["fit", "--config", str(config), "--print_config"])
    assert code == 0, output
    (callback,) = yaml.safe_load(output)["trainer"]["callbacks"]
    assert callback["class_path"].endswith(".ScheduledAugmentation")
    assert callback["init_args"]["ramp_kimg"] == 500 and callback["init_args"]["max_p"] == 0.6


@pytest.mark.parametrize(
    ("model", "good", "bad"),
    [
        ("StyleGAN2ADA", "{lr: 0.001, ema_rampup: null}", "{lr: fast}"),
        ("StyleGAN2ADA", "{channel_max: 64}", "{gamma: 1.0}"),  # gamma belongs to the regulariser
        ("SparseTransformerDistAug", "{dropout: 0.1, n_layer: 4}", "{n_layers: 4}"),
    ],
)
def test_config_overrides_are_checked_by_the_command_line(cli, model: str, good: str, bad: str):
    base = ["fit", "--model", model, "--data", "DigitsDataModule", "--print_config"]
    code, output = cli([*base, "--model.config_overrides", good])
    assert code == 0, output
    assert yaml.safe_load(output)["model"]["init_args"]["config_overrides"]
    code, output = cli([*base, "--model.config_overrides", bad])
    assert code != 0 and "config_overrides" in output and "Traceback" not in output
