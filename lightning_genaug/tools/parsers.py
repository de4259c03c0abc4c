"""The options of each after-training tool, and the checks of its paths made before any work.

One ``add_*_arguments`` and one ``check_*_paths`` per tool. Neither imports torch, so ``--help``, a bad
value and a bad path answer in the time Python takes to start; the checks run before the network is
loaded, so an output that cannot be written never costs a load, a projection or an export. A tool
refuses to replace a file it would write unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import os
import re
import zipfile
from pathlib import Path

from lightning_genaug.tools.arguments import (
    ToolArgumentError,
    add_class_argument,
    add_generation_arguments,
    add_network_arguments,
    add_overwrite_argument,
    add_truncation_argument,
    check_not_there,
    check_output_dir,
    check_output_file,
    parse_grid,
    parse_int_list,
    positive_int,
)

EXPORT_FORMATS = ("torchscript", "onnx")
"""``--format`` of ``export``."""

SPACES = ("w", "z")
"""``--space`` of ``interpolate``."""

VIDEO_SUFFIXES = (".mp4", ".gif")
"""The animations ``interpolate`` writes, by the suffix of ``--out``."""

PROJECT_FILES = ("target.png", "proj.png", "projected_w.npz", "progress.png")
"""What ``project`` writes in ``--outdir`` (and ``proj.mp4`` or ``proj.gif`` with ``--save-video``)."""


def seed_file_name(seed: int) -> str:
    """The file of a seed's image; :func:`lightning_genaug.images.seed_file_name` (imported when called)."""
    from lightning_genaug.images import seed_file_name as name

    return name(seed)


# --------------------------------------------------------------------------------------------- generate
def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument("--seeds", type=parse_int_list, required=True, help="seeds, e.g. 0-99 or 0,1,4-6")
    parser.add_argument("--outdir", type=Path, required=True, metavar="DIR", help="where to save the images")
    parser.add_argument("--grid", action="store_true", help="also write grid.png with every image")
    add_overwrite_argument(parser)
    add_generation_arguments(parser)
    # Left unset unless given: a StyleGAN2-only option given for a Sparse Transformer is refused.
    parser.set_defaults(truncation_psi=None, noise_mode=None)
    distaug = parser.add_argument_group("SparseTransformerDistAug networks")
    distaug.add_argument("--temperature", type=float, default=None, help="softmax temperature (default: 1.0)")
    distaug.add_argument(
        "--transform",
        default=None,
        help="DistAug condition to sample under: identity (default), rot90, rot180, rot270, transpose, "
        "reverse, or KIND=ID",
    )


def check_generate_paths(options: argparse.Namespace) -> None:
    check_output_dir(options.outdir, "outdir")
    names = [seed_file_name(seed) for seed in options.seeds] + (["grid.png"] if options.grid else [])
    check_not_there((options.outdir / name for name in names), "outdir", options.overwrite)


# -------------------------------------------------------------------------------------------- style-mix
def add_style_mix_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument("--rows", type=parse_int_list, required=True, help="row seeds, e.g. 85,100,75")
    parser.add_argument("--cols", type=parse_int_list, required=True, help="column seeds, e.g. 55,821,1789")
    parser.add_argument(
        "--styles",
        type=parse_int_list,
        default=None,
        help="layers to take from the column seeds (default: 0-6, or the first half of the layers of "
        "networks with fewer than 14)",
    )
    parser.add_argument("--outdir", type=Path, required=True, metavar="DIR", help="where to save the images")
    add_overwrite_argument(parser)
    add_generation_arguments(parser)


def check_style_mix_paths(options: argparse.Namespace) -> None:
    check_output_dir(options.outdir, "outdir")
    names = [f"{row}-{col}.png" for row in options.rows for col in options.cols] + ["grid.png"]
    check_not_there((options.outdir / name for name in names), "outdir", options.overwrite)


