"""Images from a StyleGAN2 generator: the one chunked sampler, and what a seed means.

Every image the package draws from a StyleGAN2 generator goes through :func:`map_latents` (``z, c ->
ws``) and :func:`synthesize` (``ws -> images``), :data:`BATCH_SIZE` images at a time, in eval mode;
``sample``, ``predict``, ``generate`` and the other after-training tools share them.

A seed names one image, the way the reference scripts (``generate.py``, ``style_mixing.py``) draw it
(:func:`seed_images`)::

    z = numpy.random.RandomState(seed).randn(1, z_dim)
    image = G(z, one_hot(label), truncation_psi, noise_mode)

so an official network pickle gives NVlabs' image for the same seed and class, and the image depends
only on its seed (and class), never on the other seeds drawn with it or on the device. With
``noise_mode="random"`` the noise maps of a seed's image are drawn after ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_genaug._checks import check_choice, check_positive_int
from lightning_genaug.models.stylegan2.networks import NOISE_MODES

BATCH_SIZE = 64
"""Images per forward pass: bounds memory for any number of images."""


def seed_latents(seeds: Sequence[int], z_dim: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """One latent per seed, as the reference scripts draw it: ``RandomState(seed).randn(z_dim)``.

    Returns:
        ``(len(seeds), z_dim)`` float32 on ``device``.

    >>> seed_latents([0, 0, 1], 4)[:, 0]
    tensor([1.7641, 1.7641, 1.6243])
    """
    rows = [np.random.RandomState(int(seed)).randn(z_dim) for seed in seeds]
    return torch.from_numpy(np.stack(rows)).float().to(device)


def class_condition(
    labels: torch.Tensor | None, num_classes: int, batch_size: int, device: torch.device | str
) -> torch.Tensor:
    """One-hot conditioning ``(B, num_classes)`` of int ``labels`` ``(B,)``; ``(B, 0)`` when unconditional.

    Labels given to an unconditional generator (``num_classes == 0``) are ignored.

    Raises:
        ValueError: a conditional generator without labels, or a label outside ``[0, num_classes)``.

    >>> class_condition(torch.tensor([2, 0]), 3, 2, "cpu")
    tensor([[0., 0., 1.],
            [1., 0., 0.]])
    """
    if num_classes == 0:
        return torch.zeros(batch_size, 0, device=device)
    if labels is None:
        raise ValueError(
            f"The model is class-conditional (num_classes={num_classes}) but the batch has no labels; "
            "use a datamodule that yields (images, labels) or set `num_classes: 0`."
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"Labels must be in [0, {num_classes - 1}], got [{labels.min()}, {labels.max()}].")
    return F.one_hot(labels.long(), num_classes).to(device, torch.float32)


def generator_device(G: nn.Module) -> torch.device:
    """The device a StyleGAN2 generator's weights are on (where its inputs must be made)."""
    return G.mapping.fc0.weight.device


@contextmanager
def _eval_mode(G: nn.Module) -> Iterator[None]:
    """``G`` in eval mode inside, its training flag restored afterwards."""
    was_training = G.training
    G.eval()
    try:
        yield
    finally:
        G.train(was_training)


