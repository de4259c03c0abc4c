"""Every ``python`` and ``bash`` code block of README.md and docs/*.md runs as written (issue 34).

Each block runs in a fresh folder (``examples/`` linked in), its commands in order: ``lightning-genaug ...``
in-process, ``python examples/<script>.py`` with runpy, a Python block with ``exec``. Blocks fenced as
``yaml`` or ``text`` (configs shown in part, printed output) are not run here.

What a block needs from outside is filled by the rules below, stated once:

* ``SUBSTITUTIONS``: the reader's home ``~/`` is the block's folder; ``--ckpt_path ...`` (docs/cli.md)
  is a checkpoint of ``distaug.yaml``, ``distaug.ckpt``.
* ``INPUTS``: a path the docs name as the reader's own (``my-photos``, ``last.ckpt``, ``network.pkl``...)
  is made by the test, only when a command names it and it does not exist yet (so a block that writes
  it itself, as the README's ``fit`` writes ``runs/ada/.../last.ckpt``, reads its own).
* ``BOUNDS``: long commands are shortened by an option put in place of the command's own value of it:
  ``fit`` stops after 2 optimiser steps (4 when it resumes a checkpoint of 2), ``project`` takes 5
  steps. Every ``Trainer`` a Python block or example script builds runs one epoch of at most 4 batches.
* ``NAMES``: the names a Python block leaves to its reader (``GAN``, ``datamodule``, ``images``...) are
  bound to small objects of the right kind, per page.
* ``ENVIRONMENT``: ``WANDB_MODE=disabled``: W&B runs without an account and sends nothing.

Blocks and commands that cannot run here (network, GPU, several processes, minutes of training) are in
``SKIPPED``, each with its reason; an entry that matches nothing fails
``test_every_skip_names_a_block_or_a_command``. The same ``fit`` shown on several pages runs once
(:class:`Runner`). The whole file takes about 60 s on a 2-core machine that a training job keeps busy,
about 15 s of it in two ONNX exports; the blocks of 5 s or more are marked ``slow`` (``SLOW``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import re
import runpy
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN_LANGUAGES = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash", "console": "bash"}

# (page, text of a command, or of a Python block's first line) -> why it is not run here. A bash block
# runs its other commands; it is skipped when every command is.
SKIPPED: dict[tuple[str, str], str] = {
    ("README.md", "python -m venv .venv"): "makes a venv; CI runs the quickstart's steps (.ci/run)",
    ("README.md", ". .venv/bin/activate"): "the venv of the command before",
    ("README.md", "pip install -e"): "installs the package and its extras (network)",
    ("README.md", "pytest"): "the whole test suite, this file included",
    ("docs/index.md", "python -m venv .venv"): "makes a venv",
    ("docs/index.md", ". .venv/bin/activate"): "the venv of the command before",
    ("docs/index.md", "pip install -e"): "installs the package (network)",
    ("docs/installation.md", "python -m venv .venv"): "makes a venv",
    ("docs/installation.md", ". .venv/bin/activate"): "the venv of the command before",
    ("docs/installation.md", "pip install -e"): "installs the package and its extras (network)",
    ("docs/your-own-dataset.md", 'pip install -e ".[stream]"'): "installs an extra (network)",
    ("docs/your-own-dataset.md", "fit --config examples/configs/ada-streaming.yaml"): (
        "the auto preset at 256 px: minutes a batch on a CPU (a GPU config)"
    ),
    ("docs/add-ada-to-your-gan.md", "import backward_and_sync"): (
        "lines of a training_step (self, d_loss, opt_d); tests/test_ddp.py runs backward_and_sync"
    ),
    ("docs/distaug.md", "import torch"): "CUDA (.cuda()) and the CIFAR-10 test set on disk",
    ("docs/distaug.md", "distaug-cifar10.yaml"): "CIFAR-10 on disk, sized for a GPU",
    ("docs/scalegan.md", "scalegan-cifar10.yaml"): "CIFAR-10 on disk, sized for a GPU",
    ("docs/stylegan2.md", "ada-cifar10.yaml"): "CIFAR-10 on disk",
    ("docs/stylegan2.md", "--trainer.devices 2 --trainer.strategy ddp"): "two processes; tests/test_ddp.py",
    ("docs/transfer-learning.md", "ada-from-official.yaml"): "NVlabs' FFHQ network pickle (a download)",
    ("docs/wandb.md", "logger.experiment.define_metric"): "a live W&B run; tests/test_wandb.py covers it",
    ("docs/wandb.md", "wandb sweep"): "a W&B sweep needs a W&B account (network)",
    ("docs/wandb.md", "wandb agent"): "the agent of that sweep (network)",
    ("docs/performance.md", "python benchmarks/augment.py --reference"): "a benchmark: minutes, NVlabs' code",
    ("docs/performance.md", "python benchmarks/augment.py --kornia"): "a benchmark: minutes",
    ("docs/performance.md", "python benchmarks/metrics.py"): "a benchmark: minutes",
    ("docs/performance.md", "benchmarks/train_step.py"): "a benchmark: minutes, NVlabs' code",
    ("docs/performance.md", "benchmarks/ddp_step_time.py"): "a benchmark: several processes, minutes",
    ("docs/performance.md", "git clone https://github.com/NVlabs"): "clones NVlabs' code (network)",
    ("docs/performance.md", "benchmarks/gpu_report.py"): "a GPU benchmark",
    ("docs/performance.md", "benchmarks/after_training.py"): "a benchmark: minutes",
    ("docs/results.md", "--setting cifar-overfit"): "an experiment: hours; tests/test_limited_data*.py",
    ("docs/results.md", "--setting digits-overfit"): "an experiment: hours; tests/test_limited_data.py",
    ("docs/results.md", "benchmarks/overfit_rt_trace.py"): "an experiment's jobs; test_limited_data_cifar",
    ("docs/results.md", "--quick --out runs/limited_data_quick"): "minutes; tests/test_limited_data.py",
    ("docs/results.md", "--kimg 500 --eval-kimg 50"): "a GPU experiment on CIFAR-10 on disk",
    ("docs/results.md", "--kimg 30 --eval-kimg 5"): "an experiment: about an hour on a CPU",
    ("docs/results.md", "benchmarks/autoencoder_d_augmentation.py"): "an experiment: hours; CIFAR-10 on disk",
}

# (page, text in the block's first line) of the blocks that take 5 s or more on a loaded 2-core machine
# (an ONNX export takes 4-6 s; docs/cli.md's tour runs nine commands).
SLOW: set[tuple[str, str]] = {
    ("README.md", "lightning-genaug generate last.ckpt --seeds 0-99"),
    ("docs/after-training.md", "lightning-genaug export last.ckpt --format onnx"),
    ("docs/cli.md", "lightning-genaug --help"),
}

ENVIRONMENT = {"WANDB_MODE": "disabled"}


# ------------------------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository, e.g. "docs/cli.md"
    line: int  # of the opening fence
    language: str  # "python" or "bash"
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```", re.M | re.S)


def doc_blocks() -> list[Block]:
    """The ``python`` and ``bash`` blocks of every page, indented ones (in list items) dedented."""
    blocks = []
    for path in PAGES:
        text = path.read_text()
        for match in FENCE.finditer(text):
            language = RUN_LANGUAGES.get(match["language"])
            if language is None:
                continue
            indent = len(match["indent"])
            code = "".join(line[indent:] for line in match["code"].splitlines(keepends=True))
            line = text.count("\n", 0, match.start()) + 1
            blocks.append(Block(str(path.relative_to(REPO)), line, language, code))
    return blocks


BLOCKS = doc_blocks()


def skip_reason(page: str, text: str) -> str | None:
    return next((why for (where, key), why in SKIPPED.items() if where == page and key in text), None)


def block_skip_reason(block: Block) -> str | None:
    """A Python block is skipped by its first line; a bash block when each of its commands is skipped."""
    if block.language == "python":
        return skip_reason(block.page, block.code.splitlines()[0])
    reasons = [skip_reason(block.page, command) for command in shell_commands(block.code)]
    return reasons[0] if all(reasons) else None


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuations joined, comments and blank lines dropped, ``&&`` split."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        commands += [part.strip() for part in line.split(" && ") if part.strip() and not line.startswith("#")]
    return commands


# ------------------------------------------------------------------------------------------- inputs


def colour_folder(folder: Path, count: int = 16) -> None:
    """``count`` random colour PNGs of 32x32: the smallest size ``ada-folder.yaml`` takes."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{index:04d}.png")


