"""The one-pass resize-and-crop (data/encoded.py ``resized_crops``) against the tap-by-tap version it replaced.

``tap_by_tap_crops`` is ``resized_crops`` as it was at commit 3153262 (16 gathers per pair of taps), kept here
as the oracle: the fused pass must give the same crops, pixel for pixel up to float rounding. Stated tolerance:
no pixel differs by more than 1 level of 255, and at most 0.5% of the values differ at all (both round a float
sum; summed in another order, a sum that lands within float error of k + 0.5 can round either way).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from lit_colorization.data.crops import SQUASH, Resize
from lit_colorization.data.encoded import MAX_TAPS, crop_boxes, resized_crops, to_device

MAX_DIFFERENT_FRACTION = 0.005


def tap_by_tap_crops(
    images: Sequence[Tensor],
    top: Tensor,
    left: Tensor,
    box_height: Tensor,
    box_width: Tensor,
    mirror: Tensor,
    size: int,
) -> Tensor:
    """The tap-by-tap resampling of commit 3153262: four gathers per bilinear tap, taps x taps of them."""
    device = images[0].device
    heights = torch.tensor([image.shape[-2] for image in images], dtype=torch.int64)
    widths = torch.tensor([image.shape[-1] for image in images], dtype=torch.int64)
    plane = heights * widths
    start = torch.cumsum(3 * plane, 0) - 3 * plane  # where each image begins in the flat buffer
    row_scale = box_height.to(torch.float64) / size
    col_scale = box_width.to(torch.float64) / size
    largest = max(float(row_scale.max()), float(col_scale.max()))
    taps = min(MAX_TAPS, max(1, math.ceil(largest - 1e-9)))
    flat = torch.cat([image.reshape(-1) for image in images])

    numbers = torch.stack([top, left, row_scale, col_scale, heights, widths, mirror], dim=1).to(torch.float64)
    top_d, left_d, row_scale_d, col_scale_d, height_d, width_d, mirror_d = to_device(
        numbers.float(), device
    ).T[:, :, None]
    plane_base = to_device(start[:, None] + torch.arange(3) * plane[:, None], device)[:, :, None, None]
    row_stride = to_device(widths, device)[:, None, None, None]
    # Sample positions in output-pixel units, pixel by pixel and taps within a pixel: (S * taps,).
    steps = torch.arange(size, device=device)[:, None] + (torch.arange(taps, device=device) + 0.5) / taps
    steps = steps.reshape(-1)
    rows = (top_d + steps * row_scale_d - 0.5).clamp(min=0)
    cols = (left_d + steps * col_scale_d - 0.5).clamp(min=0)
    cols = torch.where(mirror_d > 0, cols.flip(-1), cols)
    rows = torch.minimum(rows, height_d - 1).view(-1, size, taps)
    cols = torch.minimum(cols, width_d - 1).view(-1, size, taps)

    def read(row: Tensor, col: Tensor) -> Tensor:
        index = plane_base + row.long()[:, None, :, None] * row_stride + col.long()[:, None, None, :]
        return flat.take(index).to(torch.float32)

    total = torch.zeros(len(images), 3, size, size, device=device)
    for row_tap in range(taps):
        row = rows[..., row_tap]
        row_low = row.floor()
        row_high = torch.minimum(row_low + 1, height_d - 1)
        row_frac = (row - row_low)[:, None, :, None]
        for col_tap in range(taps):
            col = cols[..., col_tap]
            col_low = col.floor()
            col_high = torch.minimum(col_low + 1, width_d - 1)
            col_frac = (col - col_low)[:, None, None, :]
            upper = read(row_low, col_low) * (1 - col_frac) + read(row_low, col_high) * col_frac
            lower = read(row_high, col_low) * (1 - col_frac) + read(row_high, col_high) * col_frac
            total += upper * (1 - row_frac) + lower * row_frac
    return (total / (taps * taps)).round_().clamp_(0, 255).to(torch.uint8)


def photos(sizes: Sequence[tuple[int, int]], seed: int) -> list[Tensor]:
    rng = np.random.default_rng(seed)
    return [torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)) for h, w in sizes]


SIZES = [(375, 500), (500, 375), (480, 640), (150, 200), (333, 500), (64, 48)]


@pytest.mark.parametrize(
    "resize, crop_size",
    [
        (None, 64),  # no resize: exact windows (1 tap), and enlargement of the photo smaller than the crop
        (Resize(256, SQUASH), 176),  # the ImageNet presets: 2 taps
        (Resize(256, "shorter_side"), 64),  # 4 taps and more (the cap)
        (Resize(96, SQUASH), 80),
    ],
)
def test_one_pass_crops_equal_the_tap_by_tap_crops(resize: Resize | None, crop_size: int) -> None:
    images = photos(SIZES, seed=crop_size)
    generator = torch.Generator().manual_seed(crop_size)
    crop = torch.rand(len(images), 3, generator=generator, dtype=torch.float64)
    crop[:, 2] = (crop[:, 2] < 0.5).double()
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    boxes = crop_boxes(heights, widths, crop, crop_size, resize)
    fused = resized_crops(images, *boxes, crop[:, 2], crop_size)
    reference = tap_by_tap_crops(images, *boxes, crop[:, 2], crop_size)
    assert fused.shape == reference.shape == (len(images), 3, crop_size, crop_size)
    assert fused.dtype == torch.uint8
    difference = (fused.int() - reference.int()).abs()
    assert difference.max() <= 1
    assert (difference > 0).double().mean() <= MAX_DIFFERENT_FRACTION
    assert crop[:, 2].sum() > 0  # some crops are mirrored


def test_one_pass_crops_use_the_cap_of_taps_for_strong_shrinking() -> None:
    images = photos([(800, 800)], seed=1)
    box = torch.tensor([800.0])
    zero = torch.zeros(1)
    fused = resized_crops(images, zero, zero, box, box, zero, 40)  # 20x shrink: MAX_TAPS taps per axis
    reference = tap_by_tap_crops(images, zero, zero, box, box, zero, 40)
    assert MAX_TAPS < 20
    assert (fused.int() - reference.int()).abs().max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_one_pass_crops_on_cuda_equal_the_tap_by_tap_crops_on_the_cpu() -> None:
    images = photos(SIZES, seed=5)
    crop = torch.rand(len(images), 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    crop[:, 2] = (crop[:, 2] < 0.5).double()
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    boxes = crop_boxes(heights, widths, crop, 176, Resize(256, SQUASH))
    fused = resized_crops([image.cuda() for image in images], *boxes, crop[:, 2], 176).cpu()
    difference = (fused.int() - tap_by_tap_crops(images, *boxes, crop[:, 2], 176).int()).abs()
    assert difference.max() <= 1 and (difference > 0).double().mean() <= MAX_DIFFERENT_FRACTION
