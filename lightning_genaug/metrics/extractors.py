"""Feature extractors for the metrics: torch-fidelity's Inception, offline, or any ``nn.Module``.

The standard FID/KID/IS network is torch-fidelity's ``inception-v3-compat`` (the TensorFlow
Inception of the original FID code, ported). Its weights file is found in this order: the
``weights_path`` argument, the ``LIGHTNING_GENAUG_INCEPTION_WEIGHTS`` environment variable,
torch-fidelity's own file in the torch hub cache. When none exists, the file is downloaded once
into that hub cache (the URL torch-fidelity and torchmetrics use, its SHA-256 prefix checked), as
torch-fidelity and torchmetrics do; without network access :class:`InceptionWeightsNotFoundError`
says how to get the file by hand.

Any ``nn.Module`` mapping images ``(N, C, H, W)`` in [-1, 1] to features ``(N, D)`` can be used
instead; it receives the images unchanged (no resizing, no channel replication).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch
from torch import nn

from lightning_genaug._checks import check_images
from lightning_genaug.images import to_uint8

INCEPTION_NAME = "inception-v3-compat"
INCEPTION_WEIGHTS_ENV = "LIGHTNING_GENAUG_INCEPTION_WEIGHTS"
INCEPTION_WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILENAME
)
INCEPTION_WEIGHTS_SHA256_PREFIX = "6726825d"
"""First hex digits of the file's SHA-256, the torch hub convention carried in the file name."""
INCEPTION_URL_ENV = "LIGHTNING_GENAUG_INCEPTION_URL"
"""Overrides the download URL (a mirror, or ``file://`` for a local copy); empty: never download."""
DOWNLOAD_TIMEOUT_S = 15.0

log = logging.getLogger(__name__)


class InceptionWeightsNotFoundError(FileNotFoundError):
    """No local Inception weights file: the message says which option to set and where to get it."""


def _hub_weights_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILENAME


def download_inception_weights(destination: Path, url: str) -> None:
    """Download the Inception weights to ``destination``, checking the SHA-256 prefix.

    The file is written next to ``destination`` under a temporary name and renamed into place only
    once its hash matches, so an interrupted or corrupted download never leaves a file that would be
    found later, and concurrent ranks do not read half-written files.

    Raises:
        OSError: the URL could not be read (no network, firewall, timeout).
        ValueError: the downloaded file's SHA-256 does not start with
            :data:`INCEPTION_WEIGHTS_SHA256_PREFIX`.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f"{destination.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if not digest.hexdigest().startswith(INCEPTION_WEIGHTS_SHA256_PREFIX):
            raise ValueError(
                f"The file downloaded from {url} has SHA-256 {digest.hexdigest()[:16]}..., expected a hash "
                f"starting with {INCEPTION_WEIGHTS_SHA256_PREFIX}; it was discarded. Check the URL "
                f"(${INCEPTION_URL_ENV}) or fetch the file by hand."
            )
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)


def resolve_inception_weights(weights_path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Find the ``inception-v3-compat`` weights file, downloading it once into the hub cache if missing.

    Args:
        weights_path: explicit path (the ``feature_extractor_weights_path`` option). If ``None``,
            the ``LIGHTNING_GENAUG_INCEPTION_WEIGHTS`` environment variable, then torch-fidelity's
            cached file ``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``.
            An explicit path or variable that names no file is an error (never a download); the
            hub cache file is downloaded from :data:`INCEPTION_WEIGHTS_URL` (or
            ``$LIGHTNING_GENAUG_INCEPTION_URL``) when it is missing.
        download: ``False`` checks without touching the network: an explicit path or variable must
            name a file; the hub cache file may still be missing (it is fetched when the extractor is
            built).

    Returns:
        The path of the file (with ``download=False``, of the hub cache file even when it is missing).

    Raises:
        InceptionWeightsNotFoundError: if no file is found and it cannot be downloaded (offline:
            within the connection timeout), or the download's hash does not match.
    """
    if weights_path is not None:
        source, candidate = "The weights path", Path(weights_path).expanduser()
    elif os.environ.get(INCEPTION_WEIGHTS_ENV):
        source, candidate = f"${INCEPTION_WEIGHTS_ENV}", Path(os.environ[INCEPTION_WEIGHTS_ENV]).expanduser()
    else:
        source, candidate = None, _hub_weights_file()
    if candidate.is_file() or (source is None and not download):
        return candidate
    found = f"{source} points to {str(candidate)!r}, which is not a file. " if source else ""
    url = os.environ.get(INCEPTION_URL_ENV, INCEPTION_WEIGHTS_URL)
    if source is None and url:
        try:
            log.info("Downloading the Inception weights from %s to %s", url, candidate)
            download_inception_weights(candidate, url)
            return candidate
        except (OSError, ValueError) as error:
            found = f"Downloading {url} failed ({error}). "
    raise InceptionWeightsNotFoundError(
        f"{found}The '{INCEPTION_NAME}' feature extractor needs its weights file. Pass "
        f"`feature_extractor_weights_path=/path/to/{INCEPTION_WEIGHTS_FILENAME}` (GenerativeMetrics: "
        "`feature_extractor=InceptionV3Compat(weights_path=...)`) or set the environment "
        f"variable {INCEPTION_WEIGHTS_ENV}. "
        f"Get the file on a machine with internet access from {INCEPTION_WEIGHTS_URL} (torch-fidelity's "
        "conversion of the TensorFlow Inception 2015-12-05 used by the original FID code) and copy it "
        f"over; it is also found automatically at {_hub_weights_file()}, where it is downloaded when "
        f"the network is reachable (${INCEPTION_URL_ENV} sets a mirror). Without it, pass any "
        "`nn.Module` returning (N, D) features as `feature_extractor` (see docs/metrics.md)."
    )


