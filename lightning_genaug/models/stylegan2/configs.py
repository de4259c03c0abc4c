"""StyleGAN2-ADA configurations as data: network sizes and training hyperparameters.

The presets reproduce the public reference's ``train.py --cfg`` table (StyleGAN2-ADA paper, App. D):

=========  ==========  ===  ===========  =======  =======  =======  ====  ======
config     fmaps       map  batch/mbstd  lr       gamma    ema      ramp  D
=========  ==========  ===  ===========  =======  =======  =======  ====  ======
stylegan2  1 (32768)   8    32 / 4       0.002    10       10       -     resnet
paper256   0.5         8    64 / 8       0.0025   1        20       -     resnet
paper512   1           8    64 / 8       0.0025   0.5      20       -     resnet
paper1024  1           8    32 / 4       0.002    2        10       -     resnet
cifar      1           2    64 / 32      0.0025   0.01     500      0.05  orig
auto       by res.     2    by res.      by res.  by res.  by res.  0.05  resnet
=========  ==========  ===  ===========  =======  =======  =======  ====  ======

``cifar`` also turns off style mixing and path-length regularisation. ``auto`` follows the
reference's heuristics for a resolution and a number of processes. ``tiny`` (about 50k parameters per
network) is for tests and smoke runs. ``batch_size`` is the reference's global batch for the preset (all
processes together), the batch its ``gamma`` and ``ema_kimg`` are sized for; ``auto`` derives them from
that *heuristic* batch (the resolution and ``world_size``, which ``StyleGAN2ADA`` leaves at 1). Nothing
trains with ``batch_size``: the batch is the datamodule's, and ``StyleGAN2ADA`` warns at its first
training batch when that global batch differs and it takes ``gamma`` or ``ema_kimg`` from the preset
(:func:`batch_size_mismatch`). Set ``R1(gamma=...)`` and ``config_overrides: {ema_kimg: ...}`` for your
batch. ``gamma`` and ``r1_interval`` are only the defaults of the D regulariser's ``gamma`` and
``every_n_batches`` (:mod:`lightning_genaug.regularizers`), which hold the values a run uses.

Presets use the package's one preset mechanism (:mod:`lightning_genaug.models.presets`), shared with the
Sparse Transformer's :func:`~lightning_genaug.models.sparse_transformer.sparse_transformer_config`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_genaug._checks import check_choice, check_positive_int, check_range
from lightning_genaug.models.presets import overrides_type, replace_fields
from lightning_genaug.models.stylegan2.networks import DISCRIMINATOR_ARCHITECTURES, Discriminator, Generator

CONFIG_NAMES = ("auto", "stylegan2", "paper256", "paper512", "paper1024", "cifar", "tiny")


@dataclass(frozen=True)
class StyleGAN2Config:
    """Everything that defines a StyleGAN2-ADA run except the data and the augmentation."""

    name: str
    # --- networks
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8  # 2 suffices for small datasets (reference `auto` and `cifar`)
    mapping_lr_multiplier: float = 0.01  # the mapping MLP learns 100x slower (StyleGAN, Sec. C)
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    num_fp16_res: int = 4  # float16 for the 4 highest resolutions (CUDA; CPU only inside an autocast)
    conv_clamp: float | None = 256.0  # keeps float16 activations finite
    d_architecture: str = "resnet"  # "orig" for CIFAR: the residual D did not help there
    mbstd_group: int = 4  # minibatch-std group size; the batch per process must be a multiple
    mbstd_num_channels: int = 1
    # Weights and activations in NHWC: 1.13-1.39x faster training steps on CPU at every width measured
    # (docs/performance.md), and the layout cuDNN's tensor cores want; values are unchanged.
    channels_last: bool = True
    # --- training
    batch_size: int = 32  # the global batch gamma and ema_kimg are sized for (the datamodule's is used)
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)  # beta1 = 0: no momentum, as in the papers
    gamma: float = 10.0  # default of the D regulariser's weight (R1(gamma=None))
    ema_kimg: float = 10.0  # half-life of the generator EMA, in thousands of images
    ema_rampup: float | None = None  # EMA half-life <= ema_rampup * images seen; None: no ramp-up
    style_mixing_prob: float = 0.9
    pl_weight: float = 2.0  # path-length regularisation weight; 0 disables it
    r1_interval: int = 16  # default of the D regulariser's every_n_batches (lazy R1)
    pl_interval: int = 4  # lazy path-length regularisation every 4 batches
    pl_batch_shrink: int = 2  # the path-length phase uses batch // pl_batch_shrink images
    pl_decay: float = 0.01  # decay of the running mean path length

    def __post_init__(self) -> None:
        for name in (
            "z_dim",
            "w_dim",
            "mapping_layers",
            "channel_base",
            "channel_max",
            "mbstd_group",
            "batch_size",
            "r1_interval",
            "pl_interval",
            "pl_batch_shrink",
        ):
            check_positive_int(name, getattr(self, name))
        check_positive_int("num_fp16_res", self.num_fp16_res, allow_zero=True)
        check_positive_int("mbstd_num_channels", self.mbstd_num_channels, allow_zero=True)
        check_range("mapping_lr_multiplier", self.mapping_lr_multiplier, 0.0, low_inclusive=False)
        check_range("lr", self.lr, 0.0, low_inclusive=False)
        check_range("gamma", self.gamma, 0.0)
        check_range("ema_kimg", self.ema_kimg, 0.0)
        check_range("style_mixing_prob", self.style_mixing_prob, 0.0, 1.0)
        check_range("pl_weight", self.pl_weight, 0.0)
        check_range("pl_decay", self.pl_decay, 0.0, 1.0, low_inclusive=False)
        if self.conv_clamp is not None:
            check_range("conv_clamp", self.conv_clamp, 0.0, low_inclusive=False)
        if self.ema_rampup is not None:
            check_range("ema_rampup", self.ema_rampup, 0.0, low_inclusive=False)
        if len(self.betas) != 2 or not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"`betas` must be two numbers in [0, 1), got {self.betas!r}.")
        object.__setattr__(self, "betas", tuple(float(beta) for beta in self.betas))
        object.__setattr__(
            self,
            "d_architecture",
            check_choice("d_architecture", self.d_architecture, DISCRIMINATOR_ARCHITECTURES),
        )


StyleGAN2Overrides = overrides_type(
    StyleGAN2Config, "StyleGAN2Overrides", exclude=("name", "gamma", "r1_interval")
)
"""The type of ``StyleGAN2ADA(config_overrides=...)``: any :class:`StyleGAN2Config` field but ``name`` and
the D regulariser's ``gamma`` / ``r1_interval``, each optional, so that the CLI checks keys and values."""

