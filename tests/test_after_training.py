"""After training: ``load(path)``, ``sample``, and generate, style-mix, interpolate, project, export.

Networks are tiny and untrained (16x16); one checkpoint and one official-format pickle are written per
module and every command reads them the way a user's shell would (``lightning-genaug ...`` in-process).
"""

from __future__ import annotations

import re
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from test_official_pickle import CHANNELS, RESOLUTION, register_reference_modules, write_official_pickle

from lightning_genaug.augment import DistAugTransforms
from lightning_genaug.images import picture_grid, to_uint8
from lightning_genaug.models import PredictOptions
from lightning_genaug.models.sparse_transformer import SparseTransformerDistAug
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.tools import video
from lightning_genaug.tools.arguments import ToolArgumentError
from lightning_genaug.tools.export import export_generator
from lightning_genaug.tools.generate import generate_sparse_transformer, generate_stylegan
from lightning_genaug.tools.interpolate import interpolation_frames
from lightning_genaug.tools.project import load_target
from lightning_genaug.tools.style_mix import style_mixing_grid

NUM_CLASSES = 3


def save_checkpoint(model: pl.LightningModule, path: Path) -> Path:
    """Write ``model`` as a Lightning checkpoint, as training would, without training."""
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def stylegan_ckpt(tmp_path_factory) -> Path:
    """A class-conditional 1x16x16 StyleGAN2ADA checkpoint with a non-zero ``w_avg`` (truncation matters)."""
    torch.manual_seed(0)
    model = StyleGAN2ADA("tiny", resolution=16, channels=1, num_classes=NUM_CLASSES)
    model.G_ema.mapping.w_avg.normal_()
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "last.ckpt")


@pytest.fixture(scope="module")
def official_pkl(tmp_path_factory) -> Path:
    """An unconditional 3x16x16 network pickle in the stylegan2-ada-pytorch format."""
    path = tmp_path_factory.mktemp("pkl") / "network-snapshot.pkl"
    with pytest.MonkeyPatch.context() as monkeypatch:
        register_reference_modules(monkeypatch)
        write_official_pickle(path)
    return path


