"""Crops, per-sample random generators, the collate function and the epoch-seeded sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lit_colorization.data.collate import SkipUnreadableCollate
from lit_colorization.data.crops import (
    Resize,
    center_crop,
    crop_at,
    crop_sample,
    ensure_min_size,
    random_crop_flip,
    resize_shorter_side,
    sample_rng,
    to_chw_tensor,
)
from lit_colorization.data.sampling import SeededShuffleSampler, SharedEpoch


def position_coded(height: int, width: int) -> np.ndarray:
    """Pixel (r, c) holds (r, c, 7), so a crop tells where it came from."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def locate(crop: np.ndarray) -> tuple[int, int, bool]:
    """(top, left, flipped) of a crop of a position-coded image, checking it is an exact window."""
    top, size = int(crop[0, 0, 0]), crop.shape[0]
    flipped = size > 1 and int(crop[0, 0, 1]) > int(crop[0, -1, 1])
    left = int(crop[0, -1, 1]) if flipped else int(crop[0, 0, 1])
    window = position_coded(256, 256)[top : top + size, left : left + size]
    np.testing.assert_array_equal(crop, window[:, ::-1] if flipped else window)
    return top, left, flipped


@pytest.mark.parametrize(("shape", "size", "expected"), [((40, 60), 20, (20, 30)), ((90, 30), 45, (135, 45))])
def test_resize_shorter_side_keeps_aspect_ratio(shape, size, expected) -> None:
    image = np.zeros((*shape, 3), np.uint8)
    assert resize_shorter_side(image, size).shape == (*expected, 3)


def test_resize_matches_pil_bilinear() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    reference = np.asarray(Image.fromarray(image).resize((30, 20), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(resize_shorter_side(image, 20), reference)


def test_ensure_min_size_upscales_only_when_needed() -> None:
    image = np.zeros((10, 40, 3), np.uint8)
    assert ensure_min_size(image, 32, 32).shape == (32, 128, 3)
    assert ensure_min_size(image, 8, 16) is image
    assert ensure_min_size(image, 20, 100).shape == (25, 100, 3)


def test_center_crop_and_crop_at_are_windows() -> None:
    image = position_coded(9, 12)
    np.testing.assert_array_equal(center_crop(image, 4), image[2:6, 4:8])
    np.testing.assert_array_equal(crop_at(image, 5, 8, 4), image[5:9, 8:12])
    with pytest.raises(ValueError, match="does not fit"):
        crop_at(image, 6, 0, 4)


def test_random_crops_cover_every_position_and_both_flips() -> None:
    image = position_coded(6, 7)
    seen = {locate(random_crop_flip(image, 4, sample_rng(0, 0, index))) for index in range(400)}
    assert seen == {(top, left, flip) for top in range(3) for left in range(4) for flip in (False, True)}


def test_sample_rng_depends_on_seed_epoch_and_index_only() -> None:
    draw = lambda *key: sample_rng(*key).integers(0, 2**62, size=4).tolist()  # noqa: E731
    assert draw(3, 1, 5) == draw(3, 1, 5)
    keys = [(3, 1, 5), (4, 1, 5), (3, 2, 5), (3, 1, 6), (3, 5, 1), (3, 1, 5, 1)]
    assert len({tuple(draw(*key)) for key in keys}) == len(keys)


def test_to_chw_tensor_is_a_contiguous_copy() -> None:
    image = position_coded(5, 6)
    tensor = to_chw_tensor(image[:, ::-1])
    assert tensor.shape == (3, 5, 6) and tensor.dtype == torch.uint8 and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor.permute(1, 2, 0).numpy(), image[:, ::-1])
    image[0, 0] = 99
    assert tensor[:, 0, -1].tolist() == [0, 0, 7]


def test_crop_sample_train_and_validation() -> None:
    image = position_coded(50, 80)
    centre = crop_sample(image, 16, None, rng=None)
    np.testing.assert_array_equal(centre.permute(1, 2, 0).numpy(), image[17:33, 32:48])
    train = crop_sample(image, 16, None, rng=sample_rng(0, 0, 0)).permute(1, 2, 0).numpy()
    top, left, _ = locate(train)
    assert 0 <= top <= 34 and 0 <= left <= 64
    resized = crop_sample(image, 16, Resize(25), rng=None)  # 50x80 -> 25x40 first
    reference = resize_shorter_side(image, 25)[4:20, 12:28]
    np.testing.assert_array_equal(resized.permute(1, 2, 0).numpy(), reference)


def test_collate_drops_none_and_counts_it() -> None:
    collate = SkipUnreadableCollate(crop_size=4)
    sample = (torch.full((3, 4, 4), 9, dtype=torch.uint8), 2)
    batch = collate([sample, None, sample, None, None])
    assert batch["rgb"].shape == (2, 3, 4, 4) and batch["rgb"].dtype == torch.uint8
    assert batch["label"].tolist() == [2, 2] and batch["label"].dtype == torch.int64
    assert (
        batch["skipped"].item() == 3 and batch["skipped"].dtype == torch.int64 and batch["skipped"].dim() == 0
    )
    empty = collate([None, None])
    assert (
        empty["rgb"].shape == (0, 3, 4, 4) and empty["label"].shape == (0,) and empty["skipped"].item() == 2
    )


class CountingEpochs:
    def __init__(self, length: int) -> None:
        self.length = length
        self.epochs: list[int] = []

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


def test_seeded_shuffle_sampler_is_a_reproducible_permutation_per_epoch() -> None:
    dataset = CountingEpochs(50)
    sampler = SeededShuffleSampler(dataset, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and first != list(range(50)) and len(sampler) == 50
    assert list(SeededShuffleSampler(CountingEpochs(50), seed=1)) == first
    assert list(SeededShuffleSampler(CountingEpochs(50), seed=2)) != first
    sampler.set_epoch(1)
    assert dataset.epochs == [1] and sorted(sampler) == list(range(50)) and list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_shared_epoch_rejects_negative_values() -> None:
    epoch = SharedEpoch()
    epoch.set(4)
    assert epoch.value == 4
    with pytest.raises(ValueError, match="epoch"):
        epoch.set(-1)
