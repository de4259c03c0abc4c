"""Images of every bit depth: scaled to 8 bits by one policy, or refused with the fix.

The policy (``pixels_to_uint8``): 16-bit samples keep their high byte (``v >> 8``, what PIL does to a
16-bit RGB PNG), floats in [0, 1] are scaled by 255 and rounded, PIL's 32-bit ``I`` is read as 16-bit
data when it fits; anything else is an ``ImageDepthError``. Folders, zips and ``.npy`` arrays agree.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_genaug.data import ImageDataModule
from lightning_genaug.data.files import ImageDecoder, ImageDepthError

SIDE = 4
# 16-bit samples spanning the range; their high bytes are 0, 15, 31, ..., 255.
SAMPLES16 = np.linspace(0, 65535, SIDE * SIDE).round().astype(np.uint16).reshape(SIDE, SIDE)
HIGH_BYTES = (SAMPLES16 >> 8).astype(np.uint8)


def png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG, grey ``(H, W)`` or RGB ``(H, W, 3)``, written by hand (PIL cannot write 16-bit RGB)."""
    height, width = samples.shape[:2]
    colour_type = 2 if samples.ndim == 3 else 0
    rows = samples.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pil_file(mode: str, values: np.ndarray, fmt: str) -> bytes:
    dtype = {"I;16": "<u2", "I;16B": ">u2", "I": "<i4", "F": "<f4"}[mode]
    buffer = io.BytesIO()
    Image.frombytes(mode, (SIDE, SIDE), values.astype(dtype).tobytes()).save(buffer, fmt)
    return buffer.getvalue()


def decode(data: bytes, channels: int | None = None) -> np.ndarray:
    return ImageDecoder(channels=channels)(data, "image")


def test_16_bit_grayscale_png_keeps_the_high_byte_not_saturated_white():
    data = pil_file("I;16", SAMPLES16, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    np.testing.assert_array_equal(decode(data)[..., 0], HIGH_BYTES)


def test_16_bit_grayscale_png_written_by_hand_reads_alike():
    np.testing.assert_array_equal(decode(png16(SAMPLES16))[..., 0], HIGH_BYTES)


def test_16_bit_rgb_png_keeps_the_high_byte_of_each_channel():
    rgb = np.stack([SAMPLES16, SAMPLES16[::-1], SAMPLES16.T], axis=-1)
    np.testing.assert_array_equal(decode(png16(rgb)), (rgb >> 8).astype(np.uint8))


def test_big_endian_16_bit_tiff_reads_like_little_endian():
    data = pil_file("I;16B", SAMPLES16, "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16B"
    np.testing.assert_array_equal(decode(data)[..., 0], HIGH_BYTES)


def test_32_bit_integer_image_is_read_as_16_bit_data_when_it_fits():
    data = pil_file("I", SAMPLES16.astype(np.int32), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    np.testing.assert_array_equal(decode(data)[..., 0], HIGH_BYTES)


def test_32_bit_integers_beyond_16_bits_are_refused_with_the_fix():
    with pytest.raises(
        ImageDepthError, match=r"'image' holds 32-bit integers in \[-5, .*Save it as an 8- or 16-bit PNG"
    ):
        decode(pil_file("I", SAMPLES16.astype(np.int32) - 5, "TIFF"))


def test_float_image_in_0_1_is_scaled_by_255():
    values = SAMPLES16 / 65535
    np.testing.assert_array_equal(decode(pil_file("F", values, "TIFF"))[..., 0], np.rint(values * 255))


def test_float_image_outside_0_1_is_refused_with_the_fix():
    with pytest.raises(
        ImageDepthError, match=r"floating-point pixels in \[0.0, 65535.0\].*Scale them to \[0, 1\]"
    ):
        decode(pil_file("F", SAMPLES16, "TIFF"))


def test_a_16_bit_image_asked_for_rgb_is_grey_replicated():
    rgb = decode(pil_file("I;16", SAMPLES16, "PNG"), channels=3)
    np.testing.assert_array_equal(rgb, np.repeat(HIGH_BYTES[..., None], 3, axis=-1))


def datamodule_images(path: Path) -> torch.Tensor:
    module = ImageDataModule(path, channels=1, batch_size=2, in_memory=True)
    module.setup("fit")
    return torch.stack([module.train_dataset[i] for i in range(len(module.train_dataset))])


def test_folders_zips_and_npy_of_16_bit_images_give_the_same_batches(tmp_path):
    stack = np.stack([SAMPLES16, SAMPLES16[::-1]])
    (tmp_path / "folder").mkdir()
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        for index, samples in enumerate(stack):
            (tmp_path / "folder" / f"{index}.png").write_bytes(pil_file("I;16", samples, "PNG"))
            archive.writestr(f"{index}.png", pil_file("I;16", samples, "PNG"))
    np.save(tmp_path / "images.npy", stack)

    expected = torch.from_numpy((stack >> 8).astype(np.float32)[:, None] / 127.5 - 1)
    for source in ("folder", "images.zip", "images.npy"):
        torch.testing.assert_close(datamodule_images(tmp_path / source), expected, rtol=0, atol=0, msg=source)


def test_float_npy_in_0_1_reads_like_float_images(tmp_path):
    values = (SAMPLES16 / 65535).astype(np.float32)[None]
    np.save(tmp_path / "images.npy", values)
    expected = torch.from_numpy(np.rint(values * 255).astype(np.float32)[:, None] / 127.5 - 1)
    torch.testing.assert_close(datamodule_images(tmp_path / "images.npy"), expected, rtol=0, atol=0)


def test_npy_of_wider_integers_is_refused_with_the_fix(tmp_path):
    np.save(tmp_path / "images.npy", SAMPLES16.astype(np.int64)[None])
    with pytest.raises(
        ImageDepthError, match=r"images\.npy' holds pixels of type int64; expected uint8.*uint16"
    ):
        datamodule_images(tmp_path / "images.npy")