def predict(model: pl.LightningModule, outdir: Path, **options) -> torch.Tensor:
    """``trainer.predict(model)`` writing to ``outdir`` with ``PredictOptions(**options)``; the images."""
    model.predict_options = PredictOptions(output_dir=str(outdir), **options)
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return torch.cat(trainer.predict(model))


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def as_png_array(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in [-1, 1] as the uint8 array its PNG holds."""
    array = to_uint8(image).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


# ----------------------------------------------------------------------------------------------- load


def test_load_gives_ready_modules_from_a_checkpoint_and_a_pickle(stylegan_ckpt, official_pkl):
    from_ckpt = StyleGAN2ADA.load(stylegan_ckpt)
    reference = StyleGAN2ADA.load_from_checkpoint(stylegan_ckpt)  # still works, unchanged
    from_pkl = StyleGAN2ADA.load(official_pkl, map_location="cpu")

    for model in (from_ckpt, from_pkl):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    for key, value in reference.G_ema.state_dict().items():
        torch.testing.assert_close(from_ckpt.G_ema.state_dict()[key], value, rtol=0, atol=0)
    assert from_ckpt.sample(2, labels=torch.tensor([0, 2])).shape == (2, 1, 16, 16)
    assert (from_pkl.hparams.resolution, from_pkl.hparams.channels) == (RESOLUTION, CHANNELS)
    assert from_pkl.sample(3, truncation_psi=0.5).shape == (3, CHANNELS, RESOLUTION, RESOLUTION)
    assert float(from_pkl.augment_pipe.p) == pytest.approx(0.25)


def test_load_refuses_a_missing_file_with_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist; pass a checkpoint written by training"):
        StyleGAN2ADA.load(tmp_path / "nothing.ckpt")


def test_a_checkpoint_of_another_module_is_named_as_such(cli, tmp_path):
    torch.save(
        {"state_dict": {"layer.weight": torch.zeros(1)}, "hyper_parameters": {}}, tmp_path / "other.ckpt"
    )
    code, _, err = cli("generate", tmp_path / "other.ckpt", "--seeds", "0", "--outdir", tmp_path)
    assert code == 2 and "holds no StyleGAN2ADA or SparseTransformerDistAug weights" in err


def test_sample_noise_modes_are_reproducible_from_the_generator(stylegan_ckpt):
    model = StyleGAN2ADA.load(stylegan_ckpt)
    model.G_ema.synthesis.b16.conv1.noise_strength.fill_(1.0)  # untrained: noise would have no effect

    def draw(noise_mode: str, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return model.sample(2, labels=torch.tensor([1, 1]), generator=generator, noise_mode=noise_mode)

    torch.testing.assert_close(draw("random", 0), draw("random", 0), rtol=0, atol=0)
    assert not torch.equal(draw("random", 0)[0], draw("random", 1)[0])
    torch.testing.assert_close(draw("const", 0), draw("const", 0), rtol=0, atol=0)
    assert not torch.equal(draw("const", 0), draw("none", 0))


# ----------------------------------------------------------------------------------------------- generate


def test_generate_writes_one_png_per_seed_and_each_image_depends_only_on_its_seed(
    cli, stylegan_ckpt, tmp_path
):
    code, out, err = cli(
        "generate", stylegan_ckpt, "--seeds", "0-2,7", "--class", "1", "--grid", "--outdir", tmp_path / "a"
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "grid.png",
        "seed000000.png",
        "seed000001.png",
        "seed000002.png",
        "seed000007.png",
    ]
    assert read_png(tmp_path / "a" / "seed000007.png").shape == (16, 16)
    assert read_png(tmp_path / "a" / "grid.png").shape == picture_grid(torch.zeros(4, 1, 16, 16), 2).shape[1:]
    assert "Wrote 4 images (1x16x16) and grid.png" in out

    assert cli("generate", stylegan_ckpt, "--seeds", "7", "--class", "1", "--outdir", tmp_path / "b")[0] == 0
    np.testing.assert_array_equal(
        read_png(tmp_path / "b/seed000007.png"), read_png(tmp_path / "a/seed000007.png")
    )
    cli("generate", stylegan_ckpt, "--seeds", "7", "--class", "2", "--outdir", tmp_path / "c")
    assert not np.array_equal(
        read_png(tmp_path / "c/seed000007.png"), read_png(tmp_path / "a/seed000007.png")
    )


def test_predict_generate_and_sample_seeds_draw_a_seed_as_the_reference_scripts(cli, official_pkl, tmp_path):
    """Seed 5 of an official pickle is NVlabs' image: ``z = RandomState(5).randn(1, z_dim)``, in all three."""
    code, _, err = cli(
        "generate", official_pkl, "--seeds", "5", "--truncation-psi", "0.7", "--outdir", tmp_path / "generate"
    )
    assert code == 0, err
    model = StyleGAN2ADA.load(official_pkl)
    predict(model, tmp_path / "predict", seed=5, num_images=1, sample_kwargs={"truncation_psi": 0.7})
    sampled = model.sample_seeds([5], truncation_psi=0.7)

    G = model.G_ema
    z = torch.from_numpy(np.random.RandomState(5).randn(1, G.z_dim)).float()
    expected = G(z, None, truncation_psi=0.7, noise_mode="const").clamp(-1, 1)[0]
    np.testing.assert_array_equal(read_png(tmp_path / "generate/seed000005.png"), as_png_array(expected))
    np.testing.assert_array_equal(read_png(tmp_path / "predict/seed000005.png"), as_png_array(expected))
    torch.testing.assert_close(sampled[0], expected, atol=1e-5, rtol=0)


def test_predict_generate_and_sample_seeds_give_the_same_image_for_a_seed_and_class(
    cli, stylegan_ckpt, tmp_path
):
    """Predict draws class ``seed % 3`` (seed 4: class 1); generate and sample_seeds are told class 1."""
    model = StyleGAN2ADA.load(stylegan_ckpt)
    predicted = predict(
        model, tmp_path / "predict", seed=3, num_images=3, sample_kwargs={"truncation_psi": 0.7}
    )
    code, _, err = cli(
        "generate",
        stylegan_ckpt,
        "--seeds",
        "4",
        "--class",
        "1",
        "--trunc",
        "0.7",
        "--outdir",
        tmp_path / "gen",
    )
    assert code == 0, err
    sampled = model.sample_seeds([4], labels=torch.tensor([1]), truncation_psi=0.7)

    generated = read_png(tmp_path / "gen/seed000004.png")
    np.testing.assert_array_equal(read_png(tmp_path / "predict/seed000004.png"), generated)
    np.testing.assert_array_equal(as_png_array(sampled[0]), generated)
    torch.testing.assert_close(predicted[1], sampled[0], atol=1e-5, rtol=0)
    other_class = model.sample_seeds([4], labels=torch.tensor([2]), truncation_psi=0.7)
    assert not np.array_equal(as_png_array(other_class[0]), generated)  # the class is part of the image


def test_sample_seeds_draws_each_image_from_its_own_seed_alone(stylegan_ckpt):
    model = StyleGAN2ADA.load(stylegan_ckpt)
    model.G_ema.synthesis.b16.conv1.noise_strength.fill_(1.0)  # untrained: noise would have no effect
    for noise_mode in ("const", "random"):
        together = model.sample_seeds([4, 9, 4], labels=torch.tensor([1, 0, 1]), noise_mode=noise_mode)
        alone = model.sample_seeds([9], labels=torch.tensor([0]), noise_mode=noise_mode)
        torch.testing.assert_close(together[1], alone[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(together[0], together[2], rtol=0, atol=0)
    const, noisy = (
        model.sample_seeds([9], torch.tensor([0]), noise_mode=mode) for mode in ("const", "random")
    )
    assert not torch.equal(const, noisy)


def test_python_callers_get_errors_naming_python_arguments(stylegan_ckpt, official_pkl, tmp_path):
    model = StyleGAN2ADA.load(stylegan_ckpt)
    with pytest.raises(
        ValueError, match=r"`labels`: .*class-conditional, pass one class in \[0, 2\] per seed"
    ):
        model.sample_seeds([0, 1])
    with pytest.raises(ToolArgumentError, match=r"pass `class_idx` with a class in \[0, 2\] \(none given\)"):
        generate_stylegan(model.G_ema, [0])
    with pytest.raises(ToolArgumentError, match=r"unconditional: leave out `class_idx`"):
        generate_stylegan(StyleGAN2ADA.load(official_pkl).G_ema, [0], class_idx=1)
    distaug = SparseTransformerDistAug(
        "tiny", channels=1, resolution=4, augment=DistAugTransforms(["rotation"])
    )
    with pytest.raises(ToolArgumentError, match=r"^`transform` 'rot45': 'rot45' is not an option"):
        generate_sparse_transformer(distaug, [0], transform="rot45")
    with pytest.raises(ToolArgumentError, match=r"^`temperature` must be > 0, got 0"):
        generate_sparse_transformer(distaug, [0], temperature=0)
    with pytest.raises(ToolArgumentError, match=r"^`styles` must name layers in \[0, 5\]"):
        style_mixing_grid(model.G_ema, [0], [1], styles=[9], class_idx=0)
    with pytest.raises(ToolArgumentError, match=r"^`seeds` must give every one of the 2 grid cells"):
        interpolation_frames(model.G_ema, [0, 1, 2], grid=(2, 1), class_idx=0)
    with pytest.raises(ToolArgumentError, match=r"^`space` must be one of w, z, got 'x'"):
        interpolation_frames(model.G_ema, [0, 1], space="x", class_idx=0)
    with pytest.raises(ToolArgumentError, match=r"^`export_format` must be one of torchscript, onnx"):
        export_generator(model.G_ema, tmp_path / "G.pt", "tflite")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["generate", "{ckpt}", "--seeds", "5-3", "--class", "0"],
            r"--seeds: '5-3' is not a list .* write it like 0-9,42",
        ),
        (["generate", "{ckpt}", "--seeds", "1,x", "--class", "0"], r"the part 'x' is not"),
        (
            ["generate", "{ckpt}", "--seeds", "1", "--class", "0", "--trunc", "2.5"],
            r"'2.5' is not in \[0, 2\]",
        ),
        (
            ["generate", "{ckpt}", "--seeds", "1"],
            r"class-conditional: pass --class with a class in \[0, 2\] \(none given\)",
        ),
        (["generate", "{ckpt}", "--seeds", "1", "--class", "3"], r"in \[0, 2\] \(got 3\)"),
        (["generate", "{pkl}", "--seeds", "1", "--class", "0"], r"unconditional: leave out --class"),
        (["generate", "missing.ckpt", "--seeds", "1"], r"'missing.ckpt' does not exist; pass a checkpoint"),
        (
            ["style-mix", "{pkl}", "--rows", "1", "--cols", "2", "--styles", "0-9"],
            r"--styles must name layers in \[0, 5\]",
        ),
        (
            ["interpolate", "{pkl}", "--seeds", "0-2", "--grid", "2x1", "--out", "w.gif"],
            r"a multiple of 2 from 4; got 3",
        ),
        (["interpolate", "{pkl}", "--seeds", "0-1", "--out", "walk.avi"], r"must end in .mp4 or .gif"),
        (
            ["export", "{pkl}", "--format", "onnx", "--out", "G.onnx", "--trunc", "-1"],
            r"'-1' is not in \[0, 2\]",
        ),
    ],
)
def test_bad_arguments_end_with_one_line_naming_the_fix(
    cli, stylegan_ckpt, official_pkl, tmp_path, args, message
):
    args = [arg.format(ckpt=stylegan_ckpt, pkl=official_pkl) for arg in args]
    if "--outdir" not in args and "--out" not in args:
        args += ["--outdir", str(tmp_path)]
    code, _, err = cli(*args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert f"lightning-genaug {args[0]}: error:" in err
    assert re.search(message, err), err


def test_sparse_transformer_generates_under_a_distaug_condition(cli, tmp_path):
    torch.manual_seed(0)
    model = SparseTransformerDistAug(
        "tiny", channels=1, resolution=4, augment=DistAugTransforms(["rotation", "transposition"])
    )
    path = save_checkpoint(model, tmp_path / "distaug.ckpt")
    code, out, err = cli(
        "generate",
        path,
        "--seeds",
        "3-4",
        "--transform",
        "rot90",
        "--temperature",
        "0.9",
        "--outdir",
        tmp_path / "out",
    )
    assert code == 0, err
    loaded = SparseTransformerDistAug.load(path)
    expected = loaded.sample(1, generator=torch.Generator().manual_seed(4), temperature=0.9, transform=[1, 0])
    np.testing.assert_array_equal(read_png(tmp_path / "out/seed000004.png"), as_png_array(expected[0]))
    # predict writes the same images for the same seeds and sample_kwargs (its own seed path: a
    # torch.Generator seeded with the seed, on the module's device)
    predict(
        loaded,
        tmp_path / "predict",
        seed=3,
        num_images=2,
        sample_kwargs={"temperature": 0.9, "transform": [1, 0]},
    )
    for name in ("seed000003.png", "seed000004.png"):
        np.testing.assert_array_equal(
            read_png(tmp_path / "predict" / name), read_png(tmp_path / "out" / name)
        )

    code, _, err = cli("generate", path, "--seeds", "0", "--transform", "rot45", "--outdir", tmp_path / "out")
    assert (
        code == 2
        and "use identity, rot90, rot180, rot270, transpose, rotation=0..3, transposition=0..1" in err
    )


# ----------------------------------------------------------------------------------------------- style-mix


def test_style_mix_writes_the_grid_and_mixing_every_layer_gives_the_column_image(cli, official_pkl, tmp_path):
    code, out, err = cli(
        "style-mix", official_pkl, "--rows", "1,2", "--cols", "10-12", "--styles", "0-5", "--outdir", tmp_path
    )
    assert code == 0, err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["grid.png"] + [f"{r}-{c}.png" for r in (1, 2) for c in (10, 11, 12)])
    assert read_png(tmp_path / "grid.png").shape == (3 * 66 + 2, 4 * 66 + 2, 3)  # 16 px cells upscaled to 64
    G = StyleGAN2ADA.load(official_pkl).G_ema
    column_image = generate_stylegan(G, [11])[0]  # all 6 layers from column seed 11
    np.testing.assert_array_equal(read_png(tmp_path / "2-11.png"), as_png_array(column_image))

    cli(
        "style-mix",
        official_pkl,
        "--rows",
        "1",
        "--cols",
        "11",
        "--styles",
        "0-2",
        "--outdir",
        tmp_path / "coarse",
    )
    assert not np.array_equal(read_png(tmp_path / "coarse/1-11.png"), as_png_array(column_image))


