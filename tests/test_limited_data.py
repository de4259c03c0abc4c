"""benchmarks/limited_data.py runs end to end in its --quick mode (shrunk further here) and reports
every arm with the metric the issue asks for."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "limited_data.py"


@pytest.fixture(scope="module")
def limited_data():
    spec = importlib.util.spec_from_file_location("limited_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["limited_data"] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules["limited_data"]


@pytest.fixture(scope="module")
def quarter_quick(limited_data) -> Iterator[None]:
    """``--setting digits-overfit --quick`` with a quarter of its training: 4 batches per job, probed at
    0, 1/16 and 1/8 kimg. What is checked (every arm and seed, a few probe points, finite values,
    resuming) needs the jobs, not their length."""
    import overfit

    quick = overfit.OverfitSetting.quick
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            overfit.OverfitSetting, "quick", lambda self: replace(quick(self), kimg=0.125, eval_kimg=0.0625)
        )
        yield


def test_quick_run_reports_every_arm_with_curves_and_plots(limited_data, tmp_path: Path):
    summary = limited_data.main(
        [
            "--quick", "--out", str(tmp_path), "--kimg", "0.5", "--eval-kimg", "0.25", "--num-gen", "64",
            "--kid-subsets", "4", "--max-images", "200", "--extractor-steps", "20", "--distaug-steps", "8",
        ]
    )  # fmt: skip
    assert summary["metric"].startswith("classifier-FID/KID")
    gan = {result["arm"]: result for result in summary["gan"]}
    assert list(gan) == ["no-augmentation", "ada", "fixed-p0.2", "scalegan"]
    for result in gan.values():
        kimgs = [point["kimg"] for point in result["history"]]
        assert kimgs == sorted(kimgs) and len(kimgs) >= 2  # evaluated every eval-kimg and at the end
        assert math.isfinite(result["final"]["fid"]) and result["final"]["fid"] >= 0
        assert math.isfinite(result["final"]["kid"])
    assert "p" not in gan["no-augmentation"]["final"]
    assert [p for _, p in gan["fixed-p0.2"]["p_history"]] == pytest.approx(
        [0.2] * len(gan["fixed-p0.2"]["p_history"])
    )
    assert gan["ada"]["p_history"][0][1] == 0.0  # ADA starts from p = 0 and the controller runs
    assert len({p for _, p in gan["ada"]["p_history"]}) > 1

    distaug = {result["arm"]: result for result in summary["distaug"]}
    assert list(distaug) == ["no-augmentation", "rotation-distaug"]
    for result in distaug.values():
        assert 0 < result["final"]["val_bpd"] < 8.5  # below ~8 bits once trained a little

    for plot in summary["plots"]:
        assert Path(plot).stat().st_size > 0
    report = (tmp_path / "results.md").read_text()
    assert "| scalegan |" in report and "| rotation-distaug |" in report


def test_full_mode_needs_a_data_path(limited_data):
    with pytest.raises(SystemExit):
        limited_data.parse_args(["--kimg", "1"])


@pytest.mark.usefixtures("quarter_quick")
def test_overfit_setting_quick_runs_every_arm_and_seed_and_resumes(limited_data, tmp_path: Path):
    summary = limited_data.main(["--setting", "digits-overfit", "--quick", "--out", str(tmp_path)])
    setting = summary["setting"]
    assert list(summary["gan"]) == ["no-augmentation", "ada", "fixed-p0.2", "diffaugment", "scalegan"]
    assert list(summary["distaug"]) == ["no-augmentation", "rotation", "rotation+transposition"]
    assert len(setting["seeds"]) >= 2  # mean and spread over seeds, even in the quick check
    for row in summary["gan"].values():
        mean, std = row["final_fid"]
        assert math.isfinite(mean) and mean > 0 and std >= 0
        assert row["best_fid"][0] <= mean + 1e-9
        assert row["best_fid"][0] <= row["second_half_fid"][0] + 1e-9
    assert summary["gan"]["no-augmentation"]["final_p"] == (0.0, 0.0)
    assert summary["gan"]["fixed-p0.2"]["final_p"][0] == pytest.approx(0.2)
    assert summary["gan"]["diffaugment"]["final_p"][0] == pytest.approx(1.0)  # DiffAugment always applies
    floor = summary["noise_floor"]
    assert 0 <= floor["fid_half_vs_half"] < floor["fid_train_subset_vs_full"]

    job = json.loads((tmp_path / "jobs" / "gan-ada-seed0.json").read_text())
    kimgs = [point["kimg"] for point in job["history"]]
    assert kimgs[0] == 0 and kimgs == sorted(kimgs) and kimgs[-1] >= setting["kimg"]
    for point in job["history"]:
        assert {"fid_full", "fid_train", "d_train", "d_heldout", "rt", "p"} <= set(point)
        assert -1 <= point["rt"] <= 1
    progress = (tmp_path / "progress" / "gan-ada-seed0.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in progress] == job["history"]  # a long run can be watched
    distaug_job = json.loads((tmp_path / "jobs" / "distaug-rotation-seed1.json").read_text())
    assert all(0 < point["val"] < 8.5 and 0 < point["train"] < 8.5 for point in distaug_job["history"])
    for plot in summary["plots"]:
        assert Path(plot).stat().st_size > 0
    assert "| diffaugment |" in (tmp_path / "results.md").read_text()

    finished = {path: path.stat().st_mtime_ns for path in (tmp_path / "jobs").glob("*.json")}
    again = limited_data.main(["--setting", "digits-overfit", "--quick", "--out", str(tmp_path)])
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # done jobs are not re-run
    assert again["gan"] == summary["gan"]


@pytest.mark.usefixtures("quarter_quick")
def test_overfit_setting_runs_chosen_arms_class_conditionally(limited_data, tmp_path: Path):
    summary = limited_data.main(
        ["--setting", "digits-overfit", "--quick", "--arms", "ada", "--distaug-arms", "--conditional"]
        + ["--out", str(tmp_path)]
    )
    assert list(summary["gan"]) == ["ada"] and summary["distaug"] == {}
    assert summary["setting"]["conditional"] is True
    assert sorted(path.name for path in (tmp_path / "jobs").iterdir()) == [
        "gan-ada-seed0.json",
        "gan-ada-seed1.json",
    ]


def test_unknown_arm_is_refused_with_the_valid_names(limited_data, capsys):
    with pytest.raises(SystemExit):
        limited_data.parse_args(["--setting", "digits-overfit", "--quick", "--arms", "dcgan"])
    assert "unknown arms ['dcgan']" in capsys.readouterr().err
    assert limited_data.parse_args(["--quick"]).arms == ["no-augmentation", "ada", "fixed-p0.2", "scalegan"]


def test_overfit_gan_is_unconditional_unless_asked(limited_data):
    import overfit

    unconditional, _ = overfit.build_overfit_gan("ada", overfit.OverfitSetting())
    assert unconditional.hparams.num_classes == 0  # the ADA paper's small-data regime
    conditional, _ = overfit.build_overfit_gan("scalegan", overfit.OverfitSetting(conditional=True))
    assert conditional.hparams.num_classes is None  # taken from the datamodule's 10 digit classes


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