# ------------------------------------------------------------------------------------------ interpolate
def add_interpolate_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument(
        "--seeds",
        type=parse_int_list,
        required=True,
        help="seeds to walk through (cell i of the grid takes seeds i, i + cells, ...), e.g. 0-3",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="walk.mp4 (needs imageio-ffmpeg, else a GIF is written beside it) or walk.gif",
    )
    parser.add_argument(
        "--frames-per-seed",
        "--w-frames",
        dest="frames_per_seed",
        type=positive_int,
        default=30,
        help="frames from one seed to the next (default: %(default)s)",
    )
    parser.add_argument(
        "--grid",
        type=parse_grid,
        default=(1, 1),
        metavar="COLSxROWS",
        help="several walks side by side (default: 1x1)",
    )
    parser.add_argument(
        "--space",
        choices=SPACES,
        default="w",
        help="w: lerp between the seeds' w (default); z: slerp between their z, then map",
    )
    parser.add_argument(
        "--fps", type=positive_int, default=30, help="frames per second (default: %(default)s)"
    )
    parser.add_argument(
        "--strip",
        type=int,
        default=8,
        metavar="N",
        help="also write FILE-strip.png with N evenly spaced frames (0: none; default: %(default)s)",
    )
    add_overwrite_argument(parser)
    add_generation_arguments(parser)


def strip_path(out: Path) -> Path:
    """``walk-strip.png`` beside ``walk.mp4``: the still frames ``interpolate --strip`` writes.

    >>> strip_path(Path("out/walk.mp4")).as_posix()
    'out/walk-strip.png'
    """
    return out.with_name(f"{out.stem}-strip.png")


def check_interpolate_paths(options: argparse.Namespace) -> None:
    out = options.out
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise ToolArgumentError(
            "out", f"{{name}} {str(out)!r} must end in .mp4 or .gif (the format is taken from the suffix)"
        )
    check_output_file(out, "out", options.overwrite)
    check_not_there([strip_path(out)] if options.strip > 0 else [], "out", options.overwrite)


