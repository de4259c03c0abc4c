"""Official stylegan2-ada-pytorch network pickles: read without running their code, mapped onto our networks.

The pickles here are synthetic: our own ``tiny`` networks written in the reference's persistence
format (each module a ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` call whose meta
carries module source code, the class name and the module's ``__dict__``; constructor kwargs in
``dnnlib.util.EasyDict``; constant ``resample_filter`` buffers saved with the weights).
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import os
import pickle
import re
import subprocess
import sys
import time
import types
from collections import OrderedDict
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch import nn

from lightning_genaug import safe_pickle
from lightning_genaug.callbacks import AdaptiveAugmentation
from lightning_genaug.models.predict import PredictOptions
from lightning_genaug.models.stylegan2 import StyleGAN2ADA, official
from lightning_genaug.models.stylegan2.configs import build_networks
from lightning_genaug.models.stylegan2.official import NetworkPickleError, read_network_pickle
from lightning_genaug.models.stylegan2.transfer import copy_pickle_weights

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


def write_official_pickle(
    path: Path,
    num_classes: int = 0,
    p: float = 0.25,
    seed: int = 1,
    protocol: int = pickle.DEFAULT_PROTOCOL,
    training_set_extra: dict | None = None,
):
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
        "training_set_kwargs": {
            "resolution": RESOLUTION,
            "use_labels": num_classes > 0,
            **(training_set_extra or {}),
        },
        "G": as_persistent(G, g_kwargs),
        "D": as_persistent(D, d_kwargs),
        "G_ema": as_persistent(G_ema, g_kwargs),
        "augment_pipe": as_persistent(pipe, {"xflip": 1, "rotate90": 1}),
    }
    path.write_bytes(pickle.dumps(snapshot, protocol=protocol))
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


# ------------------------------------------------------------------------------- hostile pickles
# One generated file per class of attack. Each must be refused with one NetworkPickleError naming the
# file, in well under a second, and leave every global the reader may name exactly as it was.

ARRAY_AND_DTYPE_GLOBALS = [("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct")]


def allowed_globals() -> dict[tuple[str, str], object]:
    """Every global a network pickle may name, resolved as the reader resolves it."""
    reader = safe_pickle.DataUnpickler(io.BytesIO(), official.DATA_GLOBALS)
    names = [*official.DATA_GLOBALS, *ARRAY_AND_DTYPE_GLOBALS, ("torch", "float32")]
    return {name: reader.find_class(*name) for name in names}


def snapshot(obj: object) -> dict[str, object]:
    """What a pickle could change on ``obj``: its attributes, its function defaults and code."""
    target = getattr(obj, "__func__", obj)
    names = (
        "__defaults__",
        "__kwdefaults__",
        "__code__",
        "__name__",
        "__qualname__",
        "__module__",
        "__doc__",
    )
    attributes: dict[str, object] = {name: getattr(target, name, None) for name in names}
    attributes["__dict__"] = dict(vars(target)) if hasattr(target, "__dict__") else None
    return attributes


@pytest.fixture
def unchanged_globals():
    """Fails the test if reading changed any allowed global, the allow-list or the reader's opcode table."""
    before = {name: snapshot(obj) for name, obj in allowed_globals().items()}
    tables = dict(official.DATA_GLOBALS), dict(safe_pickle.DataUnpickler.dispatch)
    yield
    assert {name: snapshot(obj) for name, obj in allowed_globals().items()} == before
    assert (dict(official.DATA_GLOBALS), dict(safe_pickle.DataUnpickler.dispatch)) == tables


def assert_refused_fast(path: Path, reason: str) -> None:
    start = time.perf_counter()
    with pytest.raises(NetworkPickleError) as refusal:
        read_network_pickle(path)
    assert time.perf_counter() - start < 1.0
    assert str(path) in str(refusal.value) and re.search(reason, str(refusal.value)), str(refusal.value)
    assert refusal.value.__cause__ is None and refusal.value.__suppress_context__


