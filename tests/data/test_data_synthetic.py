"""The synthetic data set: deterministic, hue families as classes, some exactly gray images."""

from __future__ import annotations

import numpy as np
import torch
from skimage.color import rgb2hsv, rgb2lab

from lit_colorization.data import SyntheticColorDataset
from lit_colorization.data.crops import center_crop
from lit_colorization.data.synthetic import synthetic_image

SIZE = 48


def circular_mean_hue(image: np.ndarray) -> float:
    angles = 2 * np.pi * rgb2hsv(image)[..., 0]
    return float(np.mod(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean()) / (2 * np.pi), 1.0))


def hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 1 - abs(a - b))


def test_images_are_deterministic_and_distinct() -> None:
    first = synthetic_image(0, "train", 3, SIZE, 4, 8)
    assert first.dtype == np.uint8 and first.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(first, synthetic_image(0, "train", 3, SIZE, 4, 8))
    for other in [(1, "train", 3), (0, "val", 3), (0, "train", 7)]:
        assert not np.array_equal(first, synthetic_image(other[0], other[1], other[2], SIZE, 4, 8))


def test_classes_are_hue_families() -> None:
    for index in range(16):
        if index % 8 == 7:
            continue
        hue = circular_mean_hue(synthetic_image(0, "train", index, SIZE, 4, 8))
        assert hue_distance(hue, (index % 4) / 4) < 0.05, (index, hue)


def test_every_eighth_image_is_gray_and_below_the_colour_mask_threshold() -> None:
    for index in range(16):
        image = synthetic_image(0, "train", index, SIZE, 4, 8)
        chroma = np.hypot(*np.moveaxis(rgb2lab(image)[..., 1:], -1, 0))
        if index % 8 == 7:
            assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()
            assert chroma.max() < 5
        else:
            assert np.median(chroma) > 15
            assert image.std() > 5  # gradients and blobs, not a flat colour


def test_dataset_crops_and_labels() -> None:
    train = SyntheticColorDataset(12, SIZE, crop_size=32, split="train", seed=5)
    val = SyntheticColorDataset(12, SIZE, crop_size=32, split="val", seed=5)
    assert len(train) == 12 and train.classes == ["hue_0.00", "hue_0.25", "hue_0.50", "hue_0.75"]
    for index in range(12):
        rgb, label = train[index]
        assert rgb.shape == (3, 32, 32) and rgb.dtype == torch.uint8 and label == index % 4
        val_rgb, val_label = val[index]
        assert val_label == index % 4
        np.testing.assert_array_equal(val_rgb.permute(1, 2, 0).numpy(), center_crop(val.image(index), 32))
    before = train[0][0]
    train.set_epoch(1)
    assert not torch.equal(before, train[0][0])
