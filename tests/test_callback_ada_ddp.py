"""AdaptiveAugmentation under DDP: 2 CPU processes (gloo) agree on p, and p equals the single-process
computation on the signs of both ranks, under ``ddp_find_unused_parameters_true`` (a GAN written like
Lightning's example) and plain ``ddp`` (the GAN syncs per network); the held-out readings are reduced over
both ranks. The training runs in a subprocess (``ddp_scripts/ada_ddp.py``, with ``heldout_ddp.py``)
because Lightning's DDP launcher re-runs the command line for rank 1; the script runs every case of this
file in one pair of processes (a module fixture), since starting two interpreters costs more than the
training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ddp_processes import Script, run_scripts

from lightning_genaug.callbacks.ada import next_p

pytestmark = pytest.mark.slow  # two training processes, each importing Lightning

SCRIPT = Path(__file__).parent / "ddp_scripts" / "ada_ddp.py"
RANKS, BATCH, BATCHES_PER_RANK, INTERVAL, SPEED_KIMG = 2, 4, 8, 2, 0.05
STRATEGIES = ["ddp_find_unused_parameters_true", "ddp"]
HEURISTICS = ["gap", "rv", "auto"]


def rank_results(folder: Path, case: str) -> list[dict]:
    return [json.loads((folder / f"rank{rank}-{case}.json").read_text()) for rank in range(RANKS)]


def scripted_signs() -> list[int]:
    """Signs of D on each image: all +1 on rank 0's images, a mixed pattern on rank 1's.

    The script gives rank ``r`` the images ``r, r + 2, r + 4, ...`` in order. Alone, rank 0 would
    always see r_t = 1 and rank 1 a varying r_t: only the all-reduce makes them agree.
    """
    rank1 = [1, 1, 1, 1, -1, -1, -1, -1, 1, -1, -1, -1, 1, 1, 1, -1] * 2  # 32 images, 8 batches
    signs = []
    for rank1_sign in rank1:
        signs += [1, rank1_sign]
    return signs


def single_process_p(signs: list[int]) -> float:
    """The controller run by hand: r_t measured on the last batch of each interval of both ranks."""
    p = 0.0
    for measured_batch in range(INTERVAL - 1, BATCHES_PER_RANK, INTERVAL):
        measured = [
            signs[rank + RANKS * (measured_batch * BATCH + j)] for rank in range(RANKS) for j in range(BATCH)
        ]
        images_in_interval = RANKS * INTERVAL * BATCH
        p = next_p(
            p, sum(measured) / len(measured), images_in_interval, target=0.6, speed_kimg=SPEED_KIMG, max_p=1.0
        )
    return p


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case of this file, one after the other in one pair of processes."""
    folder = tmp_path_factory.mktemp("ada-ddp")
    (folder / "signs.json").write_text(json.dumps(scripted_signs()))
    args = [str(folder / "signs.json"), str(folder), ",".join(STRATEGIES), ",".join(HEURISTICS)]
    run_scripts(Script(SCRIPT, args, folder))
    return folder


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_ranks_hold_the_same_p_as_one_process_on_their_signs(ddp_runs: Path, strategy: str) -> None:
    results = rank_results(ddp_runs, strategy)

    expected = single_process_p(scripted_signs())
    assert 0.0 < expected < 1.0  # the trajectory moves both ways without hitting a clamp at the end
    # p has one home, the pipe's float32 buffer: the callback reports that value on every rank.
    assert results[0]["p"] == results[1]["p"] == results[0]["pipe_p"] == results[1]["pipe_p"]
    assert results[0]["p"] == pytest.approx(expected, abs=1e-6)
    assert results[0]["rt"] == results[1]["rt"]


@pytest.mark.parametrize("heuristic", ["gap", "rv"])
def test_two_ranks_read_held_out_heuristics_together_and_hold_one_p(ddp_runs: Path, heuristic: str):
    """Rank 0 alone reads a gap of 1 (r_v 1/3), rank 1 alone 2 (r_v 2/5): below and above the target.
    Summed over ranks in the step's one reduction: gap 1.5, r_v 1.5 / 4, above it, so p rises on both."""
    results = rank_results(ddp_runs, heuristic)
    assert results[0] == results[1]
    assert results[0]["reading"] == heuristic
    assert results[0]["gap"] == pytest.approx(1.5)
    assert results[0]["rv"] == (pytest.approx(1.5 / 4) if heuristic == "rv" else None)
    assert results[0]["p"] == pytest.approx(0.5 + 4 * 16 / 200)  # 4 steps of 16 images, speed 0.2 kimg


def test_auto_picks_the_held_out_gap_on_every_rank_and_holds_one_p(ddp_runs: Path) -> None:
    """With DiffAugment chained and reals held out on both ranks, ``auto`` holds the gap (target 0.5)."""
    results = rank_results(ddp_runs, "auto")
    assert results[0] == results[1]
    assert results[0]["reading"] == "gap"
    assert results[0]["gap"] == pytest.approx(1.5)  # both ranks' scores, reduced
    assert results[0]["p"] == pytest.approx(0.5 + 4 * 16 / 200)
