"""``benchmarks/gpu_report.py --dry-run``: every section of the GPU report runs on the CPU at tiny sizes.

The script is what a lent GPU will run (``python benchmarks/gpu_report.py --reference PATH``); the dry
run keeps it from rotting between GPU days. The dry run goes as a user runs it, in a subprocess; the
argument checks call its ``main`` in this process (they stop before any work).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_report.py"
SECTIONS = {"augment", "stylegan2", "compile", "attention", "sampling"}


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_dry_run_measures_every_section_and_skips_the_absent_reference(tmp_path: Path) -> None:
    completed = run_script("--dry-run", "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]

    report = json.loads((tmp_path / "report" / "gpu_report.json").read_text())
    assert report["dry_run"] is True and set(report["seconds"]) == SECTIONS
    rows = report["rows"]
    assert {row["section"] for row in rows} == SECTIONS
    ours = [row for row in rows if not row["case"].startswith("reference")]
    assert all(row["value"] > 0 and row["peak_memory_mib"] is None for row in ours)  # CPU: no GPU memory
    references = [row for row in rows if row["case"].startswith("reference")]
    assert references and all(row["value"] is None and "no --reference" in row["note"] for row in references)
    ours_steps = [row["case"] for row in ours if row["section"] == "stylegan2"]
    for precision in ("float32", "bf16 autocast", "float16 blocks"):  # each in both memory layouts
        assert {
            layout for layout in ("NHWC", "NCHW") if any(precision in c and layout in c for c in ours_steps)
        } == {
            "NHWC",
            "NCHW",
        }
    assert {row["case"].split(",")[0] for row in rows if row["section"] == "sampling"} == {
        "KV cache",
        "full recompute",
    }

    markdown = (tmp_path / "report" / "gpu_report.md").read_text()
    assert "**Dry run**" in markdown and all(f"## {section} (" in markdown for section in SECTIONS)


@pytest.fixture(scope="module")
def gpu_report() -> Iterator[ModuleType]:
    """The script as a module (it puts ``benchmarks/`` on the path for its sibling scripts)."""
    path, modules = list(sys.path), set(sys.modules)
    spec = importlib.util.spec_from_file_location("gpu_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_report"] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def test_a_wrong_reference_path_is_an_error_naming_the_argument(
    gpu_report: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_report.main(["--dry-run", "--reference", str(tmp_path), "--out", str(tmp_path / "report")])
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "--reference" in stderr and "no training/augment.py" in stderr
    assert not (tmp_path / "report").exists()  # refused before any work


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_without_a_gpu_the_script_points_to_dry_run(
    gpu_report: ModuleType, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        gpu_report.main(["--sections", "sampling"])
    assert exit_info.value.code == 2 and "--dry-run" in capsys.readouterr().err
