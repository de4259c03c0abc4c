"""GenerativeMetrics is composed of metric objects and one RealData: what a config and Python may write."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import torch
from jsonargparse import ArgumentParser
from lightning.pytorch import Callback

from lightning_genaug.callbacks import GenerativeMetrics
from lightning_genaug.metrics import (
    FID,
    IS,
    KID,
    PR,
    InceptionWeightsNotFoundError,
    RealData,
    RealStatistics,
    metric_options,
)
from lightning_genaug.metrics.image_metrics import KernelInceptionDistance


def parse_callback(yaml_text: str) -> Callback:
    """The callback a ``trainer.callbacks`` item of a config builds, as LightningCLI builds it."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callback", type=Callback)
    config = parser.parse_string(textwrap.dedent(yaml_text))
    return parser.instantiate_classes(config).callback


def test_the_constructor_takes_at_most_ten_arguments():
    parameters = list(inspect.signature(GenerativeMetrics.__init__).parameters)[1:]
    assert len(parameters) <= GenerativeMetrics.MAX_ARGUMENTS == 10
    moved = ("kid_subsets", "kid_subset_size", "is_splits", "pr_k", "num_real", "real_data", "cache_dir")
    assert not set(moved) & set(parameters)


def test_names_stand_for_the_metric_objects_with_their_defaults():
    assert metric_options(["fid", "KID", "is", "pr"]) == (FID(), KID(), IS(), PR())
    assert metric_options("kid") == (KID(subsets=100, subset_size=1000),)
    assert metric_options(IS(splits=4)) == (IS(splits=4),)
    callback = GenerativeMetrics(metrics=["fid", KID(subsets=7)], feature_extractor=torch.nn.Flatten())
    assert callback.metrics == (FID(), KID(subsets=7)) and callback.metric_names == ("fid", "kid")


def test_a_config_composes_metrics_and_real_data_by_short_class_names(tmp_path):
    callback = parse_callback(
        f"""
        callback:
          class_path: GenerativeMetrics
          init_args:
            metrics:
              - fid
              - class_path: KID
                init_args: {{subsets: 5, subset_size: 16}}
              - class_path: IS
                init_args: {{splits: 2}}
              - class_path: PR
                init_args: {{k: 4}}
            num_gen: 32
            feature_extractor:
              class_path: torch.nn.Flatten
            real:
              num_images: 20
              fingerprint: digits-v1
              cache_dir: {tmp_path}
              use_cache: false
        """
    )
    assert isinstance(callback, GenerativeMetrics)
    assert callback.metrics == (FID(), KID(subsets=5, subset_size=16), IS(splits=2), PR(k=4))
    real = callback.real
    assert (real.source, real.num_images, real.fingerprint, real.use_cache) == (None, 20, "digits-v1", False)
    assert real.cache is None  # use_cache: false


def test_a_config_gives_the_inception_weights_to_the_extractor_object(tmp_path):
    missing = tmp_path / "weights.pth"
    # jsonargparse builds the extractor while parsing and reports its error inside its own
    with pytest.raises(
        (InceptionWeightsNotFoundError, ValueError), match="weights.pth'?, which is not a file"
    ):
        parse_callback(
            f"""
            callback:
              class_path: GenerativeMetrics
              init_args:
                feature_extractor:
                  class_path: InceptionV3Compat
                  init_args: {{weights_path: {missing}}}
            """
        )


def test_kid_lowers_its_subset_size_to_the_images_available():
    reference = RealStatistics(torch.zeros(2), torch.eye(2), torch.zeros(10, 2), 10)
    with pytest.warns(UserWarning, match="`subset_size` 1000 exceeds the available images; using 8"):
        metric = KID().build(reference, num_gen=8, seed=0)
    assert isinstance(metric, KernelInceptionDistance) and metric.subset_size == 8


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: KID(subsets=0), ValueError, "`subsets` must be > 0, got 0"),
        (lambda: IS(splits=1.5), TypeError, "`splits` must be an int"),
        (lambda: PR(k=-1), ValueError, "`k` must be > 0"),
        (lambda: RealData(num_images=0), ValueError, "`num_images` must be > 0"),
        (lambda: RealData(source=[1, 2]), TypeError, "`source` must be a DataLoader"),
        (lambda: metric_options(["fid", "lpips"]), ValueError, "'lpips', which is none of"),
        (lambda: GenerativeMetrics(metrics=IS(splits=10), num_gen=5), ValueError, r"IS\(splits=5\)"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_fix(make, error, match):
    with pytest.raises(error, match=match) as raised:
        make()
    assert "\n" not in str(raised.value)