class InceptionV3Compat(nn.Module):
    """torch-fidelity's ``inception-v3-compat`` on images in [-1, 1], loaded from a local file.

    Images are quantised to uint8 as a saved PNG would be (``round((x + 1) * 127.5)``), grey
    images are replicated to 3 channels, and torch-fidelity resizes to 299x299 with its
    TensorFlow-compatible bilinear resampling.

    Args:
        weights_path: see :func:`resolve_inception_weights`.

    Shape:
        - Input: ``(N, 1 or 3, H, W)``, float in [-1, 1].
        - Output of ``forward``: ``(N, 2048)`` pool features (FID, KID, precision/recall).
        - ``features_and_logits``: ``((N, 2048), (N, 1008))``; the logits (without the
          classifier bias, as torch-fidelity's IS uses) feed the Inception Score.
    """

    feature_dim = 2048

    def __init__(self, weights_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.weights_file = resolve_inception_weights(weights_path)
        from lightning_genaug.imports import TORCH_FIDELITY_AVAILABLE

        if not TORCH_FIDELITY_AVAILABLE:
            raise ModuleNotFoundError(
                f"The '{INCEPTION_NAME}' extractor needs torch-fidelity: `pip install torch-fidelity`. "
                f"{TORCH_FIDELITY_AVAILABLE.message}"
            )
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        self.network = FeatureExtractorInceptionV3(
            INCEPTION_NAME, ["2048", "logits_unbiased"], feature_extractor_weights_path=str(self.weights_file)
        )
        self.network.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> InceptionV3Compat:
        """The network stays in eval mode (batch-norm statistics are frozen weights)."""
        return super().train(False)

    def _to_uint8_rgb(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, channels=(1, 3))
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return to_uint8(images)

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features ``(N, 2048)`` and class logits ``(N, 1008)`` in one pass."""
        features, logits = self.network(self._to_uint8_rgb(images))
        return features, logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool features ``(N, 2048)`` of images ``(N, 1 or 3, H, W)`` in [-1, 1]."""
        return self.features_and_logits(images)[0]

    def fingerprint(self) -> str:
        """Identity for the statistics cache: the extractor name and the weights file's hash."""
        digest = hashlib.sha256()
        with open(self.weights_file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return f"{INCEPTION_NAME}-{digest.hexdigest()[:16]}"


def build_feature_extractor(
    feature_extractor: str | nn.Module, weights_path: str | os.PathLike | None = None
) -> nn.Module:
    """Return the extractor module for the ``feature_extractor`` option.

    Args:
        feature_extractor: ``"inception-v3-compat"`` or an ``nn.Module`` returning ``(N, D)``.
        weights_path: local Inception weights (only with ``"inception-v3-compat"``).
    """
    if isinstance(feature_extractor, nn.Module):
        return feature_extractor
    if isinstance(feature_extractor, str) and feature_extractor.lower() == INCEPTION_NAME:
        return InceptionV3Compat(weights_path)
    raise ValueError(
        f"`feature_extractor` must be {INCEPTION_NAME!r} or an nn.Module returning (N, D) features, "
        f"got {feature_extractor!r}."
    )


@torch.no_grad()
def extract_features(extractor: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and classification logits of a batch.

    Uses ``extractor.features_and_logits`` when it exists (Inception); otherwise the module's
    output serves as both (for the Inception Score it is then read as class logits).

    Args:
        extractor: the feature extractor.
        images: ``(N, C, H, W)`` in [-1, 1].

    Returns:
        ``(features, logits)``, float32, shapes ``(N, D)`` and ``(N, K)``.
    """
    if hasattr(extractor, "features_and_logits"):
        features, logits = extractor.features_and_logits(images)
    else:
        features = logits = extractor(images)
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != images.shape[0]:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(
            f"The feature extractor {type(extractor).__name__} must return a (N, D) tensor for N = "
            f"{images.shape[0]} images, got {shape}; add a flatten/pooling layer at its end."
        )
    return features.float(), logits.float()


def extractor_fingerprint(extractor: nn.Module) -> str:
    """A string identifying an extractor's architecture and weights (keys the statistics cache).

    ``extractor.fingerprint()`` when defined, else the class name and a hash of its state dict.
    """
    if hasattr(extractor, "fingerprint"):
        return str(extractor.fingerprint())
    digest = hashlib.sha256()
    for name, tensor in extractor.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return f"{type(extractor).__qualname__}-{digest.hexdigest()[:16]}"
