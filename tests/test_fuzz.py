"""Property-based fuzz of what users hand the library: image files and datamodule/model arguments.

Every case either gives a valid result (a batch of float images in [-1, 1] with the expected shape,
with the exact pixel values where the file is lossless) or raises one of the library's own errors,
raised by library code (never an exception escaping from inside torch or PIL), and never a silently
wrong value. Bounded: the ``ci`` Hypothesis profile (tests/conftest.py) is derandomised and caps the
examples, so the fuzz is deterministic and takes a few seconds.
"""

from __future__ import annotations

import io
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_genaug.data import ImageDataModule
from lightning_genaug.data.files import ImageDecoder
from lightning_genaug.models.stylegan2 import StyleGAN2ADA

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LIBRARY = str(Path(__file__).resolve().parents[1] / "lightning_genaug")

# mode -> (numpy dtype of its samples, channels, largest sample value)
MODES = {
    "1": (np.uint8, 1, 1),
    "L": (np.uint8, 1, 255),
    "P": (np.uint8, 1, 255),
    "RGB": (np.uint8, 3, 255),
    "RGBA": (np.uint8, 4, 255),
    "LA": (np.uint8, 2, 255),
    "CMYK": (np.uint8, 4, 255),
    "I;16": (np.uint16, 1, 65535),
    "I;16B": (np.uint16, 1, 65535),
    "I": (np.int32, 1, 70000),
    "F": (np.float32, 1, 1.5),
}
GREY_MODES = ("1", "L", "I;16", "I;16B", "I", "F")  # decoded to one channel when `channels` is None
FORMATS = ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"]
LOSSLESS = {"PNG", "BMP", "TIFF"}
SUFFIXES = [".png", ".jpg", ".tif", ".bmp", ".webp", ".gif"]
# EXIF orientation -> the numpy operation that shows the stored pixels upright.
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def raised_by_the_library(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is library code."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(LIBRARY)


@st.composite
def image_files(draw) -> tuple[bytes, Image.Image | None, dict]:
    """An encoded image (some truncated), the image as written, and how it was drawn."""
    mode = draw(st.sampled_from(list(MODES)))
    fmt = draw(st.sampled_from(FORMATS))
    width, height = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype, channels, top = MODES[mode]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype is np.float32:
        samples = rng.uniform(0, top if draw(st.booleans()) else 1, shape).astype(dtype)
    else:
        low = -5 if mode == "I" and draw(st.booleans()) else 0
        samples = rng.integers(low, top + 1, shape).astype(dtype)
    if mode == "I;16B":
        image = Image.frombytes(mode, (width, height), samples.astype(">u2").tobytes())
    elif mode in ("I;16",):
        image = Image.frombytes(mode, (width, height), samples.astype("<u2").tobytes())
    else:
        image = Image.frombytes(
            mode, (width, height), samples.astype(samples.dtype.newbyteorder("<")).tobytes()
        )
    orientation = draw(st.sampled_from(list(ORIENTATIONS)))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt, exif=exif.tobytes()) if fmt in (
            "PNG",
            "JPEG",
            "WEBP",
            "TIFF",
        ) else image.save(buffer, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        hypothesis.assume(False)  # PIL cannot write this mode in this format
    data = buffer.getvalue()
    cut = draw(st.one_of(st.none(), st.integers(0, len(data) - 1)))
    info = {"mode": mode, "format": fmt, "orientation": orientation, "truncated": cut is not None}
    return (data if cut is None else data[:cut]), image, info


def expected_grey(image: Image.Image, mode: str) -> np.ndarray | None:
    """The 8-bit values the bit-depth policy gives a one-channel image (``None``: refused)."""
    samples = np.asarray(image)
    if mode in ("L",):
        return samples
    if mode in ("I;16", "I;16B"):
        return (samples >> 8).astype(np.uint8)
    if mode == "I":
        return None if samples.min() < 0 or samples.max() > 65535 else (samples >> 8).astype(np.uint8)
    if mode == "F":
        return None if samples.max() > 1 else np.rint(samples * 255).astype(np.uint8)
    return np.asarray(image.convert("L"))


@settings(max_examples=40)
@given(case=image_files(), channels=st.sampled_from([None, 1, 3]), resolution=st.sampled_from([None, 8]))
def test_every_image_file_decodes_to_the_right_values_or_a_named_error(case, channels, resolution):
    data, image, info = case
    decoder = ImageDecoder(resolution=resolution, resize_mode="resize", channels=channels)
    try:
        array = decoder(data, "fuzz.png")
    except ValueError as error:  # CorruptImageError, ImageDepthError, size errors: all ValueErrors
        assert raised_by_the_library(error), "".join(traceback.format_exception(error))
        assert "'fuzz.png'" in str(error)
        expected_refusal = info["truncated"] or info["mode"] in ("I", "F")
        assert expected_refusal, f"{info} was refused: {error}"
        return
    batch = torch.from_numpy(array).permute(2, 0, 1).float() / 127.5 - 1
    assert array.dtype == np.uint8 and batch.min() >= -1 and batch.max() <= 1
    grey_source = Image.open(io.BytesIO(data)).mode in GREY_MODES  # e.g. WEBP stores grey images as RGB
    assert array.shape[2] == (channels or (1 if grey_source else 3))
    if resolution is not None:
        assert array.shape[:2] == (resolution, resolution)
        return
    upright = (
        ORIENTATIONS[info["orientation"]]
        if info["format"] != "BMP" and info["format"] != "GIF"
        else ORIENTATIONS[1]
    )
    if info["format"] not in LOSSLESS or info["truncated"] or channels == 3 or not grey_source:
        assert array.shape[:2] == upright(np.asarray(image)).shape[:2]
        return
    expected = expected_grey(image, info["mode"])
    assert expected is not None, f"{info}: values outside the policy were accepted"
    np.testing.assert_array_equal(array[..., 0], upright(expected), err_msg=str(info))


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """Images of three sizes and two depths, a text file named .png, and a file of another suffix."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / "b.jpg")
    Image.frombytes("I;16", (7, 5), rng.integers(0, 65536, 35).astype("<u2").tobytes()).save(root / "c.png")
    (root / "d.png").write_bytes(b"not an image")
    (root / "e.txt").write_text("ignored")
    return root


@settings(max_examples=25)
@given(
    resolution=st.sampled_from([None, 0, -4, 4, 8]),
    resize_mode=st.sampled_from(["none", "resize", "center_crop", "crop"]),
    channels=st.sampled_from([None, 1, 3, 2]),
    batch_size=st.sampled_from([-1, 0, 1, 2, 5]),
    val_fraction=st.sampled_from([0.0, 0.5, 1.0, -0.1]),
    max_images=st.sampled_from([None, 0, 1, 2]),
    skip_corrupt=st.booleans(),
    in_memory=st.sampled_from([None, True, False]),
)
def test_datamodule_arguments_give_a_valid_batch_or_a_named_error(mixed_folder, **arguments):
    try:
        module = ImageDataModule(mixed_folder, xflip=True, **arguments)
        batch = next(iter(module.train_dataloader()))
    except (ValueError, TypeError, FileNotFoundError) as error:
        assert raised_by_the_library(error), "".join(traceback.format_exception(error))
        return
    images = batch[0] if isinstance(batch, list | tuple) else batch
    assert images.dtype == torch.float32 and images.min() >= -1 and images.max() <= 1
    assert images.shape[0] <= arguments["batch_size"] and images.shape[1] == (arguments["channels"] or 3)
    if arguments["resolution"] is not None:
        assert images.shape[2:] == (arguments["resolution"],) * 2


@settings(max_examples=15)
@given(
    config=st.sampled_from(["tiny", "tiniest"]),
    resolution=st.sampled_from([8, 16, 7, 0, -8]),
    channels=st.sampled_from([1, 3, 0]),
    num_classes=st.sampled_from([0, 3, -1]),
)
def test_model_arguments_give_valid_samples_or_a_named_error(config, resolution, channels, num_classes):
    try:
        model = StyleGAN2ADA(config, resolution=resolution, channels=channels, num_classes=num_classes)
        samples = model.sample(2, generator=torch.Generator().manual_seed(0))
    except (ValueError, TypeError) as error:
        assert raised_by_the_library(error), "".join(traceback.format_exception(error))
        return
    assert samples.shape == (2, channels, resolution, resolution)
    assert samples.dtype == torch.float32 and samples.min() >= -1 and samples.max() <= 1


def test_the_fuzz_runs_derandomised_in_ci():
    assert settings().derandomize and settings().max_examples <= 100