def digit_png(path: Path) -> None:
    """A 16x16 greyscale '2'-like image (the main job's image shape) to project."""
    pixels = np.zeros((16, 16), dtype=np.uint8)
    pixels[3, 4:12] = pixels[8, 4:12] = pixels[12, 4:12] = 255
    pixels[3:8, 11] = pixels[8:12, 4] = 255
    Image.fromarray(pixels).save(path)


@contextlib.contextmanager
def in_folder(folder: Path):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        yield


def run_command(argv: list[str], stdout: io.StringIO | None = None) -> None:
    """``lightning-genaug ARGV...`` in-process; a non-zero exit fails with the output."""
    from lightning_genaug.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["lightning-genaug"])
        captured = io.StringIO()
        with contextlib.redirect_stdout(stdout or captured), contextlib.redirect_stderr(captured):
            try:
                main(argv)
                code = 0
            except SystemExit as exit_info:
                code = exit_info.code or 0
    assert code == 0, f"`lightning-genaug {shlex.join(argv)}` exited {code}:\n{captured.getvalue()[-3000:]}"


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime)}`` of the files in ``folder``, ``examples/`` left out."""
    state = {}
    for directory, subdirectories, files in os.walk(folder):
        if Path(directory) == folder and "examples" in subdirectories:
            subdirectories.remove("examples")
        for name in files:
            path = Path(directory, name)
            stat = path.stat()
            state[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return state


def read_by(argv: list[str], state: dict[str, tuple[int, int]]) -> frozenset[str]:
    """The files of ``state`` that ``lightning-genaug ARGV`` may read or number its run after: all but those
    of the run folders (``runs/<name>/``) that neither the command nor its config files name."""
    named = " ".join(argv)
    for argument in argv:
        if argument.endswith(".yaml") and Path(argument).is_file():
            named += Path(argument).read_text()
    folders = tuple(f"{folder}/" for folder in re.findall(r"runs/[\w.-]+", named))
    return frozenset(name for name in state if not name.startswith("runs/") or name.startswith(folders))


class Runner:
    """Runs commands and makes ``INPUTS``, once per test module (per xdist worker).

    A ``lightning-genaug`` command that already ran with the same arguments, among the same files that it
    may read (:func:`read_by`), is not run again: the files it wrote and its output are copied from that
    run (runs are seeded). Several pages show the same ``fit``; each distinct command still runs.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs: dict[str, Path] = {}
        self.done: dict[tuple, tuple[Path, str]] = {}

    def command(self, argv: list[str], stdout: io.StringIO) -> None:
        folder = Path.cwd()
        before = folder_state(folder)
        key = (tuple(argv), read_by(argv, before))
        if key in self.done:
            files, output = self.done[key]
            shutil.copytree(files, folder, dirs_exist_ok=True, symlinks=True)
            stdout.write(output)
            return
        run_command(argv, stdout)
        files = Path(tempfile.mkdtemp(dir=self.root))
        for name, stat in folder_state(folder).items():
            if before.get(name) != stat:
                (files / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / name, files / name)
        self.done[key] = (files, stdout.getvalue())

    def job(self, argv: list[str], inputs: tuple[str, ...] = ()) -> Path:
        """A fresh folder in which ``lightning-genaug ARGV`` ran, as a block's first command would run it."""
        folder = Path(tempfile.mkdtemp(dir=self.root))
        (folder / "examples").symlink_to(REPO / "examples")
        with in_folder(folder):
            place_inputs(" ".join(inputs), self)
            self.command(argv, io.StringIO())
        return folder

    def made(self, name: str) -> Path:
        """The file or folder an ``INPUTS`` entry stands for."""
        if name not in self.inputs:
            self.inputs[name] = getattr(self, "make_" + name.replace(".", "_").replace("-", "_"))()
        return self.inputs[name]

    def make_photos(self) -> Path:
        colour_folder(self.root / "photos")
        return self.root / "photos"

    def make_digit_png(self) -> Path:
        digit_png(self.root / "digit.png")
        return self.root / "digit.png"

    def make_last_ckpt(self) -> Path:
        job = self.job(bounded(["fit", "--config", "examples/configs/ada.yaml"]))
        return job / "runs/ada/lightning_logs/version_0/checkpoints/last.ckpt"

    def make_ada_folder_ckpt(self) -> Path:
        argv = ["fit", "--config", "examples/configs/ada-folder.yaml", "--data.path", "my-photos"]
        job = self.job(bounded(argv), inputs=("my-photos",))
        return job / "runs/ada-folder/lightning_logs/version_0/checkpoints/last.ckpt"

    def make_distaug_ckpt(self) -> Path:
        job = self.job(bounded(["fit", "--config", "examples/configs/distaug.yaml"]))
        return job / "runs/distaug/lightning_logs/version_0/checkpoints/last.ckpt"

    def make_network_pkl(self) -> Path:
        from test_official_pickle import register_reference_modules, write_official_pickle

        path = self.root / "network.pkl"
        with pytest.MonkeyPatch.context() as patch:
            register_reference_modules(patch)
            write_official_pickle(path)
        return path

    def make_G_onnx(self) -> Path:  # noqa: N802 (the file's name)
        argv = ["export", "last.ckpt", "--format", "onnx", "--out", "G.onnx", "--truncation-psi", "0.7"]
        job = self.job(argv, inputs=("last.ckpt",))  # as docs/after-training.md writes it (a cached run)
        return job / "G.onnx"


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Runner:
    return Runner(tmp_path_factory.mktemp("docs"))


