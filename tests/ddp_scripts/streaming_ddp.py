"""Train StyleGAN2ADA (``tiny``) with AdaptiveAugmentation on 2 CPU processes (gloo) from a prepared
streaming directory; each rank writes the image indices it trained on, p before every batch and its
final weights.

Usage: ``python streaming_ddp.py CHUNKS_DIR OUT_DIR NUM_NODES``. ``NUM_NODES`` is 1 (one node with two
devices: Lightning's launcher starts rank 1) or 2 (two nodes with one device each: the caller starts
one process per node, with ``NODE_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in the environment).
The images encode their index in their pixels (``tests/streaming_data.py``). Run by
``tests/test_streaming_ddp.py`` in subprocesses, because Lightning's DDP launcher re-runs the
command line for rank 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for streaming_data

from streaming_data import image_indices  # noqa: E402

from lightning_genaug.augment import AugmentPipe  # noqa: E402
from lightning_genaug.callbacks import AdaptiveAugmentation  # noqa: E402
from lightning_genaug.data import StreamingImageDataModule, split_batch  # noqa: E402
from lightning_genaug.models.stylegan2 import StyleGAN2ADA  # noqa: E402

WORLD_SIZE = 2


class SeenImages(pl.Callback):
    """Records the index of every training image this rank receives, and p before each batch."""

    def __init__(self) -> None:
        self.indices: list[int] = []
        self.p: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.indices += image_indices(split_batch(batch)[0])
        self.p.append(float(pl_module.augment_pipe.p))


def main(chunks: str, out_dir: str, num_nodes: int) -> None:
    torch.set_num_threads(1)
    pl.seed_everything(0)
    seen = SeenImages()
    # p starts at 0.5 and moves by 4 * 2 / (0.1 * 1000) = 0.08 after every batch: no clamp in 4 batches.
    ada = AdaptiveAugmentation(every_n_batches=1, speed_kimg=0.1)
    trainer = pl.Trainer(
        accelerator="cpu",
        num_nodes=num_nodes,
        devices=WORLD_SIZE // num_nodes,
        strategy="ddp_find_unused_parameters_true",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[seen, ada],
    )
    model = StyleGAN2ADA("tiny", augment=AugmentPipe("bgc", p=0.5))
    trainer.fit(model, datamodule=StreamingImageDataModule(chunks, batch_size=4, num_workers=1))
    p = [*seen.p, float(model.augment_pipe.p)]
    result = {
        "indices": seen.indices,
        "p": p,
        "world_size": trainer.world_size,
        "node_rank": trainer.node_rank,
    }
    out = Path(out_dir)
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))
    torch.save(model.state_dict(), out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    if torch.distributed.is_initialized():  # gloo's threads otherwise may abort the interpreter at exit
        torch.distributed.destroy_process_group()
