"""StreamingImageDataModule under DDP: 2 CPU processes (gloo) train StyleGAN2ADA on disjoint shares of
the data and hold the same p. The training runs in a subprocess (``ddp_scripts/streaming_ddp.py``)
because Lightning's DDP launcher re-runs the command line for rank 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

from streaming_data import write_indexed_images

from lightning_genaug.data import prepare_dataset

SCRIPT = Path(__file__).parent / "ddp_scripts" / "streaming_ddp.py"
COUNT, RANKS, BATCH = 32, 2, 4


def test_two_ranks_see_disjoint_data_and_the_same_p(tmp_path: Path) -> None:
    write_indexed_images(tmp_path / "images", COUNT)
    prepare_dataset(tmp_path / "images", tmp_path / "chunks", resolution=8, workers=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "chunks"), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(RANKS)]

    assert [result["world_size"] for result in results] == [RANKS, RANKS]
    first, second = (result["indices"] for result in results)
    assert len(first) == len(second) == COUNT // RANKS  # an equal share each: no rank waits on the other
    assert not set(first) & set(second)  # disjoint
    assert sorted(first + second) == list(range(COUNT))  # together: the whole set, once
    trajectory = results[0]["p"]
    assert results[1]["p"] == trajectory  # p identical on both ranks before every batch and at the end
    steps = [after - before for before, after in pairwise(trajectory)]
    assert len(steps) == 4 and all(abs(abs(step) - 0.08) < 1e-6 for step in steps)  # adapted each batch
