"""Hostile and unusual image files: each is either decoded correctly or skipped, never crashes a batch."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lit_colorization.data import ImageFolderDataset, SkipUnreadableCollate, UnreadableImageError, read_rgb

CROP = 32


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def write_png(path: Path, width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> None:
    """A PNG written by hand, so headers and bit depths can be anything."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def write_rgb16_png(path: Path, values: np.ndarray) -> None:
    rows = [b"\x00" + row.astype(">u2").tobytes() for row in values]  # filter type 0 per row
    write_png(path, values.shape[1], values.shape[0], 16, 2, zlib.compress(b"".join(rows)))


def write_bomb_png(path: Path) -> None:
    """A valid PNG header claiming 100,000 x 100,000 pixels (10 gigapixels) with no pixel data."""
    write_png(path, 100_000, 100_000, 8, 2, zlib.compress(b""))


def quadrants(height: int, width: int) -> np.ndarray:
    """Red / green / blue / white quadrants (top-left, top-right, bottom-left, bottom-right)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[: height // 2, : width // 2] = (255, 0, 0)
    image[: height // 2, width // 2 :] = (0, 255, 0)
    image[height // 2 :, : width // 2] = (0, 0, 255)
    image[height // 2 :, width // 2 :] = (255, 255, 255)
    return image


def quadrant_centres(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    rows, cols = (height // 4, 3 * height // 4), (width // 4, 3 * width // 4)
    return np.array([[image[r, c] for c in cols] for r in rows], dtype=np.int64)


def write_truncated_jpeg(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])


# ---------------------------------------------------------------- decoded correctly


def test_grayscale_is_replicated_into_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(0, 240, dtype=np.uint8).reshape(12, 20)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    rgb = read_rgb(tmp_path / "gray.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (12, 20, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], gray)


def test_sixteen_bit_gray_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 64).round().astype(np.uint16).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"
    rgb = read_rgb(tmp_path / "gray16.png")
    expected = np.round(values / 257.0).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], expected)
    assert rgb.max() == 255 and rgb.min() == 0 and len(np.unique(rgb)) == 64


def test_sixteen_bit_rgb_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(0, 65536, size=(6, 10, 3)).astype(np.uint16)
    values[0, 0] = (1000, 30000, 65535)  # clipping would give (255, 255, 255)
    write_rgb16_png(tmp_path / "rgb16.png", values)
    rgb = read_rgb(tmp_path / "rgb16.png")
    assert np.abs(rgb.astype(np.int64) - np.round(values / 257.0)).max() <= 1
    assert tuple(rgb[0, 0]) in {(3, 116, 255), (4, 117, 255), (3, 117, 255), (4, 116, 255)}


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0]], [[0, 0, 255, 128], [0, 255, 0, 64]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    rgb = read_rgb(tmp_path / "rgba.png").astype(np.float64)
    alpha = rgba[..., 3:] / 255.0
    expected = rgba[..., :3] * alpha + 255.0 * (1 - alpha)
    assert np.abs(rgb - expected).max() <= 1.0
    assert tuple(rgb[0, 1]) == (255, 255, 255)  # transparent black becomes white, not black


def test_gray_with_alpha_is_composited_on_white(tmp_path: Path) -> None:
    la = np.array([[[40, 255], [40, 0]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    rgb = read_rgb(tmp_path / "la.png")
    np.testing.assert_array_equal(rgb, [[[40, 40, 40], [255, 255, 255]]])


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    palette = [200, 10, 10, 10, 200, 10, 10, 10, 200] + [0] * (256 * 3 - 9)
    indices = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette(palette)
    image.save(tmp_path / "palette.png")
    image.save(tmp_path / "palette_transparent.png", transparency=1)
    colours = np.array(palette[:9], dtype=np.uint8).reshape(3, 3)
    np.testing.assert_array_equal(read_rgb(tmp_path / "palette.png"), colours[indices])
    with_white = colours.copy()
    with_white[1] = 255
    np.testing.assert_array_equal(read_rgb(tmp_path / "palette_transparent.png"), with_white[indices])


def test_cmyk_jpeg_matches_the_standard_cmyk_formula(tmp_path: Path) -> None:
    inks = np.array([[0, 0, 0, 0], [255, 0, 0, 0], [0, 128, 255, 64], [30, 200, 10, 128]], dtype=np.uint8)
    cmyk = np.repeat(np.repeat(inks.reshape(2, 2, 4), 16, axis=0), 16, axis=1)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    rgb = read_rgb(tmp_path / "cmyk.jpg")
    expected = (255.0 - inks[:, :3]) * (255.0 - inks[:, 3:]) / 255.0
    assert np.abs(quadrant_centres(rgb).reshape(4, 3) - expected).max() <= 3


@pytest.mark.parametrize(("orientation", "quarter_turns_ccw"), [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, quarter_turns_ccw: int) -> None:
    stored = quadrants(32, 48)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    rgb = read_rgb(tmp_path / "rotated.jpg")
    displayed = np.rot90(stored, k=quarter_turns_ccw)
    assert rgb.shape == displayed.shape
    assert np.abs(quadrant_centres(rgb) - quadrant_centres(displayed)).max() <= 4


def test_image_smaller_than_the_crop_is_upscaled(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    Image.fromarray(quadrants(10, 20)).save(tmp_path / "train" / "tiny.png")
    for train in (True, False):
        rgb, label = ImageFolderDataset(tmp_path, "train", crop_size=CROP, train=train)[0]
        assert rgb.shape == (3, CROP, CROP) and rgb.dtype == torch.uint8 and label == 0
    centre = ImageFolderDataset(tmp_path, "train", crop_size=CROP, train=False)[0][0]
    # Shorter side 10 -> 32, so the 64-wide image is centre-cropped to its middle 32 columns.
    assert centre[:, 4, 4].tolist() == [255, 0, 0] and centre[:, 4, -5].tolist() == [0, 255, 0]
    assert centre[:, -5, 4].tolist() == [0, 0, 255] and centre[:, -5, -5].tolist() == [255, 255, 255]


# ---------------------------------------------------------------- unreadable


UNREADABLE_WRITERS = {
    "truncated.jpg": write_truncated_jpeg,
    "empty.jpg": lambda path: path.write_bytes(b""),
    "notes.jpg": lambda path: path.write_text("this is not an image\n"),
    "bomb.png": write_bomb_png,
}


@pytest.mark.parametrize("name", sorted(UNREADABLE_WRITERS))
def test_unreadable_files_give_none_or_a_one_line_error_naming_them(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    UNREADABLE_WRITERS[name](path)
    assert read_rgb(path) is None
    with pytest.raises(UnreadableImageError) as raised:
        read_rgb(path, strict=True)
    message = str(raised.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(raised.value, ValueError)


def test_decompression_bomb_header_is_refused_without_allocating(tmp_path: Path) -> None:
    write_bomb_png(tmp_path / "bomb.png")
    with pytest.raises(UnreadableImageError, match="decompression bomb"):
        read_rgb(tmp_path / "bomb.png", strict=True)


def test_images_over_the_pil_pixel_limit_are_unreadable(tmp_path: Path, monkeypatch) -> None:
    Image.fromarray(quadrants(40, 40)).save(tmp_path / "big.png")  # 1600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 is only a warning for PIL: refuse it too
    with pytest.raises(UnreadableImageError, match="decompression bomb"):
        read_rgb(tmp_path / "big.png", strict=True)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over twice the limit: PIL's own error
    assert read_rgb(tmp_path / "big.png") is None
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1600)
    assert read_rgb(tmp_path / "big.png").shape == (40, 40, 3)


def test_each_unreadable_file_is_logged_once(tmp_path: Path, caplog) -> None:
    path = tmp_path / "logged_once.jpg"
    path.write_text("not an image")
    with caplog.at_level(logging.WARNING, logger="lit_colorization.data.images"):
        for _ in range(3):
            assert read_rgb(path) is None
    assert len(caplog.records) == 1 and str(path) in caplog.records[0].getMessage()


# ---------------------------------------------------------------- a tree of hostile files in batches


def write_hostile_tree(root: Path) -> tuple[int, str]:
    """train/ with readable and unreadable files; returns (unreadable count, first unreadable path)."""
    train = root / "train"
    train.mkdir(parents=True)
    Image.fromarray(quadrants(40, 60)).save(train / "a_plain.jpg")
    Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L").save(train / "b_tiny_gray.png")
    Image.fromarray(quadrants(36, 36), mode="RGB").convert("CMYK").save(train / "c_cmyk.jpg")
    write_truncated_jpeg(train / "d_truncated.jpg")
    (train / "e_empty.JPG").write_bytes(b"")
    Image.fromarray(np.linspace(0, 65535, 48 * 48).astype(np.uint16).reshape(48, 48)).save(
        train / "f_16bit.png"
    )
    (train / "g_text.jpeg").write_text("not an image")
    Image.fromarray(np.zeros((40, 40, 4), np.uint8), mode="RGBA").save(train / "h_rgba.png")
    write_bomb_png(train / "i_bomb.png")
    return 4, str(train / "d_truncated.jpg")


def test_batches_drop_unreadable_files_and_count_them(tmp_path: Path) -> None:
    unreadable, _ = write_hostile_tree(tmp_path)
    dataset = ImageFolderDataset(tmp_path, "train", crop_size=CROP, train=True)
    assert len(dataset) == 9
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=SkipUnreadableCollate(CROP))
    batches = list(loader)
    assert sum(int(batch["skipped"]) for batch in batches) == unreadable
    assert sum(len(batch["rgb"]) for batch in batches) == len(dataset) - unreadable
    for batch in batches:
        assert batch["rgb"].dtype == torch.uint8 and batch["rgb"].shape[1:] == (3, CROP, CROP)
        assert batch["label"].dtype == torch.int64 and batch["label"].shape == (len(batch["rgb"]),)
        assert batch["skipped"].dtype == torch.int64 and batch["skipped"].dim() == 0
    # The transparent RGBA image (last readable file, alone in the last batch with the bomb) is white.
    assert int(batches[-1]["skipped"]) == 1 and bool((batches[-1]["rgb"] == 255).all())


def test_strict_mode_raises_on_the_first_unreadable_file(tmp_path: Path) -> None:
    _, first_bad = write_hostile_tree(tmp_path)
    dataset = ImageFolderDataset(tmp_path, "train", crop_size=CROP, strict=True)
    with pytest.raises(UnreadableImageError) as raised:
        for index in range(len(dataset)):
            dataset[index]
    assert first_bad in str(raised.value) and index == 3
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=SkipUnreadableCollate(CROP))
    with pytest.raises(UnreadableImageError, match="d_truncated.jpg"):
        list(loader)