# A path the docs name as the reader's (a regex of the doc's text) -> what the test puts there
# (`Runner.made`). Paths under `~` become folders of the block's own folder (`~/my-photos` -> `my-photos`).
INPUTS: dict[str, str] = {
    r"my-photos": "photos",  # a folder of 16 colour 32x32 PNGs (the smallest size ada-folder.yaml takes)
    r"my-images": "photos",
    r"runs/ada/lightning_logs/version_0/checkpoints/last\.ckpt": "last.ckpt",  # ada.yaml after 2 steps
    r"(?<![\w/.-])last\.ckpt": "last.ckpt",
    r"runs/ada-folder/lightning_logs/version_0/checkpoints/last\.ckpt": "ada-folder.ckpt",  # 2 steps
    r"(?<![\w/.-])distaug\.ckpt": "distaug.ckpt",  # distaug.yaml after 2 steps
    r"(?<![\w/.-])(?:network|ffhq|network-snapshot)\.pkl": "network.pkl",  # NVlabs' format, 3x16x16
    r"(?<![\w/.-])(?:digit|real-digit-2)\.png": "digit.png",  # a 16x16 greyscale digit
    r'(?<=InferenceSession\(")G\.onnx': "G.onnx",  # read: the export of last.ckpt in the block above it
}

