"""How much of a photo a training crop covers: the release's data squashed every photo to 256x256 (the ImageNet
presets' ``data.resize=256``, ``data.resize_mode=squash``), and both decode paths crop the same share of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_colorization.data import resize_rule
from lit_colorization.data.crops import SHORTER_SIDE, SQUASH, Resize, crop_sample
from lit_colorization.data.encoded import DeviceCropper, EncodedCollate, EncodedImageFolderDataset
from lit_colorization.data.folder import ImageFolderDataset
from lit_colorization.pretrain.pretrain_config import PRETRAIN

HEIGHT, WIDTH, CROP = 375, 500, 176  # a typical ImageNet photo, the paper's crop


def coordinate_ramp(height: int, width: int) -> np.ndarray:
    """Red grows down the rows and green across the columns, 0 to 255: a crop's colours say where it lies."""
    rows = np.linspace(0, 255, height)[:, None].repeat(width, axis=1)
    cols = np.linspace(0, 255, width)[None, :].repeat(height, axis=0)
    return np.rint(np.stack([rows, cols, np.full_like(rows, 128)], axis=-1)).astype(np.uint8)


def covered_share(crop: torch.Tensor) -> tuple[float, float]:
    """(share of the photo's height, share of its width) a 3 x S x S crop of ``coordinate_ramp`` spans."""
    size = crop.shape[-1]
    rows, cols = crop[0].double(), crop[1].double()
    # Ramp levels per crop pixel, extended by one pixel so that a crop of the whole photo spans 1.
    height = (rows[-1].mean() - rows[0].mean()) / 255 * size / (size - 1)
    width = (cols[:, -1].mean() - cols[:, 0].mean()).abs() / 255 * size / (size - 1)
    return float(height), float(width)


@pytest.mark.parametrize(
    ("resize", "expected"),
    [
        (Resize(256, SQUASH), (CROP / 256, CROP / 256)),  # 0.69 x 0.69: 47% of the photo
        (Resize(256, SHORTER_SIDE), (CROP / 256, CROP / (WIDTH * 256 / HEIGHT))),  # 375x500 -> 256x341
        (None, (CROP / HEIGHT, CROP / WIDTH)),  # a window of the full-size photo: 17% of it
    ],
)
def test_a_crop_covers_the_share_its_resize_implies(resize, expected) -> None:
    crop = crop_sample(coordinate_ramp(HEIGHT, WIDTH), CROP, resize, rng=None)
    assert crop.shape == (3, CROP, CROP)
    np.testing.assert_allclose(covered_share(crop), expected, atol=0.01)


def test_squash_gives_a_square_of_the_whole_photo() -> None:
    squashed = Resize(256, SQUASH).apply(coordinate_ramp(HEIGHT, WIDTH))
    assert squashed.shape == (256, 256, 3)
    reference = np.asarray(
        Image.fromarray(coordinate_ramp(HEIGHT, WIDTH)).resize((256, 256), Image.Resampling.BILINEAR)
    )
    np.testing.assert_array_equal(squashed, reference)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
    ],
)
@pytest.mark.parametrize("resize", [Resize(256, SQUASH), Resize(256, SHORTER_SIDE)])
def test_the_device_cropper_cuts_what_the_cpu_path_cuts(tmp_path: Path, resize: Resize, device: str) -> None:
    photo = coordinate_ramp(HEIGHT, WIDTH)
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "val" / "b").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "val" / "a" / "photo.png")  # travels as pixels
    Image.fromarray(photo).save(tmp_path / "val" / "b" / "photo.jpg", quality=95)  # as JPEG bytes
    on_cpu = ImageFolderDataset(tmp_path, "val", CROP, resize, train=False)
    encoded = EncodedImageFolderDataset(tmp_path, "val", train=False)
    batch = EncodedCollate()([encoded[index] for index in range(len(encoded))])
    on_device = DeviceCropper(CROP, resize)(batch, device)
    for row, label in enumerate(on_device["label"].tolist()):
        expected = on_cpu[label][0]
        crop = on_device["rgb"][row].cpu()
        np.testing.assert_allclose(covered_share(crop), covered_share(expected), atol=0.005)
        # Centre crops of a smooth ramp: the same pixels up to resampling (and JPEG) rounding.
        assert (crop.int() - expected.int()).abs().max() <= 3


@pytest.mark.parametrize("preset", ["eccv16_imagenet", "alexnet_imagenet", "resnet50_imagenet"])
def test_imagenet_presets_squash_to_256_as_the_release_data(tmp_path: Path, preset: str) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    config = PRETRAIN.load(preset, [f"data.root={tmp_path}"])
    assert (config.data.resize, config.data.resize_mode) == (256, SQUASH)
    assert resize_rule(config.data) == Resize(256, SQUASH)
    kept = PRETRAIN.load(preset, [f"data.root={tmp_path}", "data.resize_mode=shorter_side"])
    assert resize_rule(kept.data) == Resize(256, SHORTER_SIDE)
    assert resize_rule(PRETRAIN.load(preset, [f"data.root={tmp_path}", "data.resize=null"]).data) is None
