"""Data loading at scale: images/s and peak memory of in-memory, lazy folder, lazy zip and litdata.

Generates ``--count`` synthetic photograph-like RGB PNGs (smooth random colour fields plus mild
noise, so they compress like photos, not like noise; 500 distinct images whose bytes repeat over
the files) at 256x256 and at 32x32 under ``--root``
(never in the repository), zips each folder (stored, like the reference's dataset zips), converts
each with ``prepare`` (timed: images/s), then measures every mode in a fresh subprocess:

* ``setup_s``: time to build the training dataset (the in-memory mode decodes everything here);
* ``images_per_s``: images per second the train DataLoader delivers (``--workers`` workers, batch
  ``--batch``), after ``--warmup`` batches, over ``--batches`` batches;
* ``peak_rss_gb`` / ``peak_pss_gb``: the largest total over the process and its DataLoader workers
  while loading, sampled every 50 ms. RSS counts pages shared between forked workers once per
  process; PSS splits them (the honest total). Both include the interpreter, torch and Lightning
  (about 0.5 GB PSS before any data, see ``baseline``);
* ``train_steps_s`` / ``train_peak_pss_gb``: seconds and peak PSS for ``--train-steps`` batches of
  ``--train-batch`` images through ``StyleGAN2ADA("tiny")`` and ``Trainer.fit`` with a DataModule of
  the same mode (the set trains, with bounded memory; the model's own activations are included).

Usage::

    python benchmarks/data_loaders.py --root /tmp/genaug-bench             # 10,000 images per set
    python benchmarks/data_loaders.py --root /tmp/genaug-bench --count 500  # quick
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

MODES = ("in-memory", "lazy-folder", "lazy-zip", "litdata")


# ----------------------------------------------------------------------------- memory of a process tree
def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue += _children(current)
    return pids


def _memory_kb(pid: int) -> tuple[int, int]:
    """``(RSS, PSS)`` of one process in kB (0, 0 when it has exited)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
        )
    except OSError:
        return 0, 0
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