class _Call:
    """Pickles as the call ``func(*args)``, with ``func`` written by its importable name."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def storage_bytes(tensor: torch.Tensor) -> bytes:
    """A storage as ``torch.storage._load_from_bytes`` receives it (the legacy ``torch.save`` format)."""
    buffer = io.BytesIO()
    torch.save(tensor._typed_storage(), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def tensor_pickle(storage: bytes, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    """A tensor pickled as torch pickles one, from explicit storage bytes, size and stride."""
    load = _Call(torch.storage._load_from_bytes, storage)
    return pickle.dumps(
        {"G": _Call(torch._utils._rebuild_tensor_v2, load, 0, size, stride, False, OrderedDict())}
    )


@pytest.mark.parametrize("name", list(allowed_globals()), ids="{0[0]}.{0[1]}".format)
def test_build_on_an_allowed_global_is_refused_and_changes_nothing(tmp_path, unchanged_globals, name):
    state = pickle.dumps(({"injected": True}, {"__name__": "renamed", "__defaults__": (None,)}), protocol=2)
    hostile = b"\x80\x02c" + f"{name[0]}\n{name[1]}\n".encode() + state[2:-1] + pickle.BUILD + pickle.STOP
    (tmp_path / "build.pkl").write_bytes(hostile)
    assert_refused_fast(tmp_path / "build.pkl", r"sets the state of a \w+")


def test_a_module_listing_the_same_child_twice_at_every_level_is_refused_at_once(
    tmp_path, reference_modules, unchanged_globals
):
    child = as_persistent(nn.Linear(1, 1))
    for _ in range(30):  # 2**30 paths (within the depth bound), a few kilobytes on disk
        child = _Persistent(
            {
                **child.meta,
                "state": {
                    **child.meta["state"],
                    "_parameters": {},
                    "_modules": OrderedDict(a=child, b=child),
                },
            }
        )  # each level its own (empty) parameter table: only the child is shared
    (tmp_path / "shared.pkl").write_bytes(pickle.dumps({"G": child, "D": child, "G_ema": child}))
    assert (tmp_path / "shared.pkl").stat().st_size < 16_000
    assert_refused_fast(
        tmp_path / "shared.pkl", r"module at '.*\bb' is the same object as the one at '.*\ba'"
    )


def test_a_chain_of_modules_thousands_deep_is_refused_at_once(tmp_path, reference_modules, unchanged_globals):
    chain = as_persistent(nn.Linear(1, 1))
    for _ in range(2000):
        chain = _Persistent(
            {**chain.meta, "state": {**chain.meta["state"], "_modules": OrderedDict(a=chain)}}
        )
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # pickle itself recurses to write the chain
    try:
        (tmp_path / "deep.pkl").write_bytes(pickle.dumps({"G": chain, "D": chain, "G_ema": chain}))
    finally:
        sys.setrecursionlimit(limit)
    assert_refused_fast(tmp_path / "deep.pkl", rf"nested more than {safe_pickle.MAX_DEPTH} deep")


@pytest.mark.parametrize(
    ("claim", "reason"),
    [
        ("storage", r"a storage claims 4398046511104 bytes but the pickle holds 20"),
        ("tensor", r"a tensor of size \(1099511627776,\) .* claims more than its storage of 3 elements"),
        ("bytes", r"truncated|EOFError"),
    ],
)
def test_size_claims_beyond_the_file_are_refused_before_anything_is_allocated(
    tmp_path, unchanged_globals, claim, reason
):
    storage = storage_bytes(torch.zeros(3))
    if claim == "storage":  # the storage record says 2**40 elements; 3 follow
        huge = pickle.LONG1 + bytes([6]) + (1 << 40).to_bytes(6, "little")
        hostile = tensor_pickle(storage.replace(b"K\x03Nt", huge + b"Nt", 1), (3,), (1,))
    elif claim == "tensor":  # a view of 2**40 elements on a storage of 3
        hostile = tensor_pickle(storage, (1 << 40,), (1,))
    else:  # a bytes object announced as 2**60 bytes long
        hostile = b"\x80\x04" + pickle.BINBYTES8 + (1 << 60).to_bytes(8, "little") + b"abc"
    (tmp_path / "claim.pkl").write_bytes(hostile)
    assert_refused_fast(tmp_path / "claim.pkl", reason)


CODE_EXECUTION = [(os.system, ("echo pwned",)), (eval, ("1",)), (exec, ("1",)), (getattr, ("text", "upper")),
                  (importlib.import_module, ("os",)), (subprocess.call, (["true"],))]  # fmt: skip


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("call", CODE_EXECUTION, ids=lambda call: call[0].__name__)
def test_code_execution_globals_are_refused_at_every_protocol(tmp_path, unchanged_globals, protocol, call):
    (tmp_path / "exec.pkl").write_bytes(pickle.dumps({"G": _Call(*call)}, protocol=protocol))
    assert_refused_fast(tmp_path / "exec.pkl", rf"refers to `[\w.]+\.{call[0].__name__}`.*never runs code")


def test_the_inst_opcode_of_protocol_0_is_refused(tmp_path, unchanged_globals):
    (tmp_path / "inst.pkl").write_bytes(b"(S'echo pwned'\nios\nsystem\n.")
    assert_refused_fast(tmp_path / "inst.pkl", r"refers to `os\.system`")


@pytest.mark.parametrize("protocol", [3, 4])  # Python's default protocols since 3.0 and 3.8
def test_network_pickles_with_numpy_values_read_at_the_default_protocols(
    tmp_path, reference_modules, protocol
):
    extra = {"mean": np.arange(6, dtype=np.float32).reshape(2, 3), "max_size": np.int64(50)}
    write_official_pickle(tmp_path / "net.pkl", protocol=protocol, training_set_extra=extra)
    kwargs = read_network_pickle(tmp_path / "net.pkl").training_set_kwargs
    np.testing.assert_array_equal(kwargs["mean"], extra["mean"])
    assert kwargs["max_size"] == 50 and kwargs["resolution"] == RESOLUTION


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


def test_copy_pickle_weights_copies_every_tensor_and_p_or_nothing(tmp_path, reference_modules):
    _, _, pickled_G_ema = write_official_pickle(tmp_path / "net.pkl", p=0.25)
    networks = read_network_pickle(tmp_path / "net.pkl")
    shapes = dict(resolution=RESOLUTION, channels=CHANNELS, num_classes=0)
    model = StyleGAN2ADA("tiny", config_overrides=networks.config_overrides, **shapes)
    modules = {"G": model.G, "D": model.D, "G_ema": model.G_ema}
    before = {key: {k: v.clone() for k, v in module.state_dict().items()} for key, module in modules.items()}
    last = list(networks.weights["D"])[-1]
    misfit = dict(networks.weights["D"], **{last: torch.zeros(networks.weights["D"][last].numel() + 1)})
    refused = dataclasses.replace(networks, weights={**networks.weights, "D": misfit})
    with pytest.raises(ValueError, match=rf"does not fit this model: D\.{re.escape(last)}: pickle"):
        copy_pickle_weights(modules, model.augment_pipe, refused, "net.pkl")
    for key, module in modules.items():  # nothing copied: not G, which comes before D's misfit
        for name, tensor in module.state_dict().items():
            torch.testing.assert_close(tensor, before[key][name], rtol=0, atol=0)
    assert float(model.augment_pipe.p) == 0

    copy_pickle_weights(modules, model.augment_pipe, networks, "net.pkl")
    for name, tensor in pickled_G_ema.state_dict().items():
        torch.testing.assert_close(model.G_ema.state_dict()[name], tensor, rtol=0, atol=0)
    assert float(model.augment_pipe.p) == pytest.approx(0.25)


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
