"""Specification of the StyleGAN2 networks and configs (lightning_genaug.models.stylegan2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_genaug.models.stylegan2.configs import (
    CONFIG_NAMES,
    StyleGAN2Config,
    build_networks,
    stylegan2_config,
)
from lightning_genaug.models.stylegan2.networks import (
    Discriminator,
    FullyConnectedLayer,
    Generator,
    MinibatchStdLayer,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upsample2d,
)

# Tiny widths so every config builds in milliseconds; the config's training fields are untouched.
TINY = dict(z_dim=16, w_dim=16, channel_base=128, channel_max=16)


def tiny_generator(c_dim: int = 0, resolution: int = 16, **synthesis_kwargs) -> Generator:
    synthesis_kwargs = {"channel_base": 128, "channel_max": 16, **synthesis_kwargs}
    return Generator(
        16, c_dim, 16, resolution, 3, mapping_kwargs={"num_layers": 2}, synthesis_kwargs=synthesis_kwargs
    )


def one_hot(n: int, c_dim: int) -> torch.Tensor:
    return F.one_hot(torch.arange(n) % c_dim, c_dim).float() if c_dim else torch.zeros(n, 0)


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", CONFIG_NAMES)
@pytest.mark.parametrize("c_dim", [0, 3])
def test_every_config_builds_networks_with_the_right_shapes(name, c_dim):
    torch.manual_seed(0)
    G, D = build_networks(name, 16, 3, c_dim, **TINY)
    z, c = torch.randn(4, 16), one_hot(4, c_dim)
    ws = G.mapping(z, c)
    img = G(z, c)
    logits = D(img, c)
    assert ws.shape == (4, G.num_ws, 16) and G.num_ws == 6  # 1 + 2 + 2 convs and the last ToRGB at 16x16
    assert img.shape == (4, 3, 16, 16) and img.dtype == torch.float32
    assert logits.shape == (4, 1) and logits.dtype == torch.float32
    assert torch.isfinite(img).all() and torch.isfinite(logits).all()
    assert (G.z_dim, G.c_dim, G.w_dim, G.img_resolution, G.img_channels) == (16, c_dim, 16, 16, 3)


def test_cifar_config_matches_the_reference_table():
    cfg = stylegan2_config("cifar", 32)
    assert (cfg.channel_base, cfg.channel_max, cfg.mapping_layers, cfg.d_architecture) == (
        32768,
        512,
        2,
        "orig",
    )
    assert (cfg.batch_size, cfg.mbstd_group, cfg.lr, cfg.betas) == (64, 32, 0.0025, (0.0, 0.99))
    assert (cfg.gamma, cfg.ema_kimg, cfg.ema_rampup) == (0.01, 500.0, 0.05)
    assert (cfg.style_mixing_prob, cfg.pl_weight, cfg.r1_interval, cfg.pl_interval) == (0.0, 0.0, 16, 4)


def test_paper_configs_match_the_reference_table():
    table = {  # name: (channel_base, map, batch, mbstd, lr, gamma, ema)
        "stylegan2": (32768, 8, 32, 4, 0.002, 10.0, 10.0),
        "paper256": (16384, 8, 64, 8, 0.0025, 1.0, 20.0),
        "paper512": (32768, 8, 64, 8, 0.0025, 0.5, 20.0),
        "paper1024": (32768, 8, 32, 4, 0.002, 2.0, 10.0),
    }
    for name, expected in table.items():
        cfg = stylegan2_config(name, 256)
        got = (
            cfg.channel_base,
            cfg.mapping_layers,
            cfg.batch_size,
            cfg.mbstd_group,
            cfg.lr,
            cfg.gamma,
            cfg.ema_kimg,
        )
        assert got == expected, name
        assert (cfg.ema_rampup, cfg.style_mixing_prob, cfg.pl_weight, cfg.d_architecture) == (
            None,
            0.9,
            2.0,
            "resnet",
        )


@pytest.mark.parametrize(
    ("resolution", "world_size", "expected"),
    [  # (channel_base, batch, mbstd, lr, gamma, ema_kimg) from the reference's `auto` formulas
        (32, 1, (16384, 32, 4, 0.0025, 0.0002 * 32**2 / 32, 10.0)),
        (256, 8, (16384, 64, 4, 0.0025, 0.0002 * 256**2 / 64, 20.0)),
        (1024, 1, (32768, 4, 4, 0.002, 0.0002 * 1024**2 / 4, 1.25)),
    ],
)
def test_auto_config_scales_with_resolution_and_processes(resolution, world_size, expected):
    cfg = stylegan2_config("auto", resolution, world_size=world_size)
    got = (cfg.channel_base, cfg.batch_size, cfg.mbstd_group, cfg.lr, cfg.gamma, cfg.ema_kimg)
    assert got == pytest.approx(expected)
    assert (cfg.mapping_layers, cfg.ema_rampup) == (2, 0.05)


def test_unknown_config_or_field_raises_listing_the_valid_ones():
    with pytest.raises(
        ValueError, match="valid values are: auto, stylegan2, paper256, paper512, paper1024, cifar"
    ):
        stylegan2_config("paper2048", 32)
    with pytest.raises(ValueError, match="Unknown StyleGAN2Config field.*'gama'.*gamma"):
        stylegan2_config("cifar", 32, gama=1.0)
    with pytest.raises(ValueError, match="style_mixing_prob"):
        stylegan2_config("cifar", 32, style_mixing_prob=1.5)


def test_overrides_replace_config_fields_and_configs_are_accepted_directly():
    cfg = stylegan2_config("tiny", 16, gamma=0.5)
    assert cfg.gamma == 0.5 and isinstance(cfg, StyleGAN2Config)
    G, D = build_networks(cfg, 16, 1, 0, channel_max=8, d_architecture="skip")
    assert (
        G.synthesis.b16.conv1.weight.shape[0] == 8 and hasattr(D.b16, "fromrgb") and hasattr(D.b8, "fromrgb")
    )


def test_cifar_parameter_counts_match_the_paper_and_the_reference():
    # The paper's 19.9M (G) / 20.7M (D) are the unconditional networks. The exact counts are those of
    # the public reference's Generator/Discriminator built with its `cifar` settings at 32x32, c_dim=0.
    with torch.device("meta"):  # shapes only: no memory, no random initialisation
        G, D = build_networks("cifar", 32, 3, 0)
    assert num_params(G) == pytest.approx(19.9e6, rel=0.02) and num_params(G) == 19_947_539
    assert num_params(D) == pytest.approx(20.7e6, rel=0.02) and num_params(D) == 20_720_641
    # Conditional (10 classes): label embedding in G; 8-layer label mapping and projection head in D.
    with torch.device("meta"):
        G, D = build_networks("cifar", 32, 3, 10)
    assert (num_params(G), num_params(D)) == (20_215_315, 23_089_664)


def test_checkpoint_keys_follow_the_reference_naming():
    G, D = build_networks("tiny", 16, 3, 2)
    g_keys, d_keys = set(G.state_dict()), set(D.state_dict())
    for key in [
        "mapping.embed.weight",
        "mapping.fc0.weight",
        "mapping.fc1.bias",
        "mapping.w_avg",
        "synthesis.b4.const",
        "synthesis.b4.conv1.affine.weight",
        "synthesis.b4.conv1.noise_const",
        "synthesis.b4.conv1.noise_strength",
        "synthesis.b16.conv0.weight",
        "synthesis.b16.torgb.affine.bias",
    ]:
        assert key in g_keys, key
    for key in [
        "b16.fromrgb.weight",
        "b16.conv0.weight",
        "b16.conv1.bias",
        "b16.skip.weight",
        "b8.skip.weight",
        "b4.conv.weight",
        "b4.fc.weight",
        "b4.out.bias",
        "mapping.embed.weight",
        "mapping.fc7.weight",
    ]:
        assert key in d_keys, key
    assert not any("resample_filter" in key for key in g_keys | d_keys)


# ---------------------------------------------------------------------------------------------- mapping


def test_truncation_psi_zero_gives_w_avg_and_one_is_the_identity():
    torch.manual_seed(0)
    G = tiny_generator()
    G.mapping.w_avg.normal_()
    z = torch.randn(3, 16)
    ws = G.mapping(z, None)
    assert torch.equal(G.mapping(z, None, truncation_psi=1.0), ws)
    assert torch.equal(G.mapping(z, None, truncation_psi=0.0), G.mapping.w_avg.expand_as(ws))
    half = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(half[:, :2], (ws[:, :2] + G.mapping.w_avg) / 2)
    assert torch.equal(half[:, 2:], ws[:, 2:])  # layers past the cutoff are untouched


def test_w_avg_moves_towards_the_batch_mean_only_when_asked():
    torch.manual_seed(0)
    G = tiny_generator()
    z = torch.randn(8, 16)
    G.mapping(z, None)
    assert torch.count_nonzero(G.mapping.w_avg) == 0
    w = G.mapping(z, None, update_emas=True)[:, 0]
    assert torch.allclose(G.mapping.w_avg, (1 - 0.995) * w.mean(dim=0))


def test_conditional_mapping_depends_on_the_label_and_checks_its_shape():
    torch.manual_seed(0)
    G = tiny_generator(c_dim=3)
    z = torch.randn(1, 16).expand(3, -1)
    ws = G.mapping(z, one_hot(3, 3))
    assert not torch.allclose(ws[0], ws[1])
    with pytest.raises(ValueError, match=r"`c` must be a float tensor of shape \(3, 3\)"):
        G.mapping(z, torch.zeros(3, 2))


def test_equalised_learning_rate_keeps_unit_scale_and_stores_weights_divided_by_the_multiplier():
    torch.manual_seed(0)
    layer = FullyConnectedLayer(512, 512, lr_multiplier=0.01)
    assert layer.weight.std().item() == pytest.approx(100, rel=0.02)
    assert layer(torch.randn(256, 512)).std().item() == pytest.approx(1.0, rel=0.05)


# ---------------------------------------------------------------------------------------------- synthesis


def test_noise_mode_const_is_deterministic_and_random_is_not():
    torch.manual_seed(0)
    G = tiny_generator()
    for name, param in G.named_parameters():
        if name.endswith("noise_strength"):
            param.data.fill_(0.5)
    ws = G.mapping(torch.randn(2, 16), None)
    assert torch.equal(G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
    assert not torch.allclose(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise_mode="const"))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


def test_fused_and_unfused_modulated_convolutions_agree():
    torch.manual_seed(0)
    G = tiny_generator()
    ws = G.mapping(torch.randn(3, 16), None)
    fused = G.synthesis(ws, noise_mode="const", fused_modconv=True)
    unfused = G.synthesis(ws, noise_mode="const", fused_modconv=False)
    assert torch.allclose(fused, unfused, atol=1e-5)


def test_demodulation_is_invariant_to_the_scale_of_the_styles():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 8, 6, 6), torch.randn(4, 8, 3, 3), torch.rand(2, 8) + 0.5
    out = modulated_conv2d(x, weight, styles)
    assert torch.allclose(out, modulated_conv2d(x, weight, styles * torch.tensor([[3.0], [0.1]])), atol=1e-5)
    # Demodulated outputs have about unit variance for unit-variance inputs.
    assert modulated_conv2d(
        torch.randn(16, 8, 16, 16), weight, styles.repeat(8, 1)
    ).std().item() == pytest.approx(1.0, rel=0.2)


def test_fir_resampling_preserves_constant_images_and_halves_or_doubles_the_size():
    taps = setup_filter([1, 3, 3, 1])
    ones = torch.ones(1, 2, 8, 8)
    up, down = upsample2d(ones, taps), downsample2d(ones, taps)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones(1, 2, 12, 12))  # away from the zero padding
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))


def test_generator_rejects_bad_resolutions_and_ws_shapes():
    with pytest.raises(ValueError, match="power of two >= 4"):
        tiny_generator(resolution=24)
    G = tiny_generator()
    with pytest.raises(ValueError, match=r"`ws` must have shape \(N, 6, 16\)"):
        G.synthesis(torch.randn(2, 5, 16))


# ---------------------------------------------------------------------------------------------- discriminator


@pytest.mark.parametrize("architecture", ["resnet", "orig", "skip"])
@pytest.mark.parametrize("c_dim", [0, 3])
def test_discriminator_is_twice_differentiable_for_r1(architecture, c_dim):
    torch.manual_seed(0)
    D = Discriminator(
        c_dim, 16, 3, architecture=architecture, channel_base=128, channel_max=16, conv_clamp=256
    )
    img = torch.randn(4, 3, 16, 16, requires_grad=True)
    logits = D(img, one_hot(4, c_dim))
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    grad.square().sum().backward()
    grads = [p.grad for p in D.b16.conv0.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_discriminator_blocks_are_listed_in_input_order_for_freeze_d():
    D = Discriminator(0, 32, 3, channel_base=128, channel_max=16)
    assert D.discriminator_blocks() == [D.b32, D.b16, D.b8, D.b4]


def test_projection_conditioning_changes_the_logits_per_label():
    torch.manual_seed(0)
    D = Discriminator(3, 8, 3, channel_base=64, channel_max=16)
    img = torch.randn(1, 3, 8, 8).expand(3, -1, -1, -1)
    logits = D(img, one_hot(3, 3))
    assert logits.shape == (3, 1) and len(set(logits.flatten().tolist())) == 3


def test_minibatch_std_appends_the_group_std_and_rejects_indivisible_batches():
    x = torch.randn(8, 4, 2, 2)
    y = MinibatchStdLayer(group_size=4)(x)
    assert y.shape == (8, 5, 2, 2)
    groups = x.reshape(4, 2, 4, 2, 2)  # sample i belongs to group i % 2
    expected = groups.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=[1, 2, 3])
    assert torch.allclose(y[:, 4, 0, 0], expected.repeat(4))
    with pytest.raises(ValueError, match="not divisible by the minibatch-std group size 4"):
        MinibatchStdLayer(group_size=4)(torch.randn(6, 4, 2, 2))


def test_discriminator_checks_its_input():
    D = Discriminator(0, 16, 3, channel_base=128, channel_max=16)
    with pytest.raises(ValueError, match="must be 16x16"):
        D(torch.randn(2, 3, 8, 8), None)
    with pytest.raises(ValueError, match="channels"):
        D(torch.randn(2, 1, 16, 16), None)
    with pytest.raises(ValueError, match="`architecture`"):
        Discriminator(0, 16, 3, architecture="residual")
    with pytest.raises(ValueError, match="power of two >= 8"):
        Discriminator(0, 4, 3)


def test_channel_schedule_follows_channel_base_over_resolution():
    with torch.device("meta"):
        G, D = build_networks("paper256", 64, 3, 0)
    expected = {res: min(16384 // res, 512) for res in (4, 8, 16, 32, 64)}
    assert {res: getattr(G.synthesis, f"b{res}").conv1.weight.shape[0] for res in expected} == expected
    assert D.b64.conv0.weight.shape[0] == expected[64] and D.b64.conv1.weight.shape[0] == expected[32]
    assert math.isclose(stylegan2_config("paper256", 64).lr, 0.0025)