SUBSTITUTIONS = [
    ("~/", ""),  # the reader's home: the block's folder
    ("--ckpt_path ... ", "--ckpt_path distaug.ckpt "),  # docs/cli.md: a checkpoint of distaug.yaml
]


def place_inputs(text: str, runner: Runner) -> None:
    """Put in the current folder each ``INPUTS`` path that ``text`` names and that does not exist yet."""
    for pattern, key in INPUTS.items():
        for match in re.finditer(pattern, text):
            target = Path(match.group(0))
            if target.exists():
                continue
            source = runner.made(key)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)


# ------------------------------------------------------------------------------------------- bounds


def bounded(argv: list[str]) -> list[str]:
    """``BOUNDS``: the options appended to a long command, in place of the command's own values of them
    (the value appended would win anyway). ``fit ... --trainer.max_steps 20`` is then the same command as
    the ``fit ...`` of another page, which :class:`Runner` runs once."""
    if argv[:1] == ["fit"] and not {"--help", "--print_config"} & set(argv):
        steps = "4" if "--ckpt_path" in argv else "2"  # a resume continues a checkpoint of 2 steps
        return [*without(argv, "--trainer.max_steps"), "--trainer.max_steps", steps]
    if argv[:1] == ["project"]:
        return [*without(argv, "--steps"), "--steps", "5"]
    return argv


