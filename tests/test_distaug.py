"""DistAugTransforms: sub-pixel permutations, option counts, compositions, RandAugment, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lightning_genaug.augment.distaug import (
    PERMUTATION_KINDS,
    RANDAUGMENT_OPS,
    DistAugTransforms,
    from_sequence,
    subpixel_permutation,
    to_sequence,
)

C, H, W = 3, 8, 8
L = C * H * W


def coordinate_tokens(batch: int, channels: int = C, height: int = H, width: int = W) -> torch.Tensor:
    """Token images whose value at (ch, row, col) is its own raster index (row * W + col) * C + ch."""
    index = torch.arange(channels * height * width).view(1, height, width, channels).permute(0, 3, 1, 2)
    return index.expand(batch, -1, -1, -1).clone()


def all_ids(aug: DistAugTransforms) -> torch.Tensor:
    """Every combination of option ids, ``(prod(num_options), K)``."""
    return torch.tensor(list(itertools.product(*(range(n) for n in aug.num_options))))


@pytest.mark.parametrize(("kind", "count"), list(PERMUTATION_KINDS.items()))
def test_each_kind_is_a_bijection_with_the_right_number_of_distinct_options(kind: str, count: int) -> None:
    aug = DistAugTransforms([kind])
    assert aug.num_options == (count,)
    perms = subpixel_permutation([kind], torch.arange(count).view(-1, 1), C, H, W)
    assert perms.shape == (count, L)
    for perm in perms:
        assert torch.equal(perm.sort().values, torch.arange(L)), "not a permutation of the sub-pixels"
    assert len({tuple(p.tolist()) for p in perms}) == count, "options must differ from one another"
    assert torch.equal(perms[0], torch.arange(L)), "id 0 must be the identity"


def test_identity_id_leaves_images_and_tokens_unchanged() -> None:
    aug = DistAugTransforms(["rotation", "transposition", "color", "jigsaw", "reverse"])
    images = torch.rand(4, C, H, W) * 2 - 1
    out, ids = aug(images, params=aug.identity_params(4))
    assert torch.equal(out, images) and torch.equal(ids, torch.zeros(4, 5, dtype=torch.long))
    tokens = torch.randint(256, (4, C, H, W), dtype=torch.uint8)
    assert torch.equal(aug.apply(tokens, aug.identity_params(4)), tokens)


def test_transforms_match_their_definitions_on_images() -> None:
    images = torch.rand(6, C, H, W) * 2 - 1

    def apply(kind: str, option: int) -> torch.Tensor:
        aug = DistAugTransforms([kind])
        return aug.apply(images, {"transform_ids": torch.full((6, 1), option)})

    for k in range(4):  # clockwise: torch.rot90 from the column axis towards the row axis
        assert torch.equal(apply("rotation", k), torch.rot90(images, k, dims=(3, 2)))
    assert torch.equal(apply("rotation", 1)[:, :, 0, 0], images[:, :, H - 1, 0]), "top-left <- bottom-left"
    assert torch.equal(apply("transposition", 1), images.transpose(2, 3))
    for option, order in enumerate(itertools.permutations(range(3))):
        assert torch.equal(apply("color", option), images[:, list(order)])
    assert torch.equal(apply("reverse", 1), from_sequence(to_sequence(images).flip(1), C, H, W))
    # jigsaw option 23 is the order (3, 2, 1, 0): quadrants swapped diagonally
    swapped = apply("jigsaw", 23)
    assert torch.equal(swapped[..., : H // 2, : W // 2], images[..., H // 2 :, W // 2 :])
    assert torch.equal(swapped[..., : H // 2, W // 2 :], images[..., H // 2 :, : W // 2])


def test_compositions_multiply_the_option_counts_and_apply_in_order() -> None:
    aug = DistAugTransforms(["rotation", "transposition", "color"])
    assert aug.num_options == (4, 2, 6)
    ids = all_ids(aug)
    perms = aug.permutation(ids, C, H, W)
    assert len({tuple(p.tolist()) for p in perms}) == 4 * 2 * 6, "every combination is a distinct transform"
    images = torch.rand(len(ids), C, H, W)
    orders = [list(order) for order in itertools.permutations(range(3))]

    def rotate_then_transpose_then_swap(image: torch.Tensor, rotation: int, transpose: int, color: int):
        image = torch.rot90(image, rotation, dims=(2, 1))
        image = image.transpose(1, 2) if transpose else image
        return image[orders[color]]

    expected = torch.stack(
        [
            rotate_then_transpose_then_swap(image, *combo)
            for image, combo in zip(images, ids.tolist(), strict=True)
        ]
    )
    assert torch.equal(aug.apply(images, {"transform_ids": ids}), expected)


def test_permutation_reads_the_augmented_sequence_from_original_positions() -> None:
    """augmented_sequence[k] == original_sequence[perm[k]] for random compositions (no off-by-transpose)."""
    aug = DistAugTransforms(["rotation", "transposition", "color", "jigsaw", "reverse"])
    params = aug.sample_params(64, generator=torch.Generator().manual_seed(0))
    augmented = to_sequence(aug.apply(coordinate_tokens(64), params))
    perm = aug.permutation(params["transform_ids"], C, H, W)
    assert torch.equal(augmented, perm)
    originals = torch.randint(256, (64, C, H, W))
    assert torch.equal(to_sequence(aug.apply(originals, params)), to_sequence(originals).gather(1, perm))


def test_draws_are_uniform_over_combinations_and_cover_them() -> None:
    aug = DistAugTransforms(["rotation", "transposition"])
    ids = aug.sample_params(4000, generator=torch.Generator().manual_seed(1))["transform_ids"]
    combined = ids[:, 0] * 2 + ids[:, 1]
    counts = torch.bincount(combined, minlength=8).float()
    assert counts.min() > 0 and (counts / 4000 - 1 / 8).abs().max() < 0.03


@pytest.mark.parametrize("aug_prob", [0.0, 0.3, 1.0])
def test_aug_prob_is_the_probability_of_a_non_identity_draw(aug_prob: float) -> None:
    aug = DistAugTransforms(["rotation", "color"], aug_prob=aug_prob)
    ids = aug.sample_params(4000, generator=torch.Generator().manual_seed(2))["transform_ids"]
    augmented = (ids != 0).any(dim=1).float().mean().item()
    assert augmented == pytest.approx(aug_prob, abs=0.03)
    assert ids.max(dim=0).values.tolist() == ([0, 0] if aug_prob == 0 else [3, 5])


def test_generator_makes_draws_reproducible() -> None:
    aug = DistAugTransforms(["jigsaw", "randaugment"])
    first = aug.sample_params(16, generator=torch.Generator().manual_seed(3))
    second = aug.sample_params(16, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_randaugment_option_ids_encode_operation_sequences() -> None:
    aug = DistAugTransforms(["randaugment"], randaugment_n=2, randaugment_m=15)
    assert aug.num_options == (1 + len(RANDAUGMENT_OPS) ** 2,)
    images = torch.rand(8, C, H, W) * 1.6 - 0.8
    params = aug.sample_params(8, generator=torch.Generator().manual_seed(4))
    params["transform_ids"] = torch.arange(8).view(-1, 1) * 9  # 0 = identity, then distinct op pairs
    out = aug.apply(images, params)
    assert torch.equal(out[0], images[0]), "id 0 is the identity"
    assert all(not torch.equal(out[i], images[i]) for i in range(1, 8)), (
        "every op pair at m=15 changes the image"
    )
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(aug.apply(images, params), out), "the same parameters replay the same result"
    assert torch.equal(aug.permutation(params["transform_ids"], C, H, W), torch.arange(L).expand(8, -1))


def test_randaugment_on_tokens_matches_float_images_and_keeps_the_dtype() -> None:
    aug = DistAugTransforms(["randaugment", "rotation"], randaugment_n=1, randaugment_m=10)
    tokens = torch.randint(256, (8, C, H, W), dtype=torch.uint8)
    params = aug.sample_params(8, generator=torch.Generator().manual_seed(5))
    out_tokens = aug.apply(tokens, params)
    out_images = aug.apply(tokens.float() / 127.5 - 1, params)
    assert out_tokens.dtype == torch.uint8
    assert torch.equal(out_tokens.long(), ((out_images + 1) * 127.5).round().long())


@pytest.mark.parametrize(
    ("kind", "shape", "message"),
    [
        ("rotation", (3, 8, 6), "square"),
        ("transposition", (3, 6, 8), "square"),
        ("jigsaw", (3, 7, 7), "even"),
        ("color", (1, 8, 8), "3 colour channels"),
    ],
)
def test_shapes_a_transform_cannot_handle_raise_clear_errors(kind: str, shape: tuple, message: str) -> None:
    aug = DistAugTransforms([kind])
    with pytest.raises(ValueError, match=message):
        aug(torch.zeros(2, *shape))


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="transforms"):
        DistAugTransforms(["rotate-ish"])
    with pytest.raises(ValueError, match="twice"):
        DistAugTransforms(["rot", "rotation"])
    with pytest.raises(ValueError, match="aug_prob"):
        DistAugTransforms(["rotation"], aug_prob=1.5)
    with pytest.raises(ValueError, match="empty"):
        DistAugTransforms([])
    with pytest.raises(ValueError, match="transform_ids"):
        subpixel_permutation(["rotation"], torch.zeros(3, 2, dtype=torch.long), C, H, W)


def test_all_kinds_together_work_on_a_batch_without_per_sample_loops() -> None:
    aug = DistAugTransforms(list(PERMUTATION_KINDS) + ["randaugment"], randaugment_n=1)
    assert math.prod(aug.num_options) == 4 * 2 * 6 * 24 * 2 * (1 + len(RANDAUGMENT_OPS))
    images = torch.rand(32, C, 16, 16) * 2 - 1
    out, ids = aug(images, torch.Generator().manual_seed(6))  # the generator comes second, as for every pipe
    assert out.shape == images.shape and ids.shape == (32, 6) and ids.dtype == torch.long
