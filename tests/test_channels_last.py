"""The networks' memory layout: ``channels_last`` (the default) computes what NCHW computes.

Tolerances (float32; a difference relative to the largest magnitude of the tensor compared): images
and logits 1e-5, gradients 1e-4. The two layouts run different convolution kernels and the gains are
folded into weights, so sums are rounded in another order; nothing else differs.
"""

from __future__ import annotations

import pytest
import torch

from lightning_genaug.augment import AugmentPipe
from lightning_genaug.models.stylegan2 import StyleGAN2ADA
from lightning_genaug.models.stylegan2.configs import build_networks
from lightning_genaug.regularizers.functional import r1_penalty

OUTPUT_TOLERANCE = 1e-5
GRADIENT_TOLERANCE = 1e-4


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return ((ours - reference).abs().max() / reference.abs().max().clamp_min(1e-12)).item()


def networks(channels_last: bool, architecture: str = "orig", conv_clamp: float | None = None):
    torch.manual_seed(0)
    return build_networks(
        "tiny",
        16,
        3,
        c_dim=0,
        channels_last=channels_last,
        d_architecture=architecture,
        conv_clamp=conv_clamp,
        mbstd_group=4,
    )


def is_channels_last(tensor: torch.Tensor) -> bool:
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def test_networks_hold_their_convolution_weights_channels_last_unless_told_otherwise() -> None:
    for channels_last in (True, False):
        G, D = networks(channels_last)
        weights = [p for p in [*G.parameters(), *D.parameters()] if p.ndim == 4 and p.shape[-1] > 1]
        assert weights and all(is_channels_last(p) == channels_last for p in weights)


@pytest.mark.parametrize("architecture", ["orig", "resnet", "skip"])
@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("conv_clamp", [None, 1.0], ids=["no-clamp", "clamp"])
def test_layouts_give_the_same_images_logits_and_gradients(architecture, fused, conv_clamp) -> None:
    results = {}
    for channels_last in (False, True):
        G, D = networks(channels_last, architecture, conv_clamp)
        z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(1))
        torch.manual_seed(2)  # the same per-layer noise in both layouts
        images = G.synthesis(G.mapping(z, None), fused_modconv=fused)
        logits = D(images, None)
        logits.square().sum().backward()
        grads = [p.grad for p in [*G.parameters(), *D.parameters()] if p.grad is not None]
        results[channels_last] = (images, logits, grads)
        assert images.is_contiguous()  # NCHW out of G whatever the layers' layout

    (images, logits, grads), (nchw_images, nchw_logits, nchw_grads) = results[True], results[False]
    assert relative_difference(images, nchw_images) < OUTPUT_TOLERANCE
    assert relative_difference(logits, nchw_logits) < OUTPUT_TOLERANCE
    assert len(grads) == len(nchw_grads) > 0
    assert max(relative_difference(g, r) for g, r in zip(grads, nchw_grads, strict=True)) < GRADIENT_TOLERANCE


def test_r1_double_backward_runs_through_the_pipe_and_a_channels_last_discriminator() -> None:
    """R1's gradient of D w.r.t. the un-augmented reals, back-propagated into D, in both layouts."""
    reals = torch.rand(8, 3, 16, 16) * 2 - 1
    results = {}
    for channels_last in (False, True):
        _, D = networks(channels_last)
        pipe = AugmentPipe("bgc", p=1.0)
        torch.manual_seed(3)  # the same augmentation draws
        images = reals.clone().requires_grad_()
        penalty = r1_penalty(images, D(pipe(images), None)).mean()
        penalty.backward()
        results[channels_last] = (penalty.detach(), [p.grad for p in D.parameters() if p.grad is not None])
    (penalty, grads), (nchw_penalty, nchw_grads) = results[True], results[False]
    assert nchw_penalty > 0 and relative_difference(penalty, nchw_penalty) < OUTPUT_TOLERANCE
    assert max(relative_difference(g, r) for g, r in zip(grads, nchw_grads, strict=True)) < GRADIENT_TOLERANCE


def test_sample_returns_a_contiguous_nchw_tensor() -> None:
    model = StyleGAN2ADA("tiny", resolution=16, channels=3, num_classes=0)
    assert is_channels_last(model.G_ema.synthesis.b16.conv1.weight)
    images = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 16, 16) and images.is_contiguous()


def test_a_channels_last_run_checkpoints_and_reloads_into_an_nchw_network(tmp_path) -> None:
    """Weights are values: a state dict moves between layouts, and the outputs follow."""
    model = StyleGAN2ADA("tiny", resolution=16, channels=3, num_classes=0)
    nchw = StyleGAN2ADA(
        "tiny", resolution=16, channels=3, num_classes=0, config_overrides={"channels_last": False}
    )
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    nchw.load_state_dict(torch.load(tmp_path / "weights.pt"))
    assert not is_channels_last(nchw.G_ema.synthesis.b16.conv1.weight)
    seeds = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    ours, theirs = model.sample(4, generator=seeds[0]), nchw.sample(4, generator=seeds[1])
    assert relative_difference(ours, theirs) < OUTPUT_TOLERANCE
