"""benchmarks/limited_data.py runs end to end in its --quick mode (shrunk further here) and reports
every arm with the metric the issue asks for."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "limited_data.py"


def test_quick_run_reports_every_arm_with_curves_and_plots(limited_data, tmp_path: Path):
    summary = limited_data.main(
        [
            "--quick", "--out", str(tmp_path), "--kimg", "0.25", "--eval-kimg", "0.125", "--num-gen", "64",
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


@pytest.mark.usefixtures("two_batch_quick")
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


@pytest.mark.usefixtures("two_batch_quick")
def test_overfit_setting_runs_chosen_arms_and_seeds_class_conditionally(limited_data, tmp_path: Path):
    """The arms only chosen with ``--arms`` (the controller's other readings and targets; ``ada-rv`` and
    ``ada-gap`` read held-out reals), for the chosen seed only: each trains and is probed (the default
    five arms and both seeds: test_overfit_setting_quick_runs_every_arm_and_seed_and_resumes)."""
    import overfit

    extra = [arm for arm in overfit.OVERFIT_GAN_ARMS if arm not in overfit.DIGITS_GAN_ARMS]
    assert extra == [
        "ada-clean",
        "ada-rv",
        "ada-target0.5",
        "ada-rv-target0.3",
        "ada-gap",
        "ada-gap-diffaugment",
    ]
    summary = limited_data.main(
        ["--setting", "digits-overfit", "--quick", "--arms", *extra, "--distaug-arms", "--conditional"]
        + ["--seeds", "1", "--out", str(tmp_path)]
    )
    assert list(summary["gan"]) == extra and summary["distaug"] == {}
    assert summary["setting"]["conditional"] is True
    assert sorted(path.name for path in (tmp_path / "jobs").iterdir()) == sorted(
        f"gan-{arm}-seed1.json" for arm in extra
    )
    for arm in extra:
        mean, _ = summary["gan"][arm]["final_fid"]
        assert math.isfinite(mean) and mean > 0
        history = json.loads((tmp_path / "jobs" / f"gan-{arm}-seed1.json").read_text())["history"]
        assert len(history) >= 2 and all(0 <= point["p"] <= 1 and -1 <= point["rt"] <= 1 for point in history)


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


def test_the_chained_arm_adapts_the_pipe_and_keeps_diffaugment_at_full_strength(limited_data):
    import overfit

    from lightning_genaug.augment import AugmentPipe, Chain, DiffAugment

    module, (controller,) = overfit.build_overfit_gan("ada-gap-diffaugment", overfit.OverfitSetting())
    pipe, diffaugment = module.augment_pipe.augmentations
    assert isinstance(module.augment_pipe, Chain) and isinstance(pipe, AugmentPipe)
    assert isinstance(diffaugment, DiffAugment) and float(diffaugment.p) == 1.0
    assert (controller.heuristic, controller.target) == ("gap", 0.5)
    module.augment_pipe.p.fill_(0.25)  # how the controller sets p (AugmentationStrength: pipe.p.fill_)
    assert float(pipe.p) == 0.25 and float(diffaugment.p) == 1.0
