"""Every YAML in examples/ parses with the short class names, and every model predicts from its example."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_docs_blocks import colour_folder

from lightning_genaug.cli import GenAugCLI, main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONFIGS = sorted((EXAMPLES / "configs").glob("*.yaml"))
ALL_YAML = sorted(EXAMPLES.rglob("*.yaml"))


def class_paths(node) -> list[str]:
    """Every ``class_path`` value in a parsed YAML document (nested lists and dicts)."""
    if isinstance(node, dict):
        found = [node["class_path"]] if isinstance(node.get("class_path"), str) else []
        return found + [path for value in node.values() for path in class_paths(value)]
    if isinstance(node, list):
        return [path for item in node for path in class_paths(item)]
    return []


def extra_args(config: Path, tmp_path: Path) -> list[str]:
    """CIFAR-10 configs need a data path (nothing is downloaded; parsing does not read it)."""
    return ["--data.path", str(tmp_path)] if "CIFAR10DataModule" in config.read_text() else []


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run the CLI in-process from an empty folder; returns (exit code, output)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])

    def run(args: list[str]) -> tuple[int, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        captured = capsys.readouterr()
        return exit_info.value.code or 0, captured.out + captured.err

    return run


def test_examples_folder_has_the_documented_configs():
    names = {path.name for path in CONFIGS}
    assert {"ada.yaml", "scalegan.yaml", "distaug.yaml"} <= names
    assert not any(name.startswith("scalegan-") and "cifar" not in name for name in names)  # ablations: CLI


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda path: str(path.relative_to(EXAMPLES)))
def test_every_example_yaml_uses_short_class_names(path: Path):
    document = yaml.safe_load(path.read_text())
    inline = re.findall(r"class_path: ([\w.]+)", path.read_text())  # also inside the sweep's flow strings
    for class_path in class_paths(document) + inline:
        assert "." not in class_path, (
            f"{path.name}: use the short name LightningCLI resolves, not {class_path}"
        )


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_every_example_config_parses(cli, tmp_path: Path, path: Path):
    code, output = cli(["fit", "--config", str(path), *extra_args(path, tmp_path), "--print_config"])
    assert code == 0, output
    assert yaml.safe_load(output)["model"]["class_path"].startswith("lightning_genaug.")


@pytest.mark.parametrize(
    ("overrides", "augment", "regularizer"),
    [
        ([], "DataScaling", "VarianceRegularizer"),
        (["--model.regularizer", "R1"], "DataScaling", "R1"),
        (
            ["--model.augment.schedule", "fixed", "--model.augment.scale", "1.0"],
            "DataScaling",
            "VarianceRegularizer",
        ),
        (
            [
                "--model.augment",
                "Chain",
                "--model.augment.augmentations",
                "[AugmentPipe, {class_path: DataScaling, init_args: {p: 0.5}}]",
            ],
            "Chain",
            "VarianceRegularizer",
        ),
    ],
)
def test_scalegan_ablations_are_command_line_overrides(
    monkeypatch, tmp_path, overrides, augment, regularizer
):
    """The overrides documented in scalegan.yaml and docs/scalegan.md build the ablations."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    args = ["--config", str(EXAMPLES / "configs" / "scalegan.yaml"), *overrides, "--trainer.logger", "false"]
    model = GenAugCLI(args=args, run=False).model
    assert type(model.augment_pipe).__name__ == augment
    assert type(model.regularizer).__name__ == regularizer
    assert model.regularizer.gamma == 0.05  # the weight carries over when the class changes
    documented = (EXAMPLES / "configs" / "scalegan.yaml").read_text() + (
        EXAMPLES.parent / "docs" / "scalegan.md"
    ).read_text()
    for override in overrides[::2]:
        assert override in documented


def test_the_sweeps_command_and_parameters_parse(cli):
    sweep = yaml.safe_load((EXAMPLES / "sweeps" / "ada-sweep.yaml").read_text())
    command = [arg for arg in sweep["command"] if not arg.startswith("${")]
    assert command[:3] == ["fit", "--config", "examples/configs/ada.yaml"]
    command[2] = str(EXAMPLES / "configs" / "ada.yaml")
    sampled = [
        f"--{name}={spec.get('min', (spec.get('values') or [None])[0])}"
        for name, spec in sweep["parameters"].items()
    ]
    code, output = cli([*command, *sampled, "--print_config"])
    assert code == 0, output


