"""Official stylegan2-ada-pytorch network pickles: read without running their code, mapped onto our networks.

The pickles here are synthetic: our own ``tiny`` networks written in the reference's persistence
format (each module a ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` call whose meta
carries module source code, the class name and the module's ``__dict__``; constructor kwargs in
``dnnlib.util.EasyDict``; constant ``resample_filter`` buffers saved with the weights).
"""

from __future__ import annotations

import os
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from lightning_genaug.callbacks import AdaptiveAugmentation
from lightning_genaug.models.predict import PredictOptions
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.models.stylegan2.configs import build_networks
from lightning_genaug.models.stylegan2.official import read_network_pickle

# Source code the reference would exec on unpickling: it must never run here.
HOSTILE_SOURCE = "import os\nos.environ['GENAUG_PICKLE_CODE_RAN'] = '1'\n"
RESOLUTION, CHANNELS, CHANNEL_BASE, CHANNEL_MAX = 16, 3, 256, 32


def _never_called(meta):  # pickled by reference as torch_utils.persistence._reconstruct_persistent_obj
    raise AssertionError("the reconstruct function of the test module must not be used by the reader")


class _EasyDict(dict):
    """Pickled by reference as dnnlib.util.EasyDict."""


class _Persistent:
    """Pickles exactly like a reference persistent object: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __reduce__(self):
        return _never_called, (self.meta,)


@pytest.fixture
def reference_modules(monkeypatch):
    """Registers the reference's module names so that pickle writes globals with them."""
    register_reference_modules(monkeypatch)


def register_reference_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put stand-ins for ``torch_utils.persistence`` and ``dnnlib.util`` in ``sys.modules``."""
    persistence = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    _never_called.__module__, _never_called.__qualname__ = persistence.__name__, "_reconstruct_persistent_obj"
    _EasyDict.__module__, _EasyDict.__qualname__ = util.__name__, "EasyDict"
    persistence._reconstruct_persistent_obj = _never_called
    util.EasyDict = _EasyDict
    for name, module in (
        ("torch_utils", types.ModuleType("torch_utils")),
        ("torch_utils.persistence", persistence),
        ("dnnlib", types.ModuleType("dnnlib")),
        ("dnnlib.util", util),
    ):
        monkeypatch.setitem(sys.modules, name, module)


def as_persistent(module: nn.Module, init_kwargs: dict | None = None) -> _Persistent:
    """``module`` in the reference's format: its ``__dict__`` essentials, sub-modules recursively."""
    state = {
        "training": False,
        "_parameters": OrderedDict(module._parameters),
        "_buffers": OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_modules": OrderedDict((name, as_persistent(child)) for name, child in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": _EasyDict(init_kwargs or {}),
    }
    meta = dict(
        type="class", version=6, module_src=HOSTILE_SOURCE, class_name=type(module).__name__, state=state
    )
    return _Persistent(meta)


def write_official_pickle(path: Path, num_classes: int = 0, p: float = 0.25, seed: int = 1):
    """A tiny network snapshot like the reference's training loop writes; returns ``(G, D, G_ema)``."""
    torch.manual_seed(seed)
    G, D = build_networks("tiny", RESOLUTION, CHANNELS, num_classes)
    G_ema, _ = build_networks("tiny", RESOLUTION, CHANNELS, num_classes)
    G_ema.mapping.w_avg.normal_()  # a trained network's non-zero running mean
    common = dict(c_dim=num_classes, img_resolution=RESOLUTION, img_channels=CHANNELS)
    g_kwargs = dict(
        z_dim=32,
        w_dim=32,
        **common,
        mapping_kwargs=_EasyDict(num_layers=2),
        synthesis_kwargs=_EasyDict(
            channel_base=CHANNEL_BASE, channel_max=CHANNEL_MAX, num_fp16_res=0, conv_clamp=256
        ),
    )
    d_kwargs = dict(
        **common,
        architecture="resnet",
        channel_base=CHANNEL_BASE,
        channel_max=CHANNEL_MAX,
        num_fp16_res=0,
        conv_clamp=256,
        epilogue_kwargs=_EasyDict(mbstd_group_size=4),
    )
    pipe = nn.Module()
    pipe.register_buffer("p", torch.tensor(p))
    snapshot = {
        "training_set_kwargs": {"resolution": RESOLUTION, "use_labels": num_classes > 0},
        "G": as_persistent(G, g_kwargs),
        "D": as_persistent(D, d_kwargs),
        "G_ema": as_persistent(G_ema, g_kwargs),
        "augment_pipe": as_persistent(pipe, {"xflip": 1, "rotate90": 1}),
    }
    path.write_bytes(pickle.dumps(snapshot))
    return G, D, G_ema