# The reference's table; fields not named keep the StyleGAN2Config defaults (the `stylegan2` values).
STYLEGAN2_PRESETS: dict[str, StyleGAN2Config] = {
    "stylegan2": StyleGAN2Config("stylegan2"),
    "paper256": StyleGAN2Config(
        "paper256", channel_base=16384, batch_size=64, mbstd_group=8, lr=0.0025, gamma=1.0, ema_kimg=20.0
    ),
    "paper512": StyleGAN2Config(
        "paper512", batch_size=64, mbstd_group=8, lr=0.0025, gamma=0.5, ema_kimg=20.0
    ),
    "paper1024": StyleGAN2Config("paper1024", gamma=2.0),
    "cifar": StyleGAN2Config(
        "cifar",
        mapping_layers=2,
        batch_size=64,
        mbstd_group=32,
        lr=0.0025,
        gamma=0.01,
        ema_kimg=500.0,
        ema_rampup=0.05,
        style_mixing_prob=0.0,
        pl_weight=0.0,
        d_architecture="orig",
    ),
    "tiny": StyleGAN2Config(
        "tiny",
        z_dim=32,
        w_dim=32,
        mapping_layers=2,
        channel_base=256,
        channel_max=32,
        num_fp16_res=0,
        batch_size=8,
        lr=0.0025,
        gamma=0.05,
        ema_kimg=0.01,
    ),
}