class PeakMemory:
    """Samples the summed RSS and PSS of this process and its descendants in a background thread."""

    def __init__(self, period_s: float = 0.05) -> None:
        self.period_s, self.peak_rss_kb, self.peak_pss_kb = period_s, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            totals = [_memory_kb(pid) for pid in _tree(os.getpid())]
            self.peak_rss_kb = max(self.peak_rss_kb, sum(rss for rss, _ in totals))
            self.peak_pss_kb = max(self.peak_pss_kb, sum(pss for _, pss in totals))
            time.sleep(self.period_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------- data sets
def photo_like(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 image: a smooth random colour field (bicubic 8x8 grid) plus noise."""
    from PIL import Image

    coarse = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    field = np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.float32)
    return (field + rng.normal(0, 3, field.shape)).clip(0, 255).astype(np.uint8)


def make_sets(root: Path, count: int, size: int, unique: int = 500) -> dict[str, Path]:
    """Folder (10 class sub-folders), zip and litdata chunks of ``count`` images; reused when present.

    ``unique`` distinct images are generated (PNG encoding is slow on a loaded 2-core VM) and the
    other files repeat their bytes: every file is still read and decoded on its own.
    """
    from PIL import Image

    from lightning_genaug.data import prepare_dataset

    folder, archive, chunks = root / f"folder{size}", root / f"images{size}.zip", root / f"chunks{size}"
    if not (folder / "done").exists():
        rng = np.random.default_rng(size)
        encoded = []
        for _ in range(min(unique, count)):
            buffer = io.BytesIO()
            Image.fromarray(photo_like(rng, size)).save(buffer, format="png", compress_level=1)
            encoded.append(buffer.getvalue())
        for i in range(count):
            target = folder / f"class{i % 10}"
            target.mkdir(parents=True, exist_ok=True)
            (target / f"{i:06d}.png").write_bytes(encoded[i % len(encoded)])
        (folder / "done").write_text("")
    if not archive.exists():
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for file in sorted(folder.rglob("*.png")):
                zf.write(file, file.relative_to(folder).as_posix())
    if not chunks.exists():
        start = time.perf_counter()
        prepare_dataset(folder, chunks, resolution=size, workers=2)
        seconds = time.perf_counter() - start
        timings = {"prepare_s": seconds, "prepare_images_per_s": count / seconds}
        (root / f"prepare{size}.json").write_text(json.dumps(timings))
        print(f"prepare {size}: {count / seconds:.0f} images/s ({seconds:.0f} s, 2 workers)", flush=True)
    return {"folder": folder, "zip": archive, "chunks": chunks}


# ----------------------------------------------------------------------------- one measurement
def build_datamodule(mode: str, sets: dict[str, Path], args: argparse.Namespace, batch_size: int):
    from lightning_genaug.data import ImageDataModule, StreamingImageDataModule

    common = dict(batch_size=batch_size, num_workers=args.workers)
    if mode == "litdata":
        return StreamingImageDataModule(str(sets["chunks"]), **common)
    source = sets["zip"] if mode == "lazy-zip" else sets["folder"]
    return ImageDataModule(source, in_memory=mode == "in-memory", **common)


def measure(mode: str, size: int, args: argparse.Namespace) -> dict[str, float]:
    import lightning.pytorch as pl
    import torch

    from lightning_genaug.models.stylegan2 import StyleGAN2ADA

    torch.set_num_threads(1)
    sets = {"folder": args.root / f"folder{size}", "zip": args.root / f"images{size}.zip"}
    sets["chunks"] = args.root / f"chunks{size}"
    baseline = _memory_kb(os.getpid())[1] / 2**20
    with PeakMemory() as memory:
        start = time.perf_counter()
        datamodule = build_datamodule(mode, sets, args, args.batch)
        datamodule.setup("fit")
        loader = datamodule.train_dataloader()
        setup_s = time.perf_counter() - start
        batches = iter(loader)
        for _ in range(args.warmup):
            next(batches)
        start = time.perf_counter()
        images = sum(len(next(batches)[0]) for _ in range(args.batches))
        images_per_s = images / (time.perf_counter() - start)
        del batches, loader, datamodule
    with PeakMemory() as train_memory:
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=2 * args.train_steps,  # G and D each step once per batch
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=args.root / "trainer",
        )
        start = time.perf_counter()
        trainer.fit(StyleGAN2ADA("tiny"), datamodule=build_datamodule(mode, sets, args, args.train_batch))
        train_steps_s = time.perf_counter() - start
    return {
        "baseline_pss_gb": baseline,
        "setup_s": setup_s,
        "images_per_s": images_per_s,
        "peak_rss_gb": memory.peak_rss_kb / 2**20,
        "peak_pss_gb": memory.peak_pss_kb / 2**20,
        "train_steps_s": train_steps_s,
        "train_peak_pss_gb": train_memory.peak_pss_kb / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, required=True, help="where the generated sets go (not the repo)")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 32])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--train-steps", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], int(args.measure[1]), args)))
        return
    args.root.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in args.sizes:
        make_sets(args.root, args.count, size)
        results[f"prepare{size}"] = json.loads((args.root / f"prepare{size}.json").read_text())
        for mode in args.modes:
            command = [sys.executable, __file__, *sys.argv[1:], "--measure", mode, str(size)]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[f"{mode}@{size}"] = json.loads(output.strip().splitlines()[-1])
            print(f"{mode:>12} {size:>3}px: {results[f'{mode}@{size}']}", flush=True)
    (args.root / "results.json").write_text(json.dumps(results, indent=2))
    print(
        "| mode | size | setup s | images/s | loading: peak RSS GB | peak PSS GB | "
        f"{args.train_steps} train steps s | training: peak PSS GB |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, row in results.items():
        if "@" in key:
            mode, size = key.split("@")
            print(
                f"| {mode} | {size} | {row['setup_s']:.1f} | {row['images_per_s']:.0f} | "
                f"{row['peak_rss_gb']:.2f} | {row['peak_pss_gb']:.2f} | {row['train_steps_s']:.1f} | "
                f"{row['train_peak_pss_gb']:.2f} |"
            )


if __name__ == "__main__":
    main()