def predict_trainer(tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)


def test_reading_never_runs_the_pickled_source(tmp_path, reference_modules, monkeypatch):
    monkeypatch.delenv("GENAUG_PICKLE_CODE_RAN", raising=False)
    write_official_pickle(tmp_path / "net.pkl")
    networks = read_network_pickle(tmp_path / "net.pkl")
    assert "GENAUG_PICKLE_CODE_RAN" not in os.environ
    assert (networks.resolution, networks.channels, networks.num_classes) == (RESOLUTION, CHANNELS, 0)
    assert (
        networks.config_overrides["mapping_layers"] == 2
        and networks.config_overrides["channel_max"] == CHANNEL_MAX
    )
    assert networks.augment_p == pytest.approx(0.25)
    assert not any(name.endswith("resample_filter") for name in networks.weights["G"])


def test_a_pickle_that_calls_anything_else_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return os.system, ("echo pwned",)

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G": Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match=r"system.*never runs code"):
        read_network_pickle(tmp_path / "evil.pkl")


def test_a_pickle_without_networks_is_not_a_network_pickle(tmp_path):
    (tmp_path / "data.pkl").write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(ValueError, match=r"not a stylegan2-ada-pytorch network pickle.*\['weights'\]"):
        read_network_pickle(tmp_path / "data.pkl")


@pytest.mark.parametrize("num_classes", [0, 3])
def test_official_pickle_loads_into_stylegan2ada_and_samples(tmp_path, reference_modules, num_classes):
    G, D, G_ema = write_official_pickle(tmp_path / "net.pkl", num_classes=num_classes)
    model = StyleGAN2ADA(
        "tiny",
        init_from=str(tmp_path / "net.pkl"),
        predict=PredictOptions(num_images=4, output_dir=str(tmp_path / "out")),
    )
    predict_trainer(tmp_path).predict(model)  # no shapes given: they come from the pickle

    assert (model.hparams.resolution, model.hparams.channels, model.hparams.num_classes) == (
        16,
        3,
        num_classes,
    )
    assert float(model.augment_pipe.p) == pytest.approx(0.25)
    for name, source in (("G", G), ("D", D), ("G_ema", G_ema)):
        for key, value in source.state_dict().items():
            torch.testing.assert_close(getattr(model, name).state_dict()[key], value, rtol=0, atol=0)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    c = torch.eye(num_classes)[:2] if num_classes else torch.zeros(2, 0)
    with torch.no_grad():
        torch.testing.assert_close(model.G_ema(z, c), G_ema.eval()(z, c))
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[:2] == ["grid.png", "seed000000.png"]


def test_the_pickles_p_is_where_adaptive_augmentation_starts_fine_tuning(tmp_path, reference_modules):
    write_official_pickle(tmp_path / "net.pkl", p=0.25)
    model = StyleGAN2ADA("tiny", init_from=str(tmp_path / "net.pkl"))
    ada = AdaptiveAugmentation(every_n_batches=100)  # no update within the run: p is the starting p
    images = torch.rand(4, CHANNELS, RESOLUTION, RESOLUTION) * 2 - 1
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ada],
    )
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(images, batch_size=4))

    assert ada.pipe is model.augment_pipe
    assert ada.p == pytest.approx(0.25) and float(model.augment_pipe.p) == pytest.approx(0.25)


def test_a_pickle_that_does_not_fit_names_the_mismatching_tensors(tmp_path, reference_modules):
    write_official_pickle(tmp_path / "net.pkl")
    model = StyleGAN2ADA("tiny", init_from=str(tmp_path / "net.pkl"), config_overrides={"channel_max": 16})
    with pytest.raises(
        ValueError, match=r"does not fit this model: G\.\S+: pickle \(32, .*\) vs model \(16, "
    ):
        predict_trainer(tmp_path).predict(model)


def test_predict_from_the_command_line_accepts_a_network_pickle(tmp_path, reference_modules, monkeypatch):
    from lightning_genaug.cli import main

    write_official_pickle(tmp_path / "net.pkl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["lightning-genaug"])
    main(
        ["predict", "--model", "StyleGAN2ADA", "--model.config", "tiny", "--model.predict.num_images", "3",
         "--model.predict.output_dir", "out", "--ckpt_path", "net.pkl", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    )  # fmt: skip
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "grid.png", "seed000000.png", "seed000001.png", "seed000002.png"
    ]  # fmt: skip