@torch.no_grad()
def map_latents(G: nn.Module, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
    """The (truncated) intermediate latents of ``z`` and ``c``, :data:`BATCH_SIZE` rows at a time.

    Args:
        G: a StyleGAN2 ``Generator``.
        z: latents ``(N, z_dim)`` on ``G``'s device.
        c: conditioning ``(N, c_dim)`` (``(N, 0)`` when unconditional).
        truncation_psi: truncation towards the average ``w`` (``1`` = none).

    Returns:
        ``(N, num_ws, w_dim)``.
    """
    with _eval_mode(G):
        return torch.cat(
            [
                G.mapping(z_chunk, c_chunk, truncation_psi=truncation_psi)
                for z_chunk, c_chunk in zip(z.split(BATCH_SIZE), c.split(BATCH_SIZE), strict=True)
            ]
        )


@torch.no_grad()
def synthesize(
    G: nn.Module,
    ws: torch.Tensor,
    noise_mode: str = "const",
    noise_seeds: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Images of ``ws`` from ``G``'s synthesis network, :data:`BATCH_SIZE` at a time, in eval mode.

    Args:
        G: a StyleGAN2 ``Generator`` (its training flag is restored afterwards).
        ws: ``(N, num_ws, w_dim)``.
        noise_mode: ``"const"`` (the stored noise maps), ``"random"`` or ``"none"``.
        noise_seeds: with ``"random"``, where the noise comes from, drawn from torch's global generator
            in a fork of its state (the caller's random stream is left as it was): one seed per image
            (each image's noise after ``torch.manual_seed(seed)``), one int for the whole batch, or
            ``None`` (torch's global stream itself).

    Returns:
        ``(N, C, H, W)`` float32 in [-1, 1].
    """
    noise_mode = check_choice("noise_mode", noise_mode, NOISE_MODES)
    devices = [ws.device] if ws.device.type == "cuda" else []
    if noise_mode != "random" or noise_seeds is None:
        seeded = [(None, ws)]
    elif isinstance(noise_seeds, int):
        seeded = [(noise_seeds, ws)]
    else:
        seeded = list(zip(noise_seeds, ws.split(1), strict=True))
    images = []
    with _eval_mode(G):
        for seed, group in seeded:
            with torch.random.fork_rng(devices=devices, enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(int(seed))
                images.extend(G.synthesis(chunk, noise_mode=noise_mode) for chunk in group.split(BATCH_SIZE))
    return torch.cat(images).float().clamp(-1, 1)


@torch.no_grad()
def generate(
    G: nn.Module,
    z: torch.Tensor,
    c: torch.Tensor,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    noise_seeds: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """``G(z, c)``: :func:`map_latents` then :func:`synthesize`.

    Returns:
        ``(N, C, H, W)`` float32 in [-1, 1].
    """
    return synthesize(G, map_latents(G, z, c, truncation_psi), noise_mode, noise_seeds)


def check_seed_labels(labels: torch.Tensor | None, seeds: Sequence[int], num_classes: int) -> None:
    """``labels`` of :func:`seed_images`: one class per seed, required by a conditional generator.

    Raises:
        ValueError: naming ``labels``, the valid classes and what was given.
    """
    if num_classes == 0 or (labels is not None and labels.shape == (len(seeds),)):
        return
    given = "none given" if labels is None else f"got shape {tuple(labels.shape)}"
    raise ValueError(
        f"`labels`: the generator is class-conditional, pass one class in [0, {num_classes - 1}] per seed "
        f"as an int tensor of shape ({len(seeds)},) ({given})."
    )


@torch.no_grad()
def seed_ws(
    G: nn.Module, seeds: Sequence[int], labels: torch.Tensor | None = None, truncation_psi: float = 1.0
) -> torch.Tensor:
    """The (truncated) intermediate latents of ``seeds``: :func:`seed_latents` through the mapping.

    Args:
        G: a StyleGAN2 ``Generator``.
        seeds: non-negative ints.
        labels: int ``(len(seeds),)`` classes for a conditional ``G`` (ignored by an unconditional one).
        truncation_psi: truncation towards the average ``w`` (``1`` = none).

    Returns:
        ``(len(seeds), num_ws, w_dim)`` on ``G``'s device.
    """
    check_seed_labels(labels, seeds, G.c_dim)
    device = generator_device(G)
    c = class_condition(labels, G.c_dim, len(seeds), device)
    return map_latents(G, seed_latents(seeds, G.z_dim, device), c, truncation_psi)


@torch.no_grad()
def seed_images(
    G: nn.Module,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
) -> torch.Tensor:
    """The image of each seed, the reference's way: ``G(RandomState(seed).randn(1, z_dim), label)``.

    The one function that draws a seed's image from a StyleGAN2 generator (``predict``, ``generate``,
    :meth:`StyleGAN2ADA.sample_seeds <lightning_genaug.models.stylegan2.StyleGAN2ADA.sample_seeds>`).
    Image ``i`` depends only on ``seeds[i]`` and ``labels[i]``: with ``noise_mode="random"`` its noise
    maps are drawn after ``torch.manual_seed(seeds[i])``.

    Args:
        G: a StyleGAN2 ``Generator``.
        seeds: non-negative ints, one image each.
        labels: int ``(len(seeds),)`` classes for a conditional ``G`` (ignored by an unconditional one).
        truncation_psi: truncation towards the average ``w`` (``1`` = none).
        noise_mode: ``"const"``, ``"random"`` or ``"none"``.

    Returns:
        ``(len(seeds), C, H, W)`` float32 in [-1, 1] on ``G``'s device.
    """
    return synthesize(G, seed_ws(G, seeds, labels, truncation_psi), noise_mode, noise_seeds=list(seeds))


class StyleGAN2Sampling:
    """``sample`` (the generator protocol) and ``sample_seeds`` of a module holding ``G_ema``.

    Mixed into :class:`~lightning_genaug.models.stylegan2.StyleGAN2ADA`: it reads ``G_ema``,
    ``hparams.num_classes``, ``device`` and ``class_condition`` of the module.
    """

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """Generate ``n`` images with the EMA generator in eval mode (generator protocol).

        Args:
            n: number of images.
            labels: int64 ``(n,)`` classes for a conditional model (an unconditional one refuses them);
                ``None``: uniformly random.
            generator: random generator for the latents, labels and random noise (reproducible samples).
            truncation_psi: truncation towards the average ``w`` (``1`` = none).
            noise_mode: per-pixel noise of the synthesis layers: ``"const"`` (the stored noise maps),
                ``"random"`` (fresh noise, drawn from ``generator`` when one is given) or ``"none"``.

        Returns:
            ``(n, C, H, W)`` float in [-1, 1] on the module's device.
        """
        check_positive_int("n", n)
        source_device = generator.device if generator is not None else self.device
        z = torch.randn(n, self.G_ema.z_dim, generator=generator, device=source_device).to(self.device)
        if labels is not None and self.hparams.num_classes == 0:
            raise ValueError(
                "`labels` were given but the network is unconditional (num_classes=0): it has no classes "
                "to draw; drop `labels`, or train a class-conditional model."
            )
        if labels is None and self.hparams.num_classes > 0:
            labels = torch.randint(self.hparams.num_classes, (n,), generator=generator, device=source_device)
        noise_seed = None
        if generator is not None and noise_mode == "random":
            noise_seed = int(torch.randint(2**62, (), generator=generator, device=source_device))
        labels = None if labels is None else labels.to(self.device)
        c = self.class_condition(labels, n)
        return generate(self.G_ema, z, c, truncation_psi, noise_mode, noise_seed)

    @torch.no_grad()
    def sample_seeds(
        self,
        seeds: Sequence[int],
        labels: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> torch.Tensor:
        """The image of each seed, as NVlabs' ``generate.py`` draws it; ``predict`` and ``generate`` write it.

        Seed ``s`` is the latent ``numpy.random.RandomState(s).randn(1, z_dim)`` (:func:`.seed_images`):
        an official pickle gives the reference's image for the same seed, class and truncation, and an
        image depends only on its own seed and class, on any device.

        Args:
            seeds: non-negative ints, one image each.
            labels: int64 ``(len(seeds),)`` classes; required by a class-conditional model.
            truncation_psi: truncation towards the average ``w`` (``1`` = none).
            noise_mode: ``"const"`` (the stored noise maps), ``"random"`` (noise drawn after
                ``torch.manual_seed(seed)``) or ``"none"``.

        Returns:
            ``(len(seeds), C, H, W)`` float in [-1, 1] on the module's device.

        Example:
            >>> model = StyleGAN2ADA.load("network-snapshot.pkl")  # doctest: +SKIP
            >>> images = model.sample_seeds(range(8), truncation_psi=0.7)  # doctest: +SKIP
        """
        return seed_images(self.G_ema, seeds, labels, truncation_psi, noise_mode)


__all__ = [
    "BATCH_SIZE",
    "StyleGAN2Sampling",
    "check_seed_labels",
    "class_condition",
    "generate",
    "generator_device",
    "map_latents",
    "seed_images",
    "seed_latents",
    "seed_ws",
    "synthesize",
]