def without(argv: list[str], option: str) -> list[str]:
    """``argv`` less each ``OPTION VALUE`` pair of ``option``.

    >>> without(["fit", "--trainer.max_steps", "20", "--ckpt_path", "a.ckpt"], "--trainer.max_steps")
    ['fit', '--ckpt_path', 'a.ckpt']
    """
    kept, skip = [], False
    for argument in argv:
        if skip or argument == option:
            skip = not skip
            continue
        kept.append(argument)
    return kept


@contextlib.contextmanager
def short_trainers():
    """Every ``Trainer`` built within runs one epoch of at most 4 batches."""
    init = pl.Trainer.__init__

    def short_init(self, *args, **kwargs):
        kwargs.update(max_epochs=1, max_steps=-1, limit_train_batches=4, enable_progress_bar=False)
        init(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pl.Trainer, "__init__", short_init)
        yield


# -------------------------------------------------------------------------------------------- names


def example(name: str) -> dict:
    """The globals of ``examples/<name>.py`` (its classes), without running its ``main``."""
    return runpy.run_path(str(REPO / "examples" / f"{name}.py"), run_name="docs_example")


def gan_names() -> dict:
    """``GAN``, ``my_gan``: examples/add_ada_to_your_gan.py's GAN; ``datamodule``: its digits, 2 batches."""
    gan = example("add_ada_to_your_gan")

    class TwoBatches(gan["DigitsDataModule"]):
        def setup(self, stage: str) -> None:
            super().setup(stage)
            self.train_set = Subset(self.train_set, range(2 * self.batch_size))

    return {"GAN": gan["GAN"], "my_gan": gan["GAN"](), "datamodule": TwoBatches()}


def autoencoder_names() -> dict:
    """``MyAutoencoder``: examples/autoencoder_gan.py's model; ``datamodule``: its digits, 2 batches."""
    autoencoder = example("autoencoder_gan")

    class TwoBatches(autoencoder["DigitImages"]):
        def setup(self, stage: str) -> None:
            super().setup(stage)
            self.train_set = Subset(self.train_set, range(2 * self.batch_size))

    return {"MyAutoencoder": autoencoder["AutoencoderGAN"], "datamodule": TwoBatches()}


def image_names() -> dict:
    """``images``, ``x``: a batch ``(8, 3, 16, 16)`` in [-1, 1]."""
    images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return {"images": images, "x": images}


