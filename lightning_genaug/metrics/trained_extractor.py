"""A feature extractor trained on the real training split, for FID/KID where Inception is unavailable.

FID and KID compare feature statistics; any fixed network whose features separate the classes of
the data gives a meaningful (but not Inception-comparable) distance. On machines without the
Inception weights we train a small classifier on the real images and their labels, and use its
penultimate layer. Numbers computed with it are only comparable with each other (same extractor,
same seed, same data), never with published FIDs: label them as such.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from lightning_genaug._checks import check_images, check_positive_int

log = logging.getLogger(__name__)


class ClassifierFeatures(nn.Module):
    """A small CNN classifier; :meth:`forward` returns its penultimate features ``(N, feature_dim)``.

    Args:
        in_channels: image channels (1 or 3).
        num_classes: classes of the training labels.
        width: channels of the first conv block (doubled at each of the 3 blocks).
        feature_dim: size of the penultimate layer (the features).

    Shape:
        - images: ``(N, in_channels, H, W)`` in [-1, 1], any ``H, W >= 8``.
        - output: ``(N, feature_dim)``.
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, feature_dim: int = 128) -> None:
        super().__init__()
        self.feature_dim = feature_dim  # read by the torchmetrics classes to size their states
        self.in_channels = in_channels  # read by GenerativeMetrics to check the run's images in `setup`
        self.num_classes = num_classes  # likewise, against the data's classes
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(3):
            out_channels = width * 2**block
            layers += [
                nn.Conv2d(channels, out_channels, 3, padding=1),
                nn.GroupNorm(min(8, out_channels // 4), out_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(out_channels, out_channels, 3, padding=1),
                nn.GroupNorm(min(8, out_channels // 4), out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2) if block < 2 else nn.AdaptiveAvgPool2d(1),
            ]
            channels = out_channels
        self.body = nn.Sequential(
            *layers, nn.Flatten(), nn.Linear(channels, feature_dim), nn.ReLU(inplace=True)
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``(N, num_classes)``."""
        return self.head(self.body(images))


def train_classifier_features(
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 5e-3,
    width: int = 32,
    feature_dim: int = 128,
    seed: int = 0,
    xflip: bool = False,
    device: str | torch.device = "cpu",
) -> ClassifierFeatures:
    """Train :class:`ClassifierFeatures` on labelled real images and return it frozen, in eval mode.

    Training uses random translations of up to ``H // 16`` pixels (optionally x-flips), AdamW and a
    one-cycle schedule. The training accuracy reached is logged.

    Args:
        images: float ``(N, C, H, W)`` in [-1, 1].
        labels: int64 ``(N,)`` class ids.
        steps: optimisation steps (the data is reshuffled after each pass over it).
        batch_size: images per step.
        lr: peak learning rate.
        width: first-block channels.
        feature_dim: feature size.
        seed: seeds initialisation and shuffling, so the extractor is reproducible.
        xflip: also flip images left-right during training (for data whose classes are mirror
            invariant, such as CIFAR-10; not for digits).
        device: where to train.

    Returns:
        The trained extractor (``requires_grad`` off, eval mode) on ``device``.
    """
    check_images(images, "images", channels=(1, 3))
    check_positive_int("steps", steps)
    check_positive_int("batch_size", batch_size)
    if labels.ndim != 1 or len(labels) != len(images) or labels.is_floating_point():
        raise ValueError(
            f"`labels` must be int64 of shape ({len(images)},), got {labels.dtype} {tuple(labels.shape)}."
        )
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClassifierFeatures(images.shape[1], int(labels.max()) + 1, width, feature_dim).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    batch_size = min(batch_size, len(images))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    model.train()
    order, position, recent_correct = torch.randperm(len(images), generator=generator), 0, []
    for _ in range(steps):
        if position + batch_size > len(images):
            order, position = torch.randperm(len(images), generator=generator), 0
        index = order[position : position + batch_size]
        position += batch_size
        batch = _jitter(images[index], generator, xflip).to(device)
        target = labels[index].to(device)
        logits = model.logits(batch)
        loss = nn.functional.cross_entropy(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        recent_correct = [*recent_correct[-49:], float((logits.argmax(1) == target).float().mean())]
    log.info(
        "Classifier extractor: training accuracy %.3f (last 50 steps)",
        sum(recent_correct) / len(recent_correct),
    )
    model.eval().requires_grad_(False)
    return model


def _jitter(images: torch.Tensor, generator: torch.Generator, xflip: bool) -> torch.Tensor:
    """Random translation by up to ``H // 16`` pixels (reflect padding) and optional x-flip."""
    if xflip:
        flip = torch.rand(len(images), generator=generator) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    pad = images.shape[-2] // 16
    if pad == 0:
        return images
    shift_y, shift_x = torch.randint(-pad, pad + 1, (2,), generator=generator).tolist()
    padded = nn.functional.pad(images, (pad, pad, pad, pad), mode="reflect")
    height, width = images.shape[-2:]
    return padded[..., pad + shift_y : pad + shift_y + height, pad + shift_x : pad + shift_x + width]


@torch.no_grad()
def classifier_accuracy(model: ClassifierFeatures, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of the extractor's classifier head on ``(N, C, H, W)`` images."""
    device = next(model.parameters()).device
    predictions = torch.cat([model.logits(chunk.to(device)).argmax(1).cpu() for chunk in images.split(256)])
    return float((predictions == labels).float().mean())
