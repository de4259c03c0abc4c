"""Tables and plots of the over-fitting settings (``benchmarks/overfit.py``): aggregation over seeds.

Every function here reads the per-job results (``{"arm", "seed", "seconds", "history"}`` dicts) and
writes Markdown or PNG files; nothing trains.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

BASELINE_ARM = "no-augmentation"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def second_half(history: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """The evaluations from half the run's length on (where over-fitting shows, if it does)."""
    return [point for point in history if point["kimg"] >= history[-1]["kimg"] / 2]


def gan_summary(results: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per arm (mean, std over seeds): final, best and second-half-mean FID, memorisation, D gap, r_t, p.

    A single evaluation of a small GAN swings with its training dynamics; the mean FID over the
    second half of each run is the steadier summary of where an arm ends up.
    """
    summary = {}
    for arm, runs in results.items():
        final = [run["history"][-1] for run in runs]
        best = [min(run["history"][1:] or run["history"], key=itemgetter("fid_full")) for run in runs]
        late = [statistics.fmean(point["fid_full"] for point in second_half(run["history"])) for run in runs]
        summary[arm] = {
            "final_fid": mean_std([point["fid_full"] for point in final]),
            "best_fid": mean_std([point["fid_full"] for point in best]),
            "best_kimg": mean_std([point["kimg"] for point in best]),
            "second_half_fid": mean_std(late),
            "final_fid_train": mean_std([point["fid_train"] for point in final]),
            "final_kid": mean_std([point.get("kid_full", math.nan) for point in final]),
            "final_d_gap": mean_std([point["d_train"] - point["d_heldout"] for point in final]),
            "final_rt": mean_std([point["rt"] for point in final]),
            "final_p": mean_std([point["p"] for point in final]),
            "seconds": mean_std([run["seconds"] for run in runs]),
            "seeds": len(runs),
        }
    if BASELINE_ARM in results:
        baseline = [run["history"][-1]["fid_full"] for run in results[BASELINE_ARM]]
        for arm, runs in results.items():
            final = [run["history"][-1]["fid_full"] for run in runs]
            summary[arm]["welch_t_final_fid"] = welch_t(final, baseline) if arm != BASELINE_ARM else math.nan
    return summary


def distaug_summary(results: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per arm: best and final val bpd, final train bpd, and the epoch of the best val bpd."""
    summary = {}
    for arm, runs in results.items():
        best = [min(run["history"], key=lambda point: point["val"]) for run in runs]
        summary[arm] = {
            "best_val": mean_std([point["val"] for point in best]),
            "best_epoch": mean_std([point["epoch"] for point in best]),
            "final_val": mean_std([run["history"][-1]["val"] for run in runs]),
            "final_train": mean_std([run["history"][-1]["train"] for run in runs]),
            "seconds": mean_std([run["seconds"] for run in runs]),
            "seeds": len(runs),
        }
    return summary


def welch_t(sample: Sequence[float], baseline: Sequence[float]) -> float:
    """Welch's t of ``mean(baseline) - mean(sample)``: positive when ``sample`` is lower (better FID).

    ``t = (mean_b - mean_s) / sqrt(var_s / n_s + var_b / n_b)`` with sample variances; NaN with fewer
    than two values on a side, infinite when both sides are constant and differ.

    >>> round(welch_t([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]), 3)
    3.674
    """
    if len(sample) < 2 or len(baseline) < 2:
        return math.nan
    spread = statistics.variance(sample) / len(sample) + statistics.variance(baseline) / len(baseline)
    difference = statistics.fmean(baseline) - statistics.fmean(sample)
    if spread == 0:
        return math.copysign(math.inf, difference) if difference else 0.0
    return difference / math.sqrt(spread)


def _fmt(pair: tuple[float, float], digits: int = 1) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def markdown_tables(
    gan: dict[str, dict], distaug: dict[str, dict], floor: dict[str, float], reals: str
) -> str:
    """The GAN table (and the DistAug one when it has rows); ``reals`` names the real images, plural."""
    lines = [
        "Mean ± standard deviation over the n seeds of each row; Welch t of the final FID against no "
        f"augmentation (positive: lower FID). classifier-FID noise floor (two halves of the {reals}): "
        f"{floor['fid_half_vs_half']:.2f}; the training subset itself against all {reals}: "
        f"{floor['fid_train_subset_vs_full']:.2f}.",
        "",
        "| arm | n | final FID (full) | Welch t | final KID (full) | best FID (full) | kimg of best "
        "| mean FID (full), second half | final FID (train subset) | final D gap train - held-out "
        "| final r_t | final p | wall s per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for arm, row in gan.items():
        t = row.get("welch_t_final_fid", math.nan)
        lines.append(
            f"| {arm} | {row['seeds']} | {_fmt(row['final_fid'])} | {'-' if math.isnan(t) else f'{t:.1f}'} "
            f"| {_fmt(row['final_kid'], 4)} | {_fmt(row['best_fid'])} | {_fmt(row['best_kimg'], 0)} "
            f"| {_fmt(row['second_half_fid'])} "
            f"| {_fmt(row['final_fid_train'])} "
            f"| {_fmt(row['final_d_gap'], 2)} | {_fmt(row['final_rt'], 2)} | {_fmt(row['final_p'], 3)} "
            f"| {row['seconds'][0]:.0f} |"
        )
    if distaug:
        lines += [
            "",
            "| DistAug arm | n | best val bpd | epoch of best | final val bpd | final train bpd "
            "| wall s per run |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for arm, row in distaug.items():
            lines.append(
                f"| {arm} | {row['seeds']} | {_fmt(row['best_val'], 3)} | {row['best_epoch'][0]:.0f} "
                f"| {_fmt(row['final_val'], 3)} | {_fmt(row['final_train'], 3)} | {row['seconds'][0]:.0f} |"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- plots
def band_plot(
    curves: dict[str, list[list[tuple[float, float]]]],
    xlabel: str,
    ylabel: str,
    path: Path,
    *,
    log_y: bool = False,
    hlines: Sequence[tuple[float, str]] = (),
    x_from: float | None = None,
) -> Path:
    """One line per arm (mean over seeds at each x) with a band from the lowest to the highest seed.

    ``x_from`` drops the points before it (the first evaluations, far above the rest on a linear axis).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, runs in curves.items():
        if x_from is not None:
            runs = [[point for point in run if point[0] >= x_from] for run in runs]
        length = min(len(run) for run in runs)
        if length == 0:
            continue
        xs = [statistics.fmean(run[i][0] for run in runs) for i in range(length)]
        columns = [[run[i][1] for run in runs] for i in range(length)]
        line = ax.plot(xs, [statistics.fmean(column) for column in columns], label=label)[0]
        ax.fill_between(
            xs, [min(c) for c in columns], [max(c) for c in columns], alpha=0.2, color=line.get_color()
        )
    for (value, label), style in zip(hlines, ("--", ":"), strict=False):
        ax.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:  # an arm set without adaptive p has no p curve
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curves(results: dict[str, list[dict]], x: str, y: Callable[[dict], float]) -> dict[str, list[list]]:
    return {
        arm: [[(point[x], y(point)) for point in run["history"]] for run in runs]
        for arm, runs in results.items()
    }


def samples_figure(panels: Sequence[tuple[str, Path]], path: Path) -> Path:
    """Image grids (PNG files) side by side, each under its title, upscaled for reading."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.5), squeeze=False)
    for ax, (title, grid) in zip(axes[0], panels, strict=True):
        ax.imshow(Image.open(grid), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gan_plots(
    gan: dict[str, list[dict]], floor: dict[str, float], out: Path, plots: Path, reals: str
) -> list[Path]:
    """FID, r_t, D gap and p curves, and the sample grids.

    The FID plots use a linear axis from a fifth of the run on, where the arms separate; the first
    evaluations (an untrained generator, FIDs an order of magnitude higher) would flatten the rest.
    """
    last_kimg = max(run["history"][-1]["kimg"] for runs in gan.values() for run in runs)
    # The grids of the first seed whose every job ended at the reported length (see `reported_run`).
    seeds = sorted({run["seed"] for runs in gan.values() for run in runs})
    extended = {run["seed"] for runs in gan.values() for run in runs if "extended_to" in run}
    seed = next((seed for seed in seeds if seed not in extended), seeds[0])
    return [
        band_plot(
            _curves(gan, "kimg", lambda p: p["fid_full"]),
            "kimg",
            f"classifier-FID vs all {reals}",
            plots / "overfit_fid_full.png",
            x_from=last_kimg / 5,
            hlines=(
                (floor["fid_train_subset_vs_full"], "the training subset itself"),
                (floor["fid_half_vs_half"], f"two halves of the {reals} (noise floor)"),
            ),
        ),
        band_plot(
            _curves(gan, "kimg", lambda p: p["fid_train"]),
            "kimg",
            "classifier-FID vs the training subset",
            plots / "overfit_fid_train.png",
            x_from=last_kimg / 5,
        ),
        band_plot(
            _curves(gan, "kimg", lambda p: p["rt"]),
            "kimg",
            "r_t = E[sign D(A(x_train))]",
            plots / "overfit_rt.png",
        ),
        band_plot(
            _curves(gan, "kimg", lambda p: p["d_train"] - p["d_heldout"]),
            "kimg",
            "D(train reals) - D(held-out reals)",
            plots / "overfit_d_gap.png",
        ),
        band_plot(
            {
                arm: runs
                for arm, runs in _curves(gan, "kimg", lambda p: p["p"]).items()
                if any(len({value for _, value in run}) > 1 for run in runs)  # p adapted (not fixed)
            },
            "kimg",
            "augmentation p (adaptive arms)",
            plots / "overfit_p.png",
        ),
        samples_figure(
            [("training images", out / "samples" / "training-images.png")]
            + [(f"{arm} (seed {seed})", out / "samples" / f"{arm}-seed{seed}.png") for arm in gan],
            plots / "overfit_samples.png",
        ),
    ]


def make_plots(
    gan: dict[str, list[dict]],
    distaug: dict[str, list[dict]],
    floor: dict[str, float],
    out: Path,
    plots: Path,
    reals: str,
) -> list[Path]:
    """Every plot of the setting; ``reals`` names the real images (e.g. ``"1,797 digits"``)."""
    paths: list[Path] = []
    if gan:
        paths += gan_plots(gan, floor, out, plots, reals)
    if distaug:
        paths.append(
            band_plot(
                {f"{arm} (val)": runs for arm, runs in _curves(distaug, "epoch", lambda p: p["val"]).items()}
                | {
                    f"{arm} (train)": runs
                    for arm, runs in _curves(distaug, "epoch", lambda p: p["train"]).items()
                },
                "epoch",
                "bits per dim (identity transform)",
                plots / "overfit_distaug_bpd.png",
            )
        )
    return paths