# ----------------------------------------------------------------------------------------------- interpolate


def test_interpolate_walks_through_the_seeds_and_loops(official_pkl):
    G = StyleGAN2ADA.load(official_pkl).G_ema
    for space in ("w", "z"):
        frames = interpolation_frames(G, [3, 8], frames_per_seed=4, space=space)
        assert frames.shape == (8, 1, CHANNELS, 16, 16)
        torch.testing.assert_close(frames[0, 0], generate_stylegan(G, [3])[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(frames[4, 0], generate_stylegan(G, [8])[0], atol=1e-5, rtol=0)
    grid = interpolation_frames(G, [0, 1, 2, 3], grid=(2, 1), frames_per_seed=2)
    torch.testing.assert_close(
        grid[0], generate_stylegan(G, [0, 1]), atol=1e-5, rtol=0
    )  # cell i starts at seed i


def test_interpolate_writes_an_mp4_or_says_it_wrote_a_gif(cli, official_pkl, tmp_path, monkeypatch):
    import imageio.v3 as iio

    code, out, err = cli(
        "interpolate",
        official_pkl,
        "--seeds",
        "0-3",
        "--grid",
        "2x1",
        "--frames-per-seed",
        "3",
        "--out",
        tmp_path / "walk.mp4",
    )
    assert code == 0, err
    assert "(MP4, 6 frames at 30 fps)" in out
    assert iio.imread(tmp_path / "walk.mp4").shape == (6, 66 + 2, 2 * 66 + 2, 3)
    assert read_png(tmp_path / "walk-strip.png").shape[1] == 2 * 66 + 2  # two cells per row

    monkeypatch.setattr(video, "IMAGEIO_FFMPEG_AVAILABLE", False)
    code, out, err = cli(
        "interpolate",
        official_pkl,
        "--seeds",
        "0-1",
        "--frames-per-seed",
        "2",
        "--strip",
        "0",
        "--out",
        tmp_path / "solo.mp4",
    )
    assert code == 0, err
    assert "solo.gif (GIF, 4 frames at 30 fps) instead of solo.mp4: MP4 needs imageio-ffmpeg" in out
    assert Image.open(tmp_path / "solo.gif").n_frames == 4 and not (tmp_path / "solo.mp4").exists()


# ----------------------------------------------------------------------------------------------- project


def test_project_moves_towards_the_target_and_writes_its_results(cli, stylegan_ckpt, tmp_path):
    model = StyleGAN2ADA.load(stylegan_ckpt)
    target = generate_stylegan(model.G_ema, [4], class_idx=1)  # reachable: an image of the network
    big = torch.nn.functional.interpolate(target, size=32, mode="nearest")
    Image.fromarray(as_png_array(big[0])).save(tmp_path / "target.png")

    code, out, err = cli(
        "project",
        stylegan_ckpt,
        "--target",
        tmp_path / "target.png",
        "--class",
        "1",
        "--steps",
        "40",
        "--outdir",
        tmp_path / "proj",
    )
    assert code == 0, err
    assert "target 32x32 resized to 16x16" in out and "distance: pixels + discriminator features" in out
    written = sorted(p.name for p in (tmp_path / "proj").iterdir())
    assert written == ["progress.png", "proj.mp4", "proj.png", "projected_w.npz", "target.png"]
    w = np.load(tmp_path / "proj" / "projected_w.npz")["w"]
    assert w.shape == (1, model.G_ema.num_ws, model.G_ema.w_dim)
    np.testing.assert_array_equal(w[0, 0], w[0, -1])  # W, not W+: one w for every layer

    def error(image: np.ndarray) -> float:
        return float(np.abs(image.astype(float) - read_png(tmp_path / "proj" / "target.png")).mean())

    w_avg_image = model.G_ema.synthesis(
        model.G_ema.mapping.w_avg.expand(1, model.G_ema.num_ws, -1), noise_mode="const"
    )
    assert error(read_png(tmp_path / "proj" / "proj.png")) < 0.5 * error(
        as_png_array(w_avg_image[0].clamp(-1, 1))
    )


@pytest.mark.parametrize(
    ("mode", "size", "message"),
    [
        (
            "RGB",
            32,
            r"is a 3-channel \(RGB\) image but the network makes 1-channel images; convert it, "
            r".*convert\('L'\)",
        ),
        ("RGBA", 32, r"is a 3-channel \(RGB\) image"),  # alpha dropped, as for training images
        ("L", 8, r"is 8x8, smaller than the network's 16x16"),
    ],
)
def test_project_refuses_a_target_of_the_wrong_mode_or_size(
    cli, stylegan_ckpt, tmp_path, mode, size, message
):
    Image.new(mode, (size, size)).save(tmp_path / "target.png")
    code, _, err = cli(
        "project",
        stylegan_ckpt,
        "--target",
        tmp_path / "target.png",
        "--class",
        "0",
        "--outdir",
        tmp_path / "proj",
    )
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def test_project_target_is_decoded_as_training_images_are(tmp_path):
    """16-bit grey reads by the shared bit-depth policy (high byte); EXIF orientation is applied."""
    grey16 = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64  # 0 .. 65472
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    target, message = load_target(tmp_path / "grey16.png", channels=1, resolution=32)
    assert target.shape == (1, 1, 32, 32) and message == "target 32x32"
    np.testing.assert_array_equal(to_uint8(target[0]).numpy()[0], (grey16 >> 8).astype(np.uint8))

    upright = np.zeros((24, 16, 3), dtype=np.uint8)  # portrait, bright top half
    upright[:12] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise: viewers turn it back
    Image.fromarray(np.rot90(upright).copy()).save(tmp_path / "rotated.png", exif=exif)
    target, message = load_target(tmp_path / "rotated.png", channels=3, resolution=16)
    assert message == "target 16x24 centre-cropped to 16x16"
    rows = to_uint8(target[0]).float().mean(dim=(0, 2))
    assert rows[0] > 200 and rows[-1] < 30  # bright at the top as viewers show it, dark at the bottom


def test_project_target_that_is_not_an_image_is_a_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"--target .*notes\.png' is not a readable image"):
        load_target(tmp_path / "notes.png", channels=3, resolution=16)
    with pytest.raises(ValueError, match=r"--target .*missing\.png' is not a readable image"):
        load_target(tmp_path / "missing.png", channels=3, resolution=16)


# ----------------------------------------------------------------------------------------------- export


@pytest.mark.slow  # torch.onnx.export (dynamo) takes 8-15 s even for this network on 2 busy cores
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_export_onnx_and_torchscript_reproduce_eager(cli, tmp_path):
    import onnxruntime

    torch.manual_seed(0)
    model = StyleGAN2ADA("tiny", resolution=8, channels=1, num_classes=2)
    model.G_ema.mapping.w_avg.normal_()
    path = save_checkpoint(model, tmp_path / "small.ckpt")
    z = torch.randn(3, model.G_ema.z_dim)  # another batch size than the traced example's
    c = torch.eye(2)[[0, 1, 1]]
    with torch.no_grad():
        eager = model.G_ema.eval()(z, c, truncation_psi=0.7, noise_mode="const").clamp(-1, 1).numpy()

    code, out, err = cli("export", path, "--format", "onnx", "--out", tmp_path / "G.onnx", "--trunc", "0.7")
    assert code == 0, err
    assert "z (N, 32), c (N, 2) one-hot -> images (N, 1, 8, 8)" in out
    session = onnxruntime.InferenceSession(str(tmp_path / "G.onnx"))
    (exported,) = session.run(None, {"z": z.numpy(), "c": c.numpy()})
    np.testing.assert_allclose(exported, eager, atol=1e-4, rtol=0)

    assert (
        cli("export", path, "--format", "torchscript", "--out", tmp_path / "G.pt", "--trunc", "0.7")[0] == 0
    )
    with torch.no_grad():
        traced = torch.jit.load(str(tmp_path / "G.pt"))(z, c).numpy()
    np.testing.assert_allclose(traced, eager, atol=1e-4, rtol=0)


def test_export_without_onnx_names_the_pip_command(cli, official_pkl, tmp_path, monkeypatch):
    monkeypatch.setattr("lightning_genaug.imports.ONNX_EXPORT_AVAILABLE", False)
    code, _, err = cli("export", official_pkl, "--format", "onnx", "--out", tmp_path / "G.onnx")
    assert code == 2 and 'pip install "lightning-genaug[tools]"' in err


# ----------------------------------------------------------------------------------------------- help


@pytest.mark.parametrize("name", ["generate", "style-mix", "interpolate", "project", "export"])
def test_every_tool_has_help_with_examples(cli, name):
    code, out, _ = cli(name, "--help")
    assert code == 0
    assert out.startswith(f"usage: lightning-genaug {name} [-h]") and "NETWORK" in out and "Examples:" in out
