"""benchmarks/limited_data.py's CIFAR-10 setting, job resumption, the report and Inception FID (the
digits settings are in test_limited_data.py; two files, so that the two test workers share them)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest


def test_cifar_overfit_quick_runs_on_zips_in_the_cifar_layout(limited_data, cifar_zips: Path, tmp_path: Path):
    root = cifar_zips
    out = tmp_path / "out"
    summary = limited_data.main(
        ["--setting", "cifar-overfit", "--quick", "--data-root", str(root), "--out", str(out)]
        + ["--arms", "ada", "--distaug-arms", "rotation"]
    )
    setting = summary["setting"]
    assert setting["dataset"] == "cifar10" and setting["config"] == "cifar"
    assert dict(setting["config_overrides"])["channel_max"] == 16  # the quick width; the real run's is 64
    assert list(summary["gan"]) == ["ada"] and list(summary["distaug"]) == ["rotation"]
    floor = summary["noise_floor"]
    # the classifier is trained on the test zip and scored on the train zip (all reals of the FID)
    assert 0 <= floor["extractor_accuracy"] <= 1 and 0 <= floor["extractor_training_accuracy"] <= 1
    job = json.loads((out / "jobs" / "gan-ada-seed1.json").read_text())
    for point in job["history"]:
        assert {"fid_full", "fid_train", "kid_full", "d_train", "d_heldout", "rt", "p"} <= set(point)
    assert job["resumes"] == 0
    assert (out / "checkpoints" / "gan-ada-seed1.ckpt").stat().st_size > 0  # the after-training tools' input
    grid = __import__("PIL.Image").Image.open(out / "samples" / "ada-seed0.png")
    assert grid.size == (10 * 33 + 1, 10 * 33 + 1)  # 10 x 10 photos of 32x32, 1-pixel padding
    distaug_job = json.loads((out / "jobs" / "distaug-rotation-seed0.json").read_text())
    assert all(0 < point["val"] < 8.5 for point in distaug_job["history"])
    assert (out / "samples" / "training-images.png").is_file()

    # a long experiment can be reported while it runs: finished jobs only, nothing trained
    finished = sorted(path.stat().st_mtime_ns for path in (out / "jobs").iterdir())
    partial = limited_data.main(
        ["--setting", "cifar-overfit", "--quick", "--data-root", str(root), "--out", str(out)]
        + ["--arms", "ada", "fixed-p0.2", "--distaug-arms", "rotation", "--report-only"]
    )
    assert list(partial["gan"]) == ["ada"] and partial["gan"]["ada"]["seeds"] == 2
    assert sorted(path.stat().st_mtime_ns for path in (out / "jobs").iterdir()) == finished

    # what ADA's controller saw, continued from the finished job in a scratch folder
    import overfit_rt_trace

    scratch = tmp_path / "trace"
    trace = overfit_rt_trace.main(
        ["--out", str(out), "--data-root", str(root), "--quick", "--kimg", "0.125", "--scratch", str(scratch)]
    )
    rows = json.loads((scratch / "rt_trace.json").read_text())["rows"]
    assert trace["steps"] == len(rows) == 1  # 4 batches of 32: one controller step
    for row in rows:
        assert -1 <= row["controller_rt"] <= 1 and 0 <= row["p"] <= 1
        assert -1 <= row["subset_rt_augmented"] <= 1 and -1 <= row["subset_rt_clean"] <= 1
        assert (row["heuristic"], row["target"]) == ("rt", 0.6)  # the ada arm's controller
        assert row["controller_reading"] == row["controller_rt"] and math.isfinite(row["d_gap"])
    assert rows[0]["kimg"] > job["history"][-1]["kimg"]  # continued past the job's end
    assert sorted(path.stat().st_mtime_ns for path in (out / "jobs").iterdir()) == finished  # read only


def test_missing_cifar_zips_name_the_option(limited_data, tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        limited_data.main(["--setting", "cifar-overfit", "--quick", "--data-root", str(tmp_path)])
    error = capsys.readouterr().err
    assert "--data-root" in error and "train-10k-jpeg.zip" in error


def test_an_interrupted_gan_job_resumes_from_its_last_evaluation(limited_data, tmp_path: Path, monkeypatch):
    import overfit

    setting = replace(overfit.OverfitSetting().quick(), kimg=0.3, eval_kimg=0.1, seeds=(0,))
    reals, _ = overfit.prepare_reals(setting, tmp_path)
    uninterrupted = overfit.run_gan_job("ada", 0, setting, reals, tmp_path / "straight")

    class Interrupted(RuntimeError):
        pass

    import overfit_probe

    save = overfit_probe.save_atomically
    saved = []

    def save_then_die(trainer, path):
        save(trainer, path)
        saved.append(trainer.lightning_module.cur_nimg.item())
        if len(saved) == 2:  # after the checkpoint of the second evaluation
            raise Interrupted

    monkeypatch.setattr(overfit_probe, "save_atomically", save_then_die)
    with pytest.raises(Interrupted):
        overfit.run_gan_job("ada", 0, setting, reals, tmp_path / "cut")
    monkeypatch.setattr(overfit_probe, "save_atomically", save)
    measured = []
    measure = overfit.OverfitProbe.measure
    monkeypatch.setattr(
        overfit.OverfitProbe, "measure", lambda self, module: measured.append(1) or measure(self, module)
    )
    resumed = overfit.run_gan_job("ada", 0, setting, reals, tmp_path / "cut")

    assert resumed["resumes"] == 1
    assert len(measured) == len(uninterrupted["history"]) - 2  # the first two evaluations are not redone
    assert [p["kimg"] for p in resumed["history"]] == [p["kimg"] for p in uninterrupted["history"]]
    progress = (tmp_path / "cut" / "progress" / "gan-ada-seed0.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in progress] == resumed["history"]
    # weights, optimisers, EMA, p, the controller's accumulators and the RNG come back: the resumed
    # run measures exactly what the uninterrupted one did (one batch per epoch: no mid-epoch iterator)
    assert resumed["history"] == uninterrupted["history"]

    # a finished job is extended, not restarted, when the setting asks for more kimg
    longer = replace(setting, kimg=0.4)
    straight = tmp_path / "straight"
    (straight / "jobs").mkdir()
    (straight / "jobs" / "gan-ada-seed0.json").write_text(json.dumps(uninterrupted))
    assert overfit.is_done(straight, "gan", "ada", 0, setting) is True
    assert overfit.is_done(straight, "gan", "ada", 0, longer) is False
    extended = overfit.run_gan_job("ada", 0, longer, reals, straight)
    assert extended["resumes"] == 1 and extended["history"][-1]["kimg"] >= 0.4
    assert extended["history"][: len(uninterrupted["history"])] == uninterrupted["history"]
    kimgs = [point["kimg"] for point in extended["history"]]
    assert len(set(kimgs)) == len(kimgs)  # the finished run's last point is not measured again


def test_the_report_reads_each_gan_job_up_to_the_settings_kimg(limited_data):
    import overfit

    run = {"seed": 0, "history": [{"kimg": kimg} for kimg in (0.0, 5.0, 5.0, 10.0, 10.032, 15.0, 15.064)]}
    at_setting = overfit.reported_run(run, kimg=10.0, eval_kimg=5.0)
    assert [point["kimg"] for point in at_setting["history"]] == [0.0, 5.0, 10.0, 10.032]
    assert at_setting["extended_to"] == 15.064  # went further: its sample grid is not at 10 kimg
    as_long = overfit.reported_run(run, kimg=15.0, eval_kimg=5.0)
    assert [point["kimg"] for point in as_long["history"]] == [0.0, 5.0, 10.0, 10.032, 15.0, 15.064]
    assert "extended_to" not in as_long


def test_inception_fid_is_reported_when_a_weights_file_is_given(limited_data, tmp_path: Path, monkeypatch):
    import overfit
    import torch

    built = []

    def stand_in(weights: str | None) -> torch.nn.Module:  # Inception's place: any (N, d) feature map
        built.append(weights)
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
        )

    monkeypatch.setattr(overfit, "inception_extractor", stand_in)
    setting = replace(
        overfit.OverfitSetting().quick(),
        kimg=0.2,
        eval_kimg=0.1,
        seeds=(0,),
        gan_arms=("ada",),
        distaug_arms=(),
        inception_weights="pt_inception-2015-12-05.pth",
    )
    summary = overfit.run_overfit(setting, tmp_path)
    history = json.loads((tmp_path / "jobs" / "gan-ada-seed0.json").read_text())["history"]
    assert all(math.isfinite(point["inception_fid_full"]) for point in history)
    assert all(point["inception_fid_train"] >= 0 for point in history)
    assert set(built) == {"pt_inception-2015-12-05.pth"}  # the file the user named, nothing downloaded
    cached = torch.load(tmp_path / "inception_features.pt")
    assert cached.shape == (1797, 8)  # the reals' features, computed once per experiment folder
    assert summary["gan"]["ada"]["final_fid"][0] > 0
