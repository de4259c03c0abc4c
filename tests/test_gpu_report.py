"""``benchmarks/gpu_report.py --dry-run``: every section of the GPU report runs on the CPU at tiny sizes.

The script is what a lent GPU will run (``python benchmarks/gpu_report.py --reference PATH``); the dry
run keeps it from rotting between GPU days. Run as a user runs it, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    assert {row["case"].split(",")[0] for row in rows if row["section"] == "sampling"} == {
        "KV cache",
        "full recompute",
    }

    markdown = (tmp_path / "report" / "gpu_report.md").read_text()
    assert "**Dry run**" in markdown and all(f"## {section} (" in markdown for section in SECTIONS)


def test_a_wrong_reference_path_is_an_error_naming_the_argument(tmp_path: Path) -> None:
    wrong = run_script("--dry-run", "--reference", str(tmp_path), cwd=tmp_path)
    assert wrong.returncode == 2
    assert "--reference" in wrong.stderr and "no training/augment.py" in wrong.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_without_a_gpu_the_script_points_to_dry_run(tmp_path: Path) -> None:
    completed = run_script("--sections", "sampling", cwd=tmp_path)
    assert completed.returncode == 2 and "--dry-run" in completed.stderr