# ---------------------------------------------------------------------------------------------- project
def add_project_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument(
        "--target", type=Path, required=True, metavar="FILE", help="target image file to project to"
    )
    parser.add_argument("--outdir", type=Path, required=True, metavar="DIR", help="where to save the results")
    parser.add_argument(
        "--steps",
        "--num-steps",
        dest="steps",
        type=positive_int,
        default=1000,
        help="number of optimisation steps (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=303, help="random seed (default: %(default)s)")
    add_class_argument(parser)
    parser.add_argument(
        "--w-plus", action="store_true", help="optimise one w per layer (W+) instead of one w"
    )
    parser.add_argument(
        "--vgg16",
        type=Path,
        default=None,
        metavar="FILE",
        help="TorchScript VGG16 (the reference's vgg16.pt) for an LPIPS distance; default: pixels + "
        "discriminator features (nothing is downloaded)",
    )
    parser.add_argument(
        "--save-video",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write proj.mp4 (GIF without imageio-ffmpeg): target | projection (default: on)",
    )
    add_overwrite_argument(parser)


def check_vgg16_file(path: Path) -> None:
    """``path`` (``--vgg16``) exists and is a TorchScript archive (a zip file), checked without torch.

    Raises:
        ToolArgumentError: missing, or not a TorchScript file.
    """
    if not path.is_file():
        raise ToolArgumentError(
            "vgg16", f"{{name}} {str(path)!r} does not exist; give the path of a TorchScript vgg16.pt"
        )
    if not zipfile.is_zipfile(path):
        raise ToolArgumentError(
            "vgg16",
            f"{{name}} {str(path)!r} is not a TorchScript file (a zip archive written by torch.jit.save); "
            "give the reference's vgg16.pt, or leave --vgg16 out for the discriminator-feature distance",
        )


def check_project_paths(options: argparse.Namespace) -> None:
    if not options.target.is_file():
        raise ToolArgumentError(
            "target", f"{{name}} {str(options.target)!r} does not exist; give an image file"
        )
    if options.vgg16 is not None:
        check_vgg16_file(options.vgg16)
    check_output_dir(options.outdir, "outdir")
    names = [*PROJECT_FILES, *(("proj.mp4", "proj.gif") if options.save_video else ())]
    check_not_there((options.outdir / name for name in names), "outdir", options.overwrite)


# ----------------------------------------------------------------------------------------------- export
def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    add_network_arguments(parser)
    parser.add_argument(
        "--format", dest="export_format", choices=EXPORT_FORMATS, required=True, help="graph format"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="e.g. G.onnx or G.pt")
    add_overwrite_argument(parser)
    add_truncation_argument(parser, "truncation psi in [0, 2] fixed into the graph (default: %(default)s)")


def check_export_paths(options: argparse.Namespace) -> None:
    check_output_file(options.out, "out", options.overwrite)


# ---------------------------------------------------------------------------------------------- prepare
PREPARE_SUMMARY = "Convert a folder or zip of images into litdata chunks for StreamingImageDataModule."

_BYTES = re.compile(r"^\s*\d+(\.\d+)?\s*([kmgt]?b|[kmgt])?\s*$", re.IGNORECASE)


def parse_chunk_bytes(text: str) -> str:
    """``--chunk-bytes``: a size as litdata reads it, a number with an optional unit (B, KB, MB, GB, TB).

    >>> parse_chunk_bytes("64MB")
    '64MB'
    """
    if not _BYTES.match(text) or float(re.sub(r"[^\d.]", "", text)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write it like 64MB, 256KB or 1GB")
    return text.strip()


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="folder of images (class sub-folders give labels) or a .zip of one")
    parser.add_argument("output_dir", metavar="OUT", help="new or empty local directory for the chunks")
    parser.add_argument("--resolution", type=positive_int, required=True, help="output side in pixels")
    parser.add_argument("--center-crop", action="store_true", help="crop to the central square, then resize")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=3)
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="decoding processes (default: %(default)s)",
    )
    parser.add_argument("--skip-corrupt", action="store_true", help="leave unreadable files out")
    parser.add_argument("--chunk-bytes", type=parse_chunk_bytes, default="64MB", help="target chunk size")


def prepare_parser() -> argparse.ArgumentParser:
    """The parser of ``lightning-genaug prepare`` (its errors are one line, exit code 2)."""
    from lightning_genaug.tools.arguments import ToolParser

    parser = ToolParser(prog="lightning-genaug prepare", description=PREPARE_SUMMARY)
    add_prepare_arguments(parser)
    return parser


def check_prepare_paths(options: argparse.Namespace) -> None:
    source = Path(options.source).expanduser()
    if not source.exists():
        raise ToolArgumentError(
            "source", f"{{name}} {str(source)!r} does not exist; give a folder or .zip of images"
        )
    output_dir = Path(options.output_dir).expanduser()
    if output_dir.is_dir() and any(output_dir.iterdir()):
        raise ToolArgumentError(
            "output_dir", f"{{name}} {str(output_dir)!r} is not empty; choose a new directory"
        )
    check_output_dir(output_dir, "output_dir")


__all__ = [
    "EXPORT_FORMATS",
    "PREPARE_SUMMARY",
    "PROJECT_FILES",
    "SPACES",
    "VIDEO_SUFFIXES",
    "add_export_arguments",
    "add_prepare_arguments",
    "add_generate_arguments",
    "add_interpolate_arguments",
    "add_project_arguments",
    "add_style_mix_arguments",
    "check_export_paths",
    "check_generate_paths",
    "check_interpolate_paths",
    "check_prepare_paths",
    "check_project_paths",
    "check_style_mix_paths",
    "check_vgg16_file",
    "parse_chunk_bytes",
    "prepare_parser",
    "strip_path",
]
