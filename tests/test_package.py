"""The package itself: fast import, lazy public names, no heavy optional dependency at import."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import lightning_genaug


def test_import_is_fast_and_pulls_in_no_heavy_extras():
    code = (
        "import sys, time; start = time.perf_counter(); import lightning_genaug; "
        "elapsed = time.perf_counter() - start; "
        "print(elapsed, 'wandb' in sys.modules, 'torch_fidelity' in sys.modules)"
    )
    start = time.perf_counter()
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert time.perf_counter() - start < 10  # interpreter start-up included, on a loaded CI machine
    elapsed, wandb_loaded, fidelity_loaded = output.split()
    assert float(elapsed) < 3.0
    assert wandb_loaded == "False" and fidelity_loaded == "False"


@pytest.mark.parametrize("name", lightning_genaug._EXPORTS)
def test_every_public_name_resolves(name: str):
    exported = getattr(lightning_genaug, name)
    assert exported.__name__ == name


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        lightning_genaug.Nope  # noqa: B018


@pytest.mark.parametrize("subpackage", ["augment", "callbacks", "data", "metrics", "models", "regularizers"])
def test_every_subpackage_exports_its_public_names(subpackage: str):
    """`from lightning_genaug.callbacks import AdaptiveAugmentation` (the Lightning habit) works."""
    import importlib

    module = importlib.import_module(f"lightning_genaug.{subpackage}")
    assert module.__all__
    for name in module.__all__:
        assert getattr(module, name) is not None, name


@pytest.mark.parametrize("name", lightning_genaug._EXPORTS)
def test_every_top_level_name_is_also_exported_by_its_subpackage(name: str):
    subpackage = lightning_genaug._EXPORTS[name].split(".")[1]
    module = __import__(f"lightning_genaug.{subpackage}", fromlist=[name])
    assert getattr(module, name) is getattr(lightning_genaug, name)
