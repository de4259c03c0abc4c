"""Animations of the tools: MP4 through imageio's bundled ffmpeg when installed, GIF (Pillow) otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_genaug.images import grid_to_uint8
from lightning_genaug.imports import IMAGEIO_FFMPEG_AVAILABLE, TOOLS_EXTRA
from lightning_genaug.tools.parsers import VIDEO_SUFFIXES


def check_video_path(path: Path) -> Path:
    """``path`` if it ends in ``.mp4`` or ``.gif`` and is not a folder, else a ``ValueError`` saying so."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise ValueError(f"{str(path)!r} must end in .mp4 or .gif (the format is taken from the suffix)")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give a file name such as walk.mp4")
    return path


def check_written(path: Path, writer: str) -> Path:
    """``path`` if ``writer`` left a non-empty file there, else an ``OSError``: never say a file was written
    when it was not (ffmpeg can fail without raising)."""
    if not path.is_file() or path.stat().st_size == 0:
        raise OSError(
            f"{writer} wrote nothing to {str(path)!r}; check that the folder is writable and has space"
        )
    return path


def frames_to_uint8(frames: list[torch.Tensor]) -> np.ndarray:
    """``T`` pictures ``(C, H, W)`` in [0, 1] to ``(T, H', W', 3)`` uint8, padded to even sides for H.264."""
    array = np.stack([grid_to_uint8(frame) for frame in frames])
    if array.ndim == 3:  # greyscale: (T, H, W)
        array = np.repeat(array[..., None], 3, axis=3)
    height, width = array.shape[1:3]
    return np.pad(array, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), constant_values=255)


def write_animation(frames: list[torch.Tensor], path: Path, fps: float) -> tuple[Path, str]:
    """Write ``frames`` as ``path`` (``.mp4`` or ``.gif``).

    An MP4 needs imageio and imageio-ffmpeg (whose wheel bundles an ffmpeg binary); without them the
    frames go to a GIF beside it.

    Args:
        frames: pictures ``(C, H, W)`` in [0, 1], all of one size.
        path: ``.mp4`` or ``.gif`` file (parent folders are created).
        fps: frames per second.

    Returns:
        The file written and a sentence saying what was written.
    """
    check_video_path(path)
    array = frames_to_uint8(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".mp4" and IMAGEIO_FFMPEG_AVAILABLE:
        import imageio.v3 as iio

        iio.imwrite(path, array, fps=fps, codec="libx264", macro_block_size=1)
        check_written(path, "ffmpeg")
        return path, f"wrote {path} (MP4, {len(array)} frames at {fps:g} fps)"
    note = ""
    if path.suffix.lower() == ".mp4":
        note = f" instead of {path.name}: MP4 needs imageio-ffmpeg ({TOOLS_EXTRA})"
        path = path.with_suffix(".gif")
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in array]
    duration_ms = round(1000 / fps)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0)
    check_written(path, "Pillow")
    return path, f"wrote {path} (GIF, {len(array)} frames at {fps:g} fps){note}"


__all__ = ["check_video_path", "check_written", "frames_to_uint8", "write_animation"]