def training_loop_names() -> dict:
    """docs/augment.md's loop: a 4-batch loader of 3x16x16 images, a linear G, a one-conv D, on the CPU."""
    z_dim, batch = 16, 8
    reals = torch.rand(4 * batch, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    generator = nn.Sequential(nn.Linear(z_dim, 3 * 16 * 16), nn.Tanh(), nn.Unflatten(1, (3, 16, 16)))
    discriminator = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    loader = DataLoader(TensorDataset(reals), batch_size=batch)
    return {
        "device": "cpu",
        "batch": batch,
        "z_dim": z_dim,
        "loader": [reals for (reals,) in loader],
        "generator": generator,
        "discriminator": discriminator,
    }


def metrics_names() -> dict:
    """Features ``(1000, 16)``, per-image NLLs and the logits and targets of 2 images ``3x8x8``."""
    generator = torch.Generator().manual_seed(0)
    return {
        "real_features": torch.randn(1000, 16, generator=generator),
        "fake_features": torch.randn(1000, 16, generator=generator) + 0.1,
        "total_nll_nats": torch.rand(4, generator=generator) * 3 * 32 * 32 * 4,
        "logits": torch.randn(2, 256, 3, 8, 8, generator=generator),
        "targets": torch.randint(0, 256, (2, 3, 8, 8), generator=generator),
    }


NAMES: dict[str, Callable[[], dict]] = {
    "README.md": gan_names,
    "docs/add-ada-to-your-gan.md": gan_names,
    "docs/kornia.md": gan_names,
    "docs/augment-any-discriminator.md": autoencoder_names,
    "docs/augment.md": lambda: {**image_names(), **training_loop_names()},
    "docs/scalegan.md": image_names,
    "docs/metrics.md": metrics_names,
}


# -------------------------------------------------------------------------------------------- tests


def run_block(block: Block, runner: Runner) -> None:
    code = block.code
    for doc_text, replacement in SUBSTITUTIONS:
        code = code.replace(doc_text, replacement)
    if block.language == "python":
        place_inputs(code, runner)
        namespace = {"__name__": "__docs__", **NAMES.get(block.page, dict)()}
        with short_trainers():
            exec(compile(code, block.id, "exec"), namespace)
        return
    for command in shell_commands(code):
        if skip_reason(block.page, command):
            continue
        place_inputs(command, runner)
        argv = shlex.split(command, comments=True)
        redirect = argv.index(">") if ">" in argv else None
        argv, out_file = (argv[:redirect], argv[redirect + 1]) if redirect is not None else (argv, None)
        if argv[0] == "lightning-genaug":
            stdout = io.StringIO()
            runner.command(bounded(argv[1:]), stdout)
            if out_file:
                Path(out_file).write_text(stdout.getvalue())
        elif argv[0] == "python" and argv[1].startswith("examples/"):
            with short_trainers(), pytest.MonkeyPatch.context() as patch:
                patch.setattr(sys, "argv", argv[1:])
                runpy.run_path(str(REPO / argv[1]), run_name="__main__")
        else:
            pytest.fail(f"{block.id}: no runner for `{command}`: add a rule or a reviewed entry in SKIPPED")


@pytest.fixture(autouse=True)
def forget_example_classes():
    """Collect the classes a block defined: jsonargparse resolves short class names (``DigitsDataModule``)
    among the live subclasses, and the examples define a ``DigitsDataModule`` of their own."""
    yield
    if any(cls.__module__ in BLOCK_MODULES for cls in subclasses(pl.LightningModule, pl.LightningDataModule)):
        gc.collect()  # about 0.5 s: only after the blocks that need it


BLOCK_MODULES = ("docs_example", "__main__", "__docs__")  # where run_block's classes are defined


def subclasses(*classes: type) -> list[type]:
    found, todo = [], list(classes)
    while todo:
        found += (children := todo.pop().__subclasses__())
        todo += children
    return found


def is_slow(block: Block) -> bool:
    return any(page == block.page and text in block.code.splitlines()[0] for page, text in SLOW)


@pytest.mark.parametrize(
    "block", [pytest.param(block, id=block.id, marks=[pytest.mark.slow] * is_slow(block)) for block in BLOCKS]
)
def test_doc_block_runs_as_written(block: Block, runner: Runner, tmp_path: Path, monkeypatch):
    reason = block_skip_reason(block)
    if reason:
        pytest.skip(reason)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    torch.manual_seed(0)
    run_block(block, runner)


def test_every_skip_names_a_block_or_a_command():
    """A stale entry of ``SKIPPED`` (its block rewritten or gone) fails here instead of hiding nothing."""
    texts = {}
    for block in BLOCKS:
        lines = [block.code.splitlines()[0]]
        if block.language == "bash":
            lines += shell_commands(block.code)
        texts.setdefault(block.page, []).extend(lines)
    stale = [key for key in SKIPPED if not any(key[1] in line for line in texts.get(key[0], []))]
    assert stale == []
    assert [key for key in SLOW if not any(block.page == key[0] and is_slow(block) for block in BLOCKS)] == []


def test_the_pages_have_blocks_of_both_kinds():
    """The extraction sees every page's fences (indented ones too): a broken regex would run nothing."""
    assert {block.language for block in BLOCKS} == {"python", "bash"}
    assert len({block.page for block in BLOCKS}) >= 15
    assert any(block.page == "docs/distaug.md" and block.language == "python" for block in BLOCKS)
