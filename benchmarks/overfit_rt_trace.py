"""What ADA's controller sees: its heuristic's reading per controller step, beside D's over-fitting.

Continues a finished (or interrupted) GAN job of an over-fitting experiment for a few kimg, from its
checkpoint, in a scratch folder (the experiment's own files are only read). After every controller
step it records the reading the controller's heuristic took (``rt``: its ``every_n_batches`` batches of
augmented reals; ``rt_clean``: clean reals; ``rv``, ``gap``: the held-out window), the controller's r_t, p,
E[sign(D(x))] over the whole training subset, augmented as in training and clean, and D's gap: its mean
output on the clean training subset minus that on the held-out reals. The question it answers: does
the heuristic read the memorisation that D's gap shows?

Usage::

    python benchmarks/overfit_rt_trace.py --out runs/cifar-overfit --arm ada --seed 0 --kimg 3

Prints one line per controller step and the means; writes ``rt_trace.json`` to ``--scratch``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import lightning.pytorch as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overfit  # noqa: E402
from overfit_data import DEFAULT_CIFAR_ROOT  # noqa: E402
from overfit_probe import discriminator_mean  # noqa: E402

from lightning_genaug.callbacks import AdaptiveAugmentation, training_progress  # noqa: E402
from lightning_genaug.images import from_uint8  # noqa: E402


class RtTrace(pl.Callback):
    """After each controller step: the controller's reading, r_t and p; r_t over the training ``images``
    (augmented, clean); D's gap, its mean output on ``images`` minus that on ``heldout``."""

    def __init__(self, images, labels, heldout, heldout_labels) -> None:
        self.images, self.labels = images, labels
        self.heldout, self.heldout_labels = heldout, heldout_labels
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        (controller,) = [c for c in trainer.callbacks if isinstance(c, AdaptiveAugmentation)]
        if training_progress(trainer).batches % controller.every_n_batches:
            return  # the controller did not step after this batch
        reading = getattr(controller, controller.reading)
        self.rows.append(
            {
                "kimg": pl_module.cur_nimg.item() / 1000,
                "heuristic": controller.reading,
                "target": controller.target,
                "controller_reading": float("nan") if reading is None else reading,
                "controller_rt": controller.rt,
                "p": controller.p,
                "d_gap": discriminator_mean(pl_module, self.images, self.labels, augment=False)
                - discriminator_mean(pl_module, self.heldout, self.heldout_labels, augment=False),
                "subset_rt_augmented": discriminator_mean(
                    pl_module, self.images, self.labels, augment=True, sign=True
                ),
                "subset_rt_clean": discriminator_mean(
                    pl_module, self.images, self.labels, augment=False, sign=True
                ),
            }
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the experiment folder (read only)")
    parser.add_argument("--setting", choices=("cifar-overfit",), default="cifar-overfit")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_CIFAR_ROOT)
    parser.add_argument("--arm", default="ada")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kimg", type=float, default=3.0, help="kimg to continue for")
    parser.add_argument("--scratch", type=Path, default=Path("runs/rt_trace"))
    parser.add_argument("--quick", action="store_true", help="the experiment was run with --quick")
    args = parser.parse_args(argv)

    name = f"gan-{args.arm}-seed{args.seed}"
    source = args.out / "checkpoints" / f"{name}.ckpt"
    if not source.is_file():
        parser.error(f"no checkpoint {source}: run the experiment's {args.arm} seed {args.seed} job first")
    (args.scratch / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copy(source, args.scratch / "checkpoints" / source.name)
    shutil.copy(args.out / "extractor.pt", args.scratch / "extractor.pt")
    job = json.loads((args.out / "jobs" / f"{name}.json").read_text())
    start_kimg = job["history"][-1]["kimg"]

    setting = overfit.cifar_overfit_setting(args.data_root, quick=args.quick)
    setting = replace(setting, kimg=start_kimg + args.kimg, eval_kimg=start_kimg + args.kimg)
    overfit._one_thread()
    reals, _ = overfit.prepare_reals(setting, args.scratch)
    trace = RtTrace(
        from_uint8(reals.images[reals.train_index]),
        reals.labels[reals.train_index],
        from_uint8(reals.images[reals.heldout_index]),
        reals.labels[reals.heldout_index],
    )
    overfit.run_gan_job(args.arm, args.seed, setting, reals, args.scratch, extra_callbacks=[trace])
    heuristic, target = trace.rows[0]["heuristic"], trace.rows[0]["target"]

    print(f"kimg     reading ({heuristic})  controller r_t  subset r_t (aug.)  subset r_t (clean)  D gap  p")
    for row in trace.rows:
        print(
            f"{row['kimg']:7.2f}  {row['controller_reading']:15.3f}  {row['controller_rt']:14.3f}  "
            f"{row['subset_rt_augmented']:17.3f}  {row['subset_rt_clean']:18.3f}  {row['d_gap']:5.2f}  "
            f"{row['p']:.3f}"
        )
    summary = {
        key: statistics.fmean(row[key] for row in trace.rows)
        for key in ("controller_reading", "controller_rt", "subset_rt_augmented", "subset_rt_clean", "d_gap")
    }
    summary |= {"steps": len(trace.rows), "p_start": trace.rows[0]["p"], "p_end": trace.rows[-1]["p"]}
    summary["heuristic"] = heuristic
    summary["share_of_steps_above_target"] = statistics.fmean(
        float(row["controller_reading"] > target) for row in trace.rows
    )
    print(json.dumps(summary, indent=1))
    report = {"summary": summary, "rows": trace.rows}
    (args.scratch / "rt_trace.json").write_text(json.dumps(report, indent=1))
    return summary


if __name__ == "__main__":
    main()
