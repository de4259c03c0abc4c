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


# Optional or heavy modules that no part of the package imports before it uses them.
LAZY = ("wandb", "kornia", "sklearn", "litdata", "onnx", "onnxruntime", "onnxscript", "imageio")
LAZY += ("tensorboard",)
# What `import lightning` itself imports (lightning.fabric reads torchmetrics' version by importing it, and
# torchmetrics imports these): in `fit`, not in the commands that answer before torch.
LIGHTNING_IMPORTS = ("torch", "lightning", "torchmetrics", "torchvision", "torch_fidelity", "matplotlib")
LIGHTNING_IMPORTS += ("scipy",)


def modules_loaded_by(code: str) -> list[str]:
    """Those of ``LAZY`` and ``LIGHTNING_IMPORTS`` in ``sys.modules`` after ``code`` (a fresh process)."""
    names = LAZY + LIGHTNING_IMPORTS
    script = f"import sys\n{code}\nprint('loaded:', *(name for name in {names!r} if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1].split()[1:]


def test_the_package_and_the_top_level_help_import_neither_torch_nor_an_extra():
    code = (
        "import lightning_genaug, lightning_genaug.cli\n"
        "try:\n    lightning_genaug.cli.main(['--help'])\nexcept SystemExit as exit_info:\n"
        "    assert not exit_info.code"
    )
    assert modules_loaded_by(code) == []


def test_the_fit_parser_imports_no_extra():
    """Building ``fit``'s parser (all models, datamodules, callbacks) imports Lightning, not the extras."""
    code = (
        "from lightning_genaug.cli import main\n"
        "try:\n    main(['fit', '--help'])\nexcept SystemExit:\n    pass"
    )
    loaded = modules_loaded_by(code)
    assert [name for name in loaded if name in LAZY] == []
    assert {"torch", "lightning"} <= set(loaded)  # the check ran where it should


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
