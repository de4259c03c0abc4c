"""StreamingImageDataModule under DDP on 2 CPU processes (gloo), on one node and on two.

StyleGAN2ADA trains from a streaming directory on one node with two devices (Lightning's launcher
starts rank 1) and on two simulated nodes with one device each (two processes started here with
``NODE_RANK`` 0 and 1, the master on the loopback address). Each run happens in subprocesses
(``ddp_scripts/streaming_ddp.py``) because Lightning's DDP launcher re-runs the command line for
rank 1; the two runs go side by side.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from ddp_processes import Script, free_loopback_ports, run_scripts
from streaming_data import write_indexed_images

from lightning_genaug.data import prepare_dataset

pytestmark = pytest.mark.slow  # four training processes, each importing Lightning

SCRIPT = Path(__file__).parent / "ddp_scripts" / "streaming_ddp.py"
COUNT, RANKS = 32, 2
# Per-rank running averages, not synchronised (as in the reference, whose DDP consistency check
# skips ``w_avg``): the tracked mean of W and the path-length EMA of each rank's own latents.
RANK_LOCAL_BUFFERS = {"G.mapping.w_avg", "G_ema.mapping.w_avg", "pl_mean"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """``{"one node": ranks, "two nodes": ranks}``, each rank's indices, p, node rank and state dict."""
    root = tmp_path_factory.mktemp("streaming_ddp")
    write_indexed_images(root / "images", COUNT)
    chunks = root / "chunks"
    prepare_dataset(root / "images", chunks, resolution=8, workers=1, chunk_bytes="2KB")  # 4 chunks
    # litdata counts nodes as world size / GPUs per node; without GPUs it is told (NNODES): its
    # node-aware chunk assignment runs as on a cluster.
    one_node_port, two_nodes_port = free_loopback_ports(2)
    run_scripts(
        Script(SCRIPT, [str(chunks), str(root / "one_node"), "1"], root / "one_node", one_node_port),
        *(
            Script(
                SCRIPT,
                [str(chunks), str(root / f"two_nodes_{rank}"), "2"],
                root / f"two_nodes_{rank}",
                two_nodes_port,
                env={"NODE_RANK": str(rank), "NNODES": "2"},
            )
            for rank in range(2)
        ),
    )
    outs = {"one node": [root / "one_node"] * RANKS, "two nodes": [root / f"two_nodes_{n}" for n in range(2)]}
    return {
        run: [
            {
                **json.loads((out / f"rank{rank}.json").read_text()),
                "state": torch.load(out / f"rank{rank}.pt", weights_only=True),
            }
            for rank, out in enumerate(folders)
        ]
        for run, folders in outs.items()
    }


@pytest.mark.parametrize("run", ["one node", "two nodes"])
def test_two_ranks_see_disjoint_data_hold_the_same_p_and_end_with_the_same_weights(
    runs: dict[str, list[dict]], run: str
) -> None:
    results = runs[run]
    assert [result["world_size"] for result in results] == [RANKS, RANKS]
    assert [result["node_rank"] for result in results] == ([0, 0] if run == "one node" else [0, 1])
    first, second = (result["indices"] for result in results)
    assert len(first) == len(second) == COUNT // RANKS  # an equal share each: no rank waits on the other
    assert not set(first) & set(second)  # disjoint
    assert sorted(first + second) == list(range(COUNT))  # together: the whole set, once
    trajectory = results[0]["p"]
    assert results[1]["p"] == trajectory  # p identical on both ranks before every batch and at the end
    steps = [after - before for before, after in pairwise(trajectory)]
    assert len(steps) == 4 and all(abs(abs(step) - 0.08) < 1e-6 for step in steps)  # adapted each batch
    rank0, rank1 = (result["state"] for result in results)
    assert rank0.keys() == rank1.keys()
    differ = {name for name in rank0 if not torch.equal(rank0[name], rank1[name])}
    assert differ <= RANK_LOCAL_BUFFERS  # every weight (G, D, G_ema) and p: identical


def test_two_nodes_of_one_device_train_exactly_like_one_node_with_two(runs: dict[str, list[dict]]) -> None:
    for one_node, two_nodes in zip(runs["one node"], runs["two nodes"], strict=True):
        assert two_nodes["indices"] == one_node["indices"]
        assert two_nodes["p"] == one_node["p"]
        assert two_nodes["state"].keys() == one_node["state"].keys()
        for name, value in one_node["state"].items():
            assert torch.equal(two_nodes["state"][name], value), name
