"""ScheduledAugmentation: a linear ramp of p over the strength callbacks' base (pipe, logs, checkpoints)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from test_callback_ada import MarkingPipe, ScriptedNative, TemplateGAN, Trajectory, loader, make_trainer

from lightning_genaug.callbacks import AdaptiveAugmentation, ScheduledAugmentation, scheduled_p


def always_confident(step: int) -> list[float]:
    """Scripted logits of one batch: r_t = 1 (the controller would raise p; the schedule must not care)."""
    return [1.0, 1.0, 1.0, 1.0]


def test_ramp_is_linear_then_flat() -> None:
    ramp = [scheduled_p(images, ramp_kimg=0.1, max_p=0.6) for images in (0, 25, 50, 100, 150)]
    assert ramp == pytest.approx([0.0, 0.15, 0.3, 0.6, 0.6])


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"ramp_kimg": 0.0, "max_p": 0.5}, ValueError, "ramp_kimg"),
        ({"ramp_kimg": 1.0, "max_p": 1.5}, ValueError, "max_p"),
        ({"ramp_kimg": 1.0, "max_p": 0.5, "every_n_batches": 0}, ValueError, "every_n_batches"),
    ],
)
def test_every_argument_is_checked_at_construction(kwargs: dict, error: type, name: str) -> None:
    with pytest.raises(error, match=name):
        ScheduledAugmentation(**kwargs)


def test_native_path_follows_the_ramp_whatever_rt_says(tmp_path: Path) -> None:
    # every_n_batches=2 at 4 images a batch: p set after batches 2, 4, 6, ... to 0.5 * 8k / 32 images.
    callback = ScheduledAugmentation(ramp_kimg=0.032, max_p=0.5, every_n_batches=2)
    trajectory = Trajectory(callback)
    make_trainer(tmp_path, [callback, trajectory]).fit(ScriptedNative(always_confident), loader(40))
    p = [point[0] for point in trajectory.points]
    assert p == pytest.approx([0.0, 0.125, 0.125, 0.25, 0.25, 0.375, 0.375, 0.5, 0.5, 0.5])
    assert trajectory.points[-1][1] == 1.0  # r_t measured and exposed, not steering p


def test_a_fresh_run_starts_at_zero_whatever_p_the_pipe_was_built_with(tmp_path: Path) -> None:
    module = ScriptedNative(always_confident)
    module.augment_pipe.set_p(0.4)
    callback = ScheduledAugmentation(ramp_kimg=1.0, max_p=0.5, every_n_batches=100)
    make_trainer(tmp_path, [callback], limit_train_batches=1).fit(module, loader(8))
    assert callback.p == 0.0


def test_foreign_path_ramps_the_pipe_it_installs_and_logs_p(tmp_path: Path) -> None:
    callback = ScheduledAugmentation(ramp_kimg=0.016, max_p=0.8, every_n_batches=2, pipe=MarkingPipe())
    logger = CSVLogger(tmp_path, name="log")
    make_trainer(tmp_path, [callback], logger=logger, log_every_n_steps=1).fit(TemplateGAN(), loader(16))
    assert callback.is_foreign and callback.p == pytest.approx(0.8)  # 16 images: the end of the ramp
    with open(Path(logger.log_dir) / "metrics.csv") as handle:
        logged = [float(row["ada/p"]) for row in csv.DictReader(handle) if row.get("ada/p")]
    assert logged == pytest.approx([0.0, 0.4, 0.4, 0.8])


def test_resume_continues_the_schedule_where_it_stopped(tmp_path: Path) -> None:
    """6 batches, checkpoint, 6 more equals 12 uninterrupted: the ramp position is in the checkpoint."""

    def make_callback() -> ScheduledAugmentation:
        return ScheduledAugmentation(ramp_kimg=0.1, max_p=1.0, every_n_batches=4)

    uninterrupted = make_callback()
    make_trainer(tmp_path, [uninterrupted], max_epochs=2, limit_train_batches=6).fit(
        ScriptedNative(always_confident), loader(24)
    )
    first = make_callback()
    trainer = make_trainer(tmp_path, [first], max_epochs=1, limit_train_batches=6)
    trainer.fit(ScriptedNative(always_confident), loader(24))
    trainer.save_checkpoint(tmp_path / "stop.ckpt")
    assert first.p == pytest.approx(0.16) and first.images_total == 16  # one update, at batch 4

    resumed = make_callback()
    make_trainer(tmp_path, [resumed], max_epochs=2, limit_train_batches=6).fit(
        ScriptedNative(always_confident), loader(24), ckpt_path=tmp_path / "stop.ckpt"
    )
    # Updates at batches 4, 8 and 12 (the interval 5-8 straddles the checkpoint): 48 images.
    assert resumed.images_total == uninterrupted.images_total == 48
    assert resumed.p == uninterrupted.p == pytest.approx(0.48)
    assert float(torch.as_tensor(resumed.pipe.p)) == pytest.approx(0.48)


def test_state_key_differs_from_the_adaptive_controllers() -> None:
    assert ScheduledAugmentation(ramp_kimg=1.0, max_p=0.5).state_key != AdaptiveAugmentation().state_key
