"""One line, exit code 2, for every bad value of every command (issue 33, items 6-11).

A bad value, path or network file ends ``lightning-genaug ...`` with one ``error:`` line naming the
problem and the fix, before any expensive work; a command never says it wrote what it did not write,
never replaces a file without ``--overwrite``, and never ignores an option silently. Networks are tiny
and untrained (16x16) and written by the tests.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from test_after_training import save_checkpoint

from lightning_genaug.augment import DistAugTransforms
from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.tools import video

MISSING = "missing.ckpt"
"""A network that does not exist: a path or value error reported for it was found before loading."""


def assert_one_line(result: tuple[int, str, str], command: str, pattern: str) -> None:
    """Exit code 2 and one ``lightning-genaug COMMAND: error:`` line matching ``pattern``."""
    code, _, err = result
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"lightning-genaug {command}: error:"), err
    assert re.search(pattern, err), err


@pytest.fixture(scope="module")
def gan_ckpt(tmp_path_factory) -> Path:
    """An unconditional 1x16x16 StyleGAN2ADA checkpoint."""
    torch.manual_seed(0)
    model = StyleGAN2ADA("tiny", resolution=16, channels=1, num_classes=0)
    return save_checkpoint(model, tmp_path_factory.mktemp("gan") / "gan.ckpt")


@pytest.fixture(scope="module")
def distaug_ckpt(tmp_path_factory) -> Path:
    """A 1x4x4 SparseTransformerDistAug checkpoint with the rotation transforms."""
    torch.manual_seed(0)
    model = SparseTransformerDistAug(
        "tiny", channels=1, resolution=4, augment=DistAugTransforms(["rotation"])
    )
    return save_checkpoint(model, tmp_path_factory.mktemp("distaug") / "distaug.ckpt")


def edited_checkpoint(source: Path, target: Path, edit) -> Path:
    """``source`` with ``edit(checkpoint)`` applied, saved as ``target``."""
    checkpoint = torch.load(source, weights_only=False)
    edit(checkpoint)
    torch.save(checkpoint, target)
    return target


# ------------------------------------------------------------------------ item 7: no false success


def test_interpolate_to_a_folder_refuses_before_loading_and_writes_nothing(cli, tmp_path):
    (tmp_path / "walk.mp4").mkdir()
    result = cli("interpolate", MISSING, "--seeds", "0-1", "--out", tmp_path / "walk.mp4")
    assert_one_line(result, "interpolate", r"walk.mp4' is a folder; give a file name")
    assert list(tmp_path.iterdir()) == [tmp_path / "walk.mp4"]


def test_an_animation_the_writer_did_not_write_is_an_error_not_a_success(tmp_path, monkeypatch):
    import imageio.v3 as iio

    monkeypatch.setattr(video, "IMAGEIO_FFMPEG_AVAILABLE", True)
    monkeypatch.setattr(iio, "imwrite", lambda *args, **kwargs: None)  # ffmpeg failing without raising
    frames = [torch.rand(3, 8, 8) for _ in range(2)]
    with pytest.raises(OSError, match=r"ffmpeg wrote nothing to .*walk.mp4"):
        video.write_animation(frames, tmp_path / "walk.mp4", fps=10)


# ------------------------------------------------------------------ item 6: paths and values first


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (
            ["generate", MISSING, "--seeds", "0", "--outdir", "{file}"],
            r"--outdir '.*a.txt' is a file, not a folder",
        ),
        (
            ["generate", MISSING, "--seeds", "0", "--outdir", "{file}/sub"],
            r"--outdir '.*a.txt/sub' lies below the file '.*a.txt'; choose a folder",
        ),
        (
            ["style-mix", MISSING, "--rows", "0", "--cols", "1", "--outdir", "{file}"],
            r"is a file, not a folder",
        ),
        (
            ["export", MISSING, "--format", "torchscript", "--out", "{dir}"],
            r"--out '.*' is a folder; give a file name, e.g. '.*G.onnx'",
        ),
        (
            ["export", MISSING, "--format", "torchscript", "--out", "/proc/G.pt"],
            r"--out '/proc': cannot create files in '/proc' \(.*\); choose a folder you can write to",
        ),
        (
            ["generate", MISSING, "--seeds", "0", "--outdir", "{dir}", "--device", "bogus"],
            r"--device: 'bogus' is not a device; use cpu, cuda",
        ),
        (
            ["generate", MISSING, "--seeds", "0-100000000", "--outdir", "{dir}"],
            r"--seeds: '0-100000000' names 100,000,001 values, more than the 100,000 one run takes; split it",
        ),
        (
            ["project", MISSING, "--target", "{file}", "--outdir", "{dir}", "--vgg16", "{file}"],
            r"--vgg16 '.*a.txt' is not a TorchScript file .*leave --vgg16 out",
        ),
    ],
)
def test_bad_paths_and_values_are_one_line_before_the_network_is_read(cli, tmp_path, args, pattern):
    (tmp_path / "a.txt").write_text("not an image, not a network")
    args = [arg.format(file=tmp_path / "a.txt", dir=tmp_path) for arg in args]
    assert_one_line(cli(*args), args[0], pattern)


def test_a_device_this_machine_lacks_is_one_line(cli, gan_ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli("generate", gan_ckpt, "--seeds", "0", "--outdir", tmp_path, "--device", "cuda")
    assert_one_line(
        result, "generate", r"--device cuda: torch sees no cuda device on this machine; use --device cpu"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_zip_that_is_not_torchscript_given_as_vgg16_is_one_line(cli, gan_ckpt, tmp_path):
    target = tmp_path / "target.png"
    from PIL import Image

    Image.new("L", (16, 16)).save(target)
    with zipfile.ZipFile(tmp_path / "vgg16.pt", "w") as archive:
        archive.writestr("vgg16/data.txt", "not a module")
    result = cli(
        "project",
        gan_ckpt,
        "--target",
        target,
        "--outdir",
        tmp_path / "out",
        "--vgg16",
        tmp_path / "vgg16.pt",
    )
    assert_one_line(result, "project", r"--vgg16 '.*vgg16.pt' cannot be read by torch.jit.load")


def _drop_hyper_parameters(checkpoint: dict) -> None:
    del checkpoint["hyper_parameters"]


def _empty_state_dict(checkpoint: dict) -> None:
    checkpoint["state_dict"] = {}
    checkpoint["hyper_parameters"]["_class_path"] = "lightning_genaug.models.stylegan2.StyleGAN2ADA"


def _wrong_shape(checkpoint: dict) -> None:
    checkpoint["state_dict"]["G_ema.synthesis.b4.const"] = torch.zeros(3, 3)


def _unknown_class(checkpoint: dict) -> None:
    checkpoint["hyper_parameters"]["_class_path"] = "lightning_genaug.models.stylegan2.StyleGAN3"


def _unknown_module(checkpoint: dict) -> None:
    checkpoint["hyper_parameters"]["_class_path"] = "lightning_genaug.models.stylegan3.StyleGAN3"


FITS_NOT = r"does not fit the \w+ its hyper-parameters describe"


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_drop_hyper_parameters, FITS_NOT),
        (_empty_state_dict, FITS_NOT),
        (_wrong_shape, FITS_NOT + r".*G_ema\.synthesis\.b4\.const\W.*3, 3\W.*32, 4, 4\W"),
    ],
)
def test_a_damaged_checkpoint_is_one_line_naming_the_file(cli, gan_ckpt, tmp_path, edit, pattern):
    path = edited_checkpoint(gan_ckpt, tmp_path / "damaged.ckpt", edit)
    result = cli("generate", path, "--seeds", "0", "--outdir", tmp_path / "out")
    assert_one_line(result, "generate", pattern)
    assert "damaged.ckpt" in result[2] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("edit", "pattern"), [(_unknown_class, r"StyleGAN3"), (_unknown_module, r"stylegan3")]
)
def test_a_class_path_that_does_not_exist_is_one_line_or_read_by_the_weights(
    cli, gan_ckpt, tmp_path, edit, pattern
):
    """Either the class is refused in one line naming it, or the weights say which family to build
    (as for a checkpoint that names no class); never a traceback."""
    path = edited_checkpoint(gan_ckpt, tmp_path / "renamed.ckpt", edit)
    result = cli("generate", path, "--seeds", "0", "--outdir", tmp_path / "out")
    if result[0] == 0:
        assert (tmp_path / "out" / "seed000000.png").is_file()
    else:
        assert_one_line(result, "generate", pattern)


def test_load_of_the_other_family_names_the_class_that_reads_it(gan_ckpt, distaug_ckpt):
    with pytest.raises(
        ValueError, match=r"is a SparseTransformerDistAug checkpoint, not a StyleGAN2ADA one; load it"
    ):
        StyleGAN2ADA.load(distaug_ckpt)
    with pytest.raises(ValueError, match=r"is a StyleGAN2ADA checkpoint, not a SparseTransformerDistAug one"):
        SparseTransformerDistAug.load(gan_ckpt)


# -------------------------------------------------------------------- item 10: no silent surprise


def test_generate_refuses_to_replace_its_images_unless_told(cli, gan_ckpt, tmp_path):
    assert cli("generate", gan_ckpt, "--seeds", "3", "--outdir", tmp_path)[0] == 0
    first = (tmp_path / "seed000003.png").read_bytes()
    (tmp_path / "seed000003.png").write_bytes(b"mine")

    result = cli("generate", gan_ckpt, "--seeds", "2-3", "--outdir", tmp_path)
    assert_one_line(result, "generate", r"--outdir: '.*seed000003.png' exists; pass --overwrite to replace")
    assert (tmp_path / "seed000003.png").read_bytes() == b"mine" and not (
        tmp_path / "seed000002.png"
    ).exists()

    assert cli("generate", gan_ckpt, "--seeds", "3", "--outdir", tmp_path, "--overwrite")[0] == 0
    assert (tmp_path / "seed000003.png").read_bytes() == first


def test_export_and_interpolate_refuse_to_replace_a_file(cli, tmp_path):
    (tmp_path / "G.pt").write_bytes(b"mine")
    (tmp_path / "walk-strip.png").write_bytes(b"mine")
    result = cli("export", MISSING, "--format", "torchscript", "--out", tmp_path / "G.pt")
    assert_one_line(
        result, "export", r"--out: '.*G.pt' exists; pass --overwrite to replace, or choose another"
    )
    result = cli("interpolate", MISSING, "--seeds", "0-1", "--out", tmp_path / "walk.gif")
    assert_one_line(result, "interpolate", r"--out: '.*walk-strip.png' exists; pass --overwrite")
    assert (tmp_path / "G.pt").read_bytes() == (tmp_path / "walk-strip.png").read_bytes() == b"mine"


@pytest.mark.parametrize(
    ("network", "options", "pattern"),
    [
        (
            "gan",
            ["--transform", "rot90"],
            r"--transform only apply to SparseTransformerDistAug networks .* holds a "
            r"StyleGAN2ADA; leave it out",
        ),
        (
            "gan",
            ["--temperature", "0.9", "--transform", "rot90"],
            r"--temperature and --transform only apply .* leave them out",
        ),
        (
            "distaug",
            ["--truncation-psi", "0.7"],
            r"--truncation-psi only apply to StyleGAN2 networks .* holds a "
            r"SparseTransformerDistAug; leave it out",
        ),
        ("distaug", ["--noise-mode", "random"], r"--noise-mode only apply to StyleGAN2 networks"),
    ],
)
def test_an_option_of_the_other_family_is_refused_not_ignored(
    cli, gan_ckpt, distaug_ckpt, tmp_path, network, options, pattern
):
    path = gan_ckpt if network == "gan" else distaug_ckpt
    result = cli("generate", path, "--seeds", "0", "--outdir", tmp_path, *options)
    assert_one_line(result, "generate", pattern)
    assert not list(tmp_path.iterdir())


def test_a_network_with_nan_weights_writes_no_black_images(cli, gan_ckpt, tmp_path):
    def poison(checkpoint: dict) -> None:
        checkpoint["state_dict"]["G_ema.synthesis.b16.torgb.bias"].fill_(float("nan"))

    path = edited_checkpoint(gan_ckpt, tmp_path / "nan.ckpt", poison)
    result = cli("generate", path, "--seeds", "0-1", "--outdir", tmp_path / "out")
    assert_one_line(
        result,
        "generate",
        r"nan.ckpt holds NaN or infinite weights \(G_ema.synthesis.b16.torgb.bias and 0 more",
    )
    assert not (tmp_path / "out").exists()


def test_the_autoencoder_example_refuses_zero_steps_in_one_line(capsys):
    example = Path(__file__).resolve().parents[1] / "examples" / "autoencoder_gan.py"
    spec = importlib.util.spec_from_file_location("autoencoder_gan_steps", example)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--max-steps", "0"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--max-steps: '0' is not a number of optimiser steps >= 2" in err


# ------------------------------------------------------------------------------- item 8: prepare


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Two readable 8x8 PNGs and one file that is not an image."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(2):
        Image.new("RGB", (8, 8), (index * 100, 0, 0)).save(folder / f"{index}.png")
    (folder / "2.png").write_bytes(b"not a png")
    return folder


def test_prepare_names_an_unreadable_image_in_one_line_with_the_right_flag(cli, image_folder, tmp_path):
    out = tmp_path / "chunks"
    result = cli("prepare", image_folder, out, "--resolution", "8", "--workers", "1")
    assert_one_line(
        result, "prepare", r"Cannot read image '.*2.png' .*; remove or replace it, or pass --skip-corrupt"
    )
    assert "--skip_corrupt" not in result[2] and not out.exists()

    assert cli("prepare", image_folder, out, "--resolution", "8", "--workers", "1", "--skip-corrupt")[0] == 0
    assert (out / "genaug.json").is_file()


@pytest.mark.parametrize(
    ("options", "pattern"),
    [
        (["{images}", "{full}"], r"OUT '.*full' is not empty; choose a new directory"),
        (["{images}", "{new}", "--resolution", "0"], r"--resolution: '0' is not a positive integer"),
        (["{images}", "{new}", "--workers", "0"], r"--workers: '0' is not a positive integer"),
        (
            ["{images}", "{new}", "--chunk-bytes", "abc"],
            r"--chunk-bytes: 'abc' is not a size; write it like 64MB",
        ),
        (["{missing}", "{new}"], r"SOURCE '.*missing' does not exist; give a folder or .zip of images"),
    ],
)
def test_prepare_refuses_a_bad_value_or_path_in_one_line(cli, image_folder, tmp_path, options, pattern):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.bin").write_bytes(b"")
    paths = {
        "images": image_folder,
        "full": tmp_path / "full",
        "new": tmp_path / "new",
        "missing": tmp_path / "missing",
    }
    args = [option.format(**paths) for option in options]
    if "--resolution" not in args:
        args += ["--resolution", "8"]
    assert_one_line(
        cli("prepare", *args, "--workers", "1") if "--workers" not in args else cli("prepare", *args),
        "prepare",
        pattern,
    )
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------- item 9: fit

TINY_FIT = ["fit", "--model", "StyleGAN2ADA", "--model.config", "tiny", "--data", "DigitsDataModule"]


@pytest.mark.parametrize(
    ("config", "options", "line"),
    [
        (
            "data:\n  class_path: DigitsDataModule\n  init_args:\n    batch_sise: 8\n",
            [],
            "error: --data: unknown key `batch_sise` of DigitsDataModule; did you mean `batch_size`?",
        ),
        (
            "trainer:\n  max_epoch: 3\n",
            [],
            "error: unknown key `trainer.max_epoch`; did you mean `trainer.max_epochs`?",
        ),
        (
            "",
            ["--model.augment", "AugmentPipe", "--model.augment.init_args.p", "nan"],
            "error: --model.augment.init_args.p: expected a float, got 'nan' (not a number)",
        ),
        (
            "",
            ["--data", "ImageDataModule", "--data.init_args.path", "/nonexistent"],
            "error: --data.path: `path` '/nonexistent' does not exist; give a folder of images",
        ),
    ],
    ids=["yaml-key-of-a-class", "yaml-key-of-the-trainer", "nan", "missing-data-path"],
)
def test_fit_says_a_bad_config_in_one_line(cli, tmp_path, config, options, line):
    (tmp_path / "config.yaml").write_text(config or "{}\n")
    code, out, err = cli(*TINY_FIT, "--config", tmp_path / "config.yaml", *options)
    assert code == 2
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), out + err
    assert lines[0].endswith("(see `lightning-genaug fit --help`)")


# ------------------------------------------------------------------------- item 11: before torch

BEFORE_TORCH = """
import sys
from lightning_genaug.cli import main

for argv in map(str.split, sys.argv[1:]):
    try:
        main(argv)
    except SystemExit as exit_info:
        print(exit_info.code or 0, "torch" in sys.modules)
"""


def test_help_and_argument_errors_answer_before_torch_is_imported(tmp_path):
    commands = [
        "generate --help",
        "style-mix --help",
        "interpolate --help",
        "project --help",
        "export --help",
        "prepare --help",
        "generate net.ckpt --seeds 5-3 --outdir out",
        "generate net.ckpt --seeds 0 --outdir out --device bogus",
        "export net.ckpt --format onnx --out G.onnx --trunc 3",
        "prepare images chunks --resolution 0",
    ]
    result = subprocess.run(
        [sys.executable, "-c", BEFORE_TORCH, *commands],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    codes = [line.split() for line in result.stdout.splitlines() if re.fullmatch(r"\d+ (True|False)", line)]
    assert codes == [["0", "False"]] * 6 + [["2", "False"]] * 4, result.stdout + result.stderr
