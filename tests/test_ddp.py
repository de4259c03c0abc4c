"""Plain ``strategy="ddp"`` trains our GANs on 2 CPU processes (gloo), without ``find_unused_parameters``.

Each backward of a GAN reaches one network; the modules average only that network's gradients
(``lightning_genaug.distributed``), so Lightning's whole-module reducer never waits for the other
one. The training runs in a subprocess (``ddp_scripts/gan_ddp.py``) because Lightning's DDP
launcher re-runs the command line for rank 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ddp_processes import Script, run_scripts

pytestmark = pytest.mark.slow  # two training processes, each importing Lightning

SCRIPT = Path(__file__).parent / "ddp_scripts" / "gan_ddp.py"
RUNS = ("stylegan2:ddp", "scalegan:ddp", "stylegan2:ddp_find_unused_parameters_true")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    run_scripts(Script(SCRIPT, [str(out), *RUNS], out))
    return out


def read_ranks(out: Path, name: str) -> list[dict]:
    return [json.loads((out / f"{name}-rank{rank}.json").read_text()) for rank in range(2)]


@pytest.mark.parametrize("run", RUNS)
def test_both_ranks_train_every_phase_and_end_with_identical_weights_and_p(results: Path, run: str) -> None:
    rank0, rank1 = read_ranks(results, run.replace(":", "-"))
    assert rank0["num_batches"] == rank1["num_batches"] == 4
    assert rank0["kimg"] == pytest.approx(4 * 2 * 8 / 1000)  # the global batch counts both ranks
    assert rank0["moved"] == rank1["moved"] == {"G": True, "D": True}
    assert rank0["digests"] == rank1["digests"]  # gradients were averaged: the ranks saw different data
    assert rank0["p"] == rank1["p"] != rank0["initial_p"]  # the controller ran and the ranks agree
    assert rank0["first_latents"] != rank1["first_latents"]  # each rank generates its own images


def test_find_unused_parameters_changes_nothing_but_the_cost(results: Path) -> None:
    plain = read_ranks(results, "stylegan2-ddp")[0]
    find_unused = read_ranks(results, "stylegan2-ddp_find_unused_parameters_true")[0]
    assert plain["digests"] == find_unused["digests"]


def test_average_gradients_treats_a_missing_gradient_as_zero_and_keeps_none_when_absent_everywhere(
    results: Path,
) -> None:
    for rank in read_ranks(results, "average"):
        assert rank["both"] == [1.5, 3.0]
        assert rank["rank1_only"] == [2.0, 3.0]  # (0 + [4, 6]) / 2
        assert rank["unused"] is None  # Adam skips it, as on one process
        assert rank["loss"] == 0.5
