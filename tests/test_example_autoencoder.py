"""examples/autoencoder_gan.py: a user's autoencoder + PatchGAN; AdaptiveAugmentation is its only addition."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

from lightning_genaug import AdaptiveAugmentation, AugmentPipe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "autoencoder_gan.py"


def load_example():
    spec = importlib.util.spec_from_file_location("autoencoder_gan_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_model_code_imports_nothing_of_ours() -> None:
    """Only the Trainer line knows lightning-genaug: the one import is the callback, used in ``fit``."""
    tree = ast.parse(EXAMPLE.read_text())
    ours = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightning_genaug")
    ]
    assert [alias.name for node in ours for alias in node.names] == ["AdaptiveAugmentation"]
    users = {
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        and any(
            isinstance(node, ast.Name) and node.id == "AdaptiveAugmentation" for node in ast.walk(function)
        )
    }
    assert users == {"fit"}


def test_a_few_steps_move_p_and_the_patch_discriminator_sees_augmented_images(tmp_path: Path) -> None:
    example = load_example()
    torch.manual_seed(0)
    model = example.AutoencoderGAN(width=8)
    discriminator = model.loss.discriminator
    raw, seen = [], []  # D's input before the callback's hook, and what its first layer received
    discriminator.register_forward_pre_hook(lambda _, args: raw.append(args[0].detach().clone()))
    discriminator.main[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    ada = AdaptiveAugmentation(pipe=AugmentPipe("bgc", p=0.5), every_n_batches=2, speed_kimg=1.0)
    trainer = example.fit(model, max_steps=8, log_dir=str(tmp_path), ada=ada)  # 4 batches

    assert ada.is_foreign and ada.p != 0.5  # the controller found loss.discriminator and moved p
    assert len(raw) == len(seen) == 4 * 3 + 2  # per batch: AE step 1 call, D step 2; probe every 2nd batch
    augmented = [not torch.equal(before, after) for before, after in zip(raw, seen, strict=True)]
    assert sum(augmented) >= 10
    assert seen[0].shape == raw[0].shape == (32, 1, 32, 32)
    assert "ada/rt" in trainer.callback_metrics


def test_naming_the_encoder_as_the_discriminator_stops_at_the_first_reading(tmp_path: Path) -> None:
    """``discriminator_attr='encoder'`` hooks a module whose output is latents, not real/fake logits."""
    example = load_example()
    torch.manual_seed(0)
    model = example.AutoencoderGAN(width=8)
    ada = AdaptiveAugmentation(discriminator_attr="encoder", every_n_batches=1, speed_kimg=1.0)
    with pytest.raises(ValueError, match=r"not one logit per image .* set `discriminator_attr`") as error:
        example.fit(model, max_steps=4, log_dir=str(tmp_path), ada=ada)
    assert "\n" not in str(error.value)