def shrink(config: Path, tmp_path: Path) -> Path:
    """An example config with its data cut to a few images and its metric callback removed."""
    document = yaml.safe_load(config.read_text())
    document["data"]["init_args"]["max_images"] = 40
    document["trainer"]["callbacks"] = [
        callback
        for callback in document["trainer"].get("callbacks", [])
        if callback["class_path"] != "GenerativeMetrics"
    ]
    path = tmp_path / config.name
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("name", "extra", "model"),
    [
        ("ada.yaml", [], "StyleGAN2ADA"),
        ("scalegan.yaml", [], "ScaleGAN"),
        (
            "distaug.yaml",
            ["--model.predict.sample_kwargs", "{temperature: 0.9, use_cache: true}"],
            "SparseTransformerDistAug",
        ),
    ],
)
def test_every_models_example_config_predicts(
    monkeypatch, tmp_path: Path, name: str, extra: list[str], model: str
):
    """`lightning-genaug predict --config <example>` writes one PNG per seed and a grid, for every model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    config = shrink(EXAMPLES / "configs" / name, tmp_path)
    args = ["predict", "--config", str(config), *extra, "--model.predict.num_images", "3"]
    cli = GenAugCLI(args=[*args, "--trainer.enable_progress_bar", "false"])
    assert type(cli.model).__name__ == model
    folder = Path(cli.trainer.log_dir) / "predictions"
    assert sorted(path.name for path in folder.iterdir()) == [
        "grid.png",
        "seed000000.png",
        "seed000001.png",
        "seed000002.png",
    ]


FOLDER_FIT = [
    *("fit", "--config", str(EXAMPLES / "configs" / "ada-folder.yaml"), "--data.path", "photos"),
    *("--model.max_kimg", "0.064", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"),
]
"""``ada-folder.yaml`` on ``photos/`` for two batches."""


def test_the_folder_config_trains_on_a_folder_of_colour_photographs(tmp_path: Path, monkeypatch):
    """One override, ``--data.path``; ADA, mirroring, the reals and sample grids, checkpoints, no warning."""
    from test_main_job_warnings import run_capturing

    colour_folder(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    caught, lines = run_capturing(FOLDER_FIT)  # 0.064 kimg: two batches of 32 (16 images, mirrored)
    assert (caught, lines) == ([], [])
    run = tmp_path / "runs" / "ada-folder" / "lightning_logs" / "version_0"
    assert sorted(path.name for path in (run / "samples").iterdir()) == [
        "batch_0000000.png",  # the untrained samples, at the start
        "batch_0000002.png",  # at the end
        "reals.png",
    ]
    reals = np.asarray(Image.open(run / "samples" / "reals.png"))
    assert reals.ndim == 3 and reals.shape[2] == 3  # a colour grid of the 32 mirrored training images
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["state_dict"]["cur_nimg"].item() == 64
    assert state["state_dict"]["augment_pipe.p"].item() >= 0  # the pipe D sees, adapted by the callback
    assert any(name.startswith("AdaptiveAugmentation") for name in state["callbacks"])
    first_conv = next(v for k, v in state["state_dict"].items() if k.startswith("D.") and v.ndim == 4)
    assert first_conv.shape[0] <= 64  # the narrowed auto preset


def test_the_folder_configs_small_set_recipe_reads_ds_held_out_gap(tmp_path: Path, monkeypatch):
    """The overrides ``ada-folder.yaml`` documents for a small set: DiffAugment chained after ADA's pipe and
    reals held out, so the default ``heuristic: auto`` holds D's held-out gap at 0.5."""
    colour_folder(tmp_path / "photos", count=64)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning-genaug"])
    recipe = ["--model.augment", "Chain", "--model.augment.augmentations", "[AugmentPipe, DiffAugment]"]
    held_out = ["--data.val_fraction", "0.5"]  # 32 of the 64 photographs: the fewest the gap reads
    main([*FOLDER_FIT, *recipe, *held_out])
    run = tmp_path / "runs" / "ada-folder" / "lightning_logs" / "version_0"
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    (ada_state,) = [
        value for key, value in state["callbacks"].items() if key.startswith("AdaptiveAugmentation")
    ]
    assert ada_state["reading"] == "gap"
    assert "augment_pipe.augmentations.0.p" in state["state_dict"]  # the chain's p: ADA's pipe's


def test_the_cifar10_config_trains_on_a_cifar_zip(cifar_zips: Path, tmp_path: Path, monkeypatch):
    config = yaml.safe_load((EXAMPLES / "configs" / "ada-cifar10.yaml").read_text())
    overrides = config["model"]["init_args"]["config_overrides"]
    assert overrides == {"channel_base": 2048, "channel_max": 64}  # the narrowed width is the default
    # Offline, the Inception metric has no weights: this test keeps the rest of the config as it is.
    config["trainer"]["callbacks"] = [
        entry for entry in config["trainer"]["callbacks"] if entry["class_path"] != "GenerativeMetrics"
    ]
    (tmp_path / "cifar.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    main(
        ["fit", "--config", "cifar.yaml", "--data.path", str(cifar_zips / "train-10k-jpeg.zip")]
        + ["--data.batch_size", "32", "--data.num_workers", "0", "--trainer.max_steps", "4"]
        + ["--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    )
    checkpoint = next((tmp_path / "runs" / "ada-cifar10").rglob("last.ckpt"))
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["state_dict"]["cur_nimg"].item() == 64  # two batches of 32 zip images (G and D steps)
    first_conv = next(v for k, v in state["state_dict"].items() if k.startswith("D.") and v.ndim == 4)
    assert first_conv.shape[0] <= 64  # at most 64 feature maps