def _auto_config(img_resolution: int, world_size: int) -> StyleGAN2Config:
    """The reference's ``auto`` heuristics: bigger nets above 256 px, batch and R1 scaled to resolution."""
    batch_size = max(min(world_size * min(4096 // img_resolution, 32), 64), world_size)
    return StyleGAN2Config(
        "auto",
        channel_base=32768 if img_resolution >= 512 else 16384,
        mapping_layers=2,
        batch_size=batch_size,
        mbstd_group=min(batch_size // world_size, 4),
        lr=0.002 if img_resolution >= 1024 else 0.0025,
        gamma=0.0002 * img_resolution**2 / batch_size,
        ema_kimg=batch_size * 10 / 32,
        ema_rampup=0.05,
    )


def stylegan2_config(name: str, img_resolution: int, *, world_size: int = 1, **overrides) -> StyleGAN2Config:
    """The named preset for a resolution, with fields replaced by ``overrides``.

    Args:
        name: one of ``auto``, ``stylegan2``, ``paper256``, ``paper512``, ``paper1024``, ``cifar``, ``tiny``.
        img_resolution: image size (``auto`` derives its values from it).
        world_size: number of training processes (``auto`` scales the global batch with it).
        **overrides: :class:`StyleGAN2Config` fields to replace.

    Returns:
        The config.

    Example:
        >>> stylegan2_config("auto", 32).gamma
        0.0064
    """
    name = check_choice("config", name, CONFIG_NAMES)
    check_positive_int("img_resolution", img_resolution)
    check_positive_int("world_size", world_size)
    config = _auto_config(img_resolution, world_size) if name == "auto" else STYLEGAN2_PRESETS[name]
    return replace_fields(config, overrides, frozen=("name",))


REGULARIZER_FIELDS = ("gamma", "r1_interval")
"""Preset fields whose home is the D regulariser object (``R1(gamma=..., every_n_batches=...)``)."""


def check_module_arguments(hparams: Mapping[str, Any]) -> None:
    """``StyleGAN2ADA``'s arguments, checked at construction (before any shape is known) and at build.

    The preset name and every override are checked now, not when ``setup`` builds the networks.

    Raises:
        ValueError, TypeError: the argument, the allowed values and the value given, in one line.
    """
    overrides = dict(hparams["config_overrides"] or {})
    misplaced = sorted(set(overrides) & set(REGULARIZER_FIELDS))
    if misplaced:
        raise ValueError(
            f"`config_overrides` sets {misplaced}, which belong to the D regulariser; set them "
            "there, e.g. `regularizer: {class_path: R1, init_args: {gamma: 0.05, every_n_batches: 16}}`."
        )
    for name in ("resolution", "channels"):
        if hparams[name] is not None:
            check_positive_int(name, hparams[name])
    resolution = hparams["resolution"]
    if resolution is not None and resolution & (resolution - 1):
        raise ValueError(f"`resolution` must be a power of 2 (e.g. 32), got {resolution}.")
    stylegan2_config(hparams["config"], resolution or 32, **overrides)
    if hparams["num_classes"] is not None:
        check_positive_int("num_classes", hparams["num_classes"], allow_zero=True)
    check_positive_int("freeze_d", hparams["freeze_d"], allow_zero=True)
    if hparams["max_kimg"] is not None:
        check_range("max_kimg", hparams["max_kimg"], 0.0, low_inclusive=False)


def preset_batch_warning(
    config: StyleGAN2Config,
    config_overrides: Mapping[str, Any] | None,
    regularizer_preset_fields: Collection[str],
    global_batch: int,
) -> str | None:
    """:func:`batch_size_mismatch` for the values a run really takes from its preset.

    Explicitness is recorded, never guessed from values: ``R1(gamma=0.05)`` under a preset whose gamma
    is 0.05 is the user's choice, not the preset's (the regulariser's ``preset_fields`` lists what
    ``fill_defaults`` filled; ``ema_kimg`` is the preset's unless ``config_overrides`` sets it).
    """
    from_preset = [name for name in ("gamma",) if name in regularizer_preset_fields]
    if (config_overrides or {}).get("ema_kimg") is None:
        from_preset.append("ema_kimg")
    return batch_size_mismatch(config, global_batch, from_preset)


def batch_size_mismatch(
    config: StyleGAN2Config, global_batch: int, preset_values: Sequence[str]
) -> str | None:
    """What a run at ``global_batch`` takes from a preset sized for ``config.batch_size``, or ``None``.

    Args:
        config: the run's config.
        global_batch: the images of one training batch, all processes together.
        preset_values: the batch-dependent fields (``gamma``, ``ema_kimg``) the run takes from the
            preset rather than from the user.

    Returns:
        A sentence for a warning, or ``None`` when the batches agree or nothing is taken.

    Example:
        >>> batch_size_mismatch(STYLEGAN2_PRESETS["tiny"], 8, ["gamma"]) is None
        True
        >>> batch_size_mismatch(STYLEGAN2_PRESETS["tiny"], 32, ["gamma", "ema_kimg"])[:82]
        "The 'tiny' preset sets gamma = 0.05, ema_kimg = 0.01 for a global batch of 8; this"
    """
    if global_batch == config.batch_size or not preset_values:
        return None
    values = ", ".join(f"{name} = {getattr(config, name):g}" for name in preset_values)
    derived = " (derived by the 'auto' heuristics)" if config.name == "auto" else ""
    return (
        f"The {config.name!r} preset sets {values} for a global batch of {config.batch_size}{derived}; "
        f"this run trains at a global batch of {global_batch} and uses them unchanged. Set "
        "`regularizer.gamma` / `config_overrides.ema_kimg` for your batch (the reference's 'auto' "
        "heuristics: gamma = 0.0002 * resolution^2 / batch, ema_kimg = batch * 10 / 32)."
    )


def build_networks(
    config: str | StyleGAN2Config,
    img_resolution: int,
    img_channels: int,
    c_dim: int,
    *,
    world_size: int = 1,
    **overrides,
) -> tuple[Generator, Discriminator]:
    """Build the generator and discriminator of a config.

    Args:
        config: a preset name (see :func:`stylegan2_config`) or a :class:`StyleGAN2Config`.
        img_resolution: image size, a power of two >= 8.
        img_channels: image channels.
        c_dim: number of classes (0 for unconditional).
        world_size: number of training processes (only used when ``config`` is ``"auto"``).
        **overrides: config fields to replace (e.g. ``channel_base=256``).

    Returns:
        ``(G, D)``.

    Example:
        >>> G, D = build_networks("tiny", 16, 3, c_dim=0)
        >>> G.num_ws, D.block_resolutions
        (6, [16, 8])
    """
    if isinstance(config, str):
        config = stylegan2_config(config, img_resolution, world_size=world_size, **overrides)
    elif isinstance(config, StyleGAN2Config):
        config = replace_fields(config, overrides, frozen=("name",))
    else:
        raise TypeError(f"`config` must be a preset name or a StyleGAN2Config, got {type(config).__name__}.")
    generator = Generator(
        z_dim=config.z_dim,
        c_dim=c_dim,
        w_dim=config.w_dim,
        img_resolution=img_resolution,
        img_channels=img_channels,
        mapping_kwargs=dict(num_layers=config.mapping_layers, lr_multiplier=config.mapping_lr_multiplier),
        synthesis_kwargs=dict(
            channel_base=config.channel_base,
            channel_max=config.channel_max,
            num_fp16_res=config.num_fp16_res,
            conv_clamp=config.conv_clamp,
        ),
    )
    discriminator = Discriminator(
        c_dim=c_dim,
        img_resolution=img_resolution,
        img_channels=img_channels,
        architecture=config.d_architecture,
        channel_base=config.channel_base,
        channel_max=config.channel_max,
        num_fp16_res=config.num_fp16_res,
        conv_clamp=config.conv_clamp,
        epilogue_kwargs=dict(
            mbstd_group_size=config.mbstd_group, mbstd_num_channels=config.mbstd_num_channels
        ),
    )
    if config.channels_last:  # convolutions follow their weights' layout, so activations stay NHWC
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
    return generator, discriminator
