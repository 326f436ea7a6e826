"""The embedded default data set: offline photos, photo-index labels, a held-out validation strip."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from lit_colorization.data import EmbeddedTrainDataset, EmbeddedValDataset, load_embedded_photos
from lit_colorization.data.crops import SQUASH, Resize
from lit_colorization.data.embedded import EMBEDDED_PHOTOS, NamedPhoto, hold_out_strip

CROP = 16


def position_coded(height: int, width: int) -> np.ndarray:
    """Pixel (r, c) holds (r, c, 50): a crop tells which rows and columns it came from."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 50)], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def photos() -> list[NamedPhoto]:
    return load_embedded_photos()


def test_photos_load_without_any_network_access(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    loaded = load_embedded_photos()
    names = [photo.name for photo in loaded]
    assert names == [name for name, _, _ in EMBEDDED_PHOTOS if name in names]  # catalogue order, maybe gaps
    assert len(loaded) >= 6 and {"china", "flower", "astronaut", "coffee"} <= set(names)
    for photo in loaded:
        assert photo.image.dtype == np.uint8 and photo.image.ndim == 3 and photo.image.shape[2] == 3
        assert min(photo.image.shape[:2]) >= 200
        channels = photo.image.astype(np.int64)
        assert np.abs(channels[..., 0] - channels[..., 2]).mean() > 3, f"{photo.name} looks gray"


def test_landscape_photo_holds_out_its_right_strip() -> None:
    image = position_coded(40, 90)
    split = hold_out_strip(image, CROP, resize=None)
    np.testing.assert_array_equal(split.train_region, image[:, : 90 - CROP])
    np.testing.assert_array_equal(split.val_strip, image[:, 90 - CROP :])


def test_portrait_photo_holds_out_its_bottom_strip_and_small_photos_are_upscaled() -> None:
    image = position_coded(30, 12)  # needs 2*CROP = 32 rows and CROP = 16 columns
    split = hold_out_strip(image, CROP, resize=None)
    assert split.train_region.shape[1] == split.val_strip.shape[1] >= CROP
    assert split.val_strip.shape[0] == CROP and split.train_region.shape[0] >= CROP
    assert split.train_region.shape[0] + CROP == max(32, int(np.ceil(30 * 16 / 12)))


def test_training_and_validation_crops_never_share_pixels() -> None:
    photo = NamedPhoto("coded", position_coded(40, 90))
    train = EmbeddedTrainDataset([photo], CROP, crops_per_photo=200, seed=1)
    val = EmbeddedValDataset([photo], CROP, crops_per_photo=5)
    train_columns = torch.cat([train[i][0][1].flatten() for i in range(len(train))])
    assert int(train_columns.max()) < 90 - CROP and int(train_columns.min()) == 0
    val_crops = [val[i][0] for i in range(len(val))]
    tops = [int(crop[0, 0, 0]) for crop in val_crops]
    assert tops == [0, 6, 12, 18, 24]  # evenly spaced down the 40-row strip
    for crop, top in zip(val_crops, tops, strict=True):
        expected = position_coded(40, 90)[top : top + CROP, 90 - CROP :]
        np.testing.assert_array_equal(crop.permute(1, 2, 0).numpy(), expected)


def test_labels_are_photo_indices_and_classes_photo_names(photos) -> None:
    train = EmbeddedTrainDataset(photos, CROP, crops_per_photo=3)
    val = EmbeddedValDataset(photos, CROP, crops_per_photo=2)
    names = [photo.name for photo in photos]
    assert train.classes == names == val.classes
    assert len(train) == 3 * len(photos) and len(val) == 2 * len(photos)
    assert [train[i][1] for i in range(len(train))] == [i // 3 for i in range(len(train))]
    assert [val[i][1] for i in range(len(val))] == [i // 2 for i in range(len(val))]


def test_validation_crops_are_fixed_and_training_crops_change_per_epoch(photos) -> None:
    val_a = EmbeddedValDataset(photos, 32, crops_per_photo=2)
    val_b = EmbeddedValDataset(photos, 32, crops_per_photo=2)
    assert all(
        torch.equal(val_a[i][0], val_b[i][0]) and torch.equal(val_a[i][0], val_a[i][0])
        for i in range(len(val_a))
    )
    train = EmbeddedTrainDataset(photos, 32, crops_per_photo=2, seed=0)
    epoch0 = [train[i][0] for i in range(len(train))]
    for rgb in epoch0:
        assert rgb.shape == (3, 32, 32) and rgb.dtype == torch.uint8
    train.set_epoch(1)
    epoch1 = [train[i][0] for i in range(len(train))]
    assert sum(not torch.equal(a, b) for a, b in zip(epoch0, epoch1, strict=True)) == len(epoch0)
    train.set_epoch(0)
    assert all(torch.equal(a, train[i][0]) for i, a in enumerate(epoch0))


def test_resize_applies_before_the_split(photos) -> None:
    coffee = next(photo for photo in photos if photo.name == "coffee")  # 400 x 600
    split = hold_out_strip(coffee.image, CROP, resize=Resize(100))
    assert split.train_region.shape[:2] == (100, 150 - CROP) and split.val_strip.shape[:2] == (100, CROP)
    squashed = hold_out_strip(coffee.image, CROP, resize=Resize(100, SQUASH))
    assert squashed.train_region.shape[:2] == (100 - CROP, 100) and squashed.val_strip.shape[:2] == (
        CROP,
        100,
    )
