"""``fit --ckpt_path``: the run's length from the command line, the model from the checkpoint.

LightningCLI replaces the model's init arguments by the checkpoint's hyperparameters, so a finished run
resumed with ``--model.max_kimg 0.032`` stopped again at the checkpoint's 0.016. The fits are
``lightning-genaug fit`` in-process: StyleGAN2ADA ``tiny`` on 8x8 digits, batches of 8 (0.016 kimg is
two batches).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from jsonargparse import Namespace

from lightning_genaug._checks import MismatchError
from lightning_genaug.fit_cli import _set_at, resume_arguments

STYLEGAN2 = "lightning_genaug.StyleGAN2ADA"


@pytest.fixture
def run(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``run(*args)``: ``lightning-genaug fit --config tiny.yaml *args`` in ``tmp_path``; (code, stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTNING_GENAUG_CACHE", str(tmp_path / "cache"))
    config = {
        "seed_everything": 0,
        "model": {"class_path": "StyleGAN2ADA", "init_args": {"config": "tiny", "max_kimg": 0.016}},
        "data": {
            "class_path": "DigitsDataModule",
            "init_args": {"resolution": 8, "batch_size": 8, "max_images": 64},
        },
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": -1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "log_every_n_steps": 1,
            "default_root_dir": "runs/tiny",
            "callbacks": [{"class_path": "KimgCheckpoint"}],
        },
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))

    def fit(*args: str) -> tuple[int, str]:
        code, _, err = cli("fit", "--config", "tiny.yaml", *args)
        return code, err

    return fit


LAST = Path("runs/tiny/lightning_logs/version_0/checkpoints/last.ckpt")


def saved(path: Path) -> tuple[int, dict]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    return int(checkpoint["state_dict"]["cur_nimg"]), checkpoint["hyper_parameters"]


def test_a_finished_run_resumed_with_a_larger_max_kimg_trains_to_the_new_budget(run):
    assert run()[0] == 0
    assert saved(LAST)[0] == 16  # stopped at max_kimg 0.016
    code, err = run("--model.max_kimg", "0.032", "--ckpt_path", str(LAST))
    assert code == 0, err
    images, hparams = saved(LAST)
    assert images == 32  # was 24: the checkpoint's 0.016 kept, stopped after its first batch
    assert hparams["max_kimg"] == 0.032  # and a later resume starts from the new budget
    assert hparams["resolution"] == 8 and hparams["config"] == "tiny"  # the rest from the checkpoint


def test_a_resume_given_another_network_shape_is_refused_in_one_line(run):
    assert run()[0] == 0
    before = LAST.read_bytes()
    code, err = run("--model.config_overrides.channel_max", "4", "--ckpt_path", str(LAST))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("error: --model.config_overrides.channel_max: 4 given, the checkpoint has none;")
    assert f"`--model.init_from {LAST}` without --ckpt_path" in line  # the way to train a changed model
    assert "only max_kimg, autocast_bf16, compile may change" in line
    assert LAST.read_bytes() == before  # nothing trained


def model(class_path: str = STYLEGAN2, **init_args) -> Namespace:
    return Namespace(class_path=class_path, init_args=Namespace(**init_args))


def test_values_the_checkpoint_holds_too_are_not_refused():
    """The config a run began with: ``config_overrides`` the checkpoint merged a pickle's shapes into."""
    given = model(config="paper256", config_overrides={"ema_rampup": None}, resolution=None, max_kimg=150)
    defaults = model(config="auto", config_overrides=None, resolution=None, max_kimg=None)
    overrides = {"channel_base": 16384, "ema_rampup": None}
    resumed = model(config="paper256", config_overrides=overrides, resolution=256, max_kimg=150)
    assert resume_arguments(given, defaults, resumed) == {}


def test_every_changed_value_of_the_model_is_named_and_another_class_is_refused():
    given = model(freeze_d=2, augment=None, max_kimg=None)
    defaults = model(freeze_d=0, augment=Namespace(class_path="lightning_genaug.AugmentPipe"), max_kimg=None)
    resumed = model(freeze_d=0, augment=Namespace(class_path="lightning_genaug.DiffAugment"), max_kimg=10)
    with pytest.raises(
        MismatchError, match=r"^--model\.freeze_d: 2 given, the checkpoint has 0; --model\.augment: "
    ):
        resume_arguments(given, defaults, resumed, "last.ckpt")
    scalegan = model("lightning_genaug.ScaleGAN", max_kimg=None)
    with pytest.raises(MismatchError, match="holds a StyleGAN2ADA, not a ScaleGAN"):
        resume_arguments(scalegan, scalegan, model(max_kimg=None))


def test_a_run_argument_inside_a_dict_the_checkpoint_left_none_is_taken():
    """SparseTransformerDistAug's ``config_overrides.schedule_steps``: the steps its learning rate decays."""
    transformer = "lightning_genaug.SparseTransformerDistAug"
    given = model(transformer, config_overrides={"schedule_steps": 400})
    resumed = model(transformer, config_overrides=None)
    taken = resume_arguments(given, model(transformer, config_overrides=None), resumed)
    assert list(taken) == ["config_overrides.schedule_steps"]
    assert taken["config_overrides.schedule_steps"][0] == 400
    _set_at(resumed.init_args, "config_overrides.schedule_steps", 400)
    assert resumed.init_args.config_overrides == {"schedule_steps": 400}
    given.init_args.config_overrides["n_layer"] = 4  # the network's depth: refused
    with pytest.raises(MismatchError, match=r"^--model\.config_overrides\.n_layer: 4 given"):
        resume_arguments(
            given, model(transformer, config_overrides=None), model(transformer, config_overrides=None)
        )
