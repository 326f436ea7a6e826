"""The one-pass resize-and-crop (data/encoded.py ``resized_crops``) against the tap-by-tap version it replaced.

``tap_by_tap_crops`` (benchmarks/bench.py, which times the two side by side) is ``resized_crops`` as it was at
commit 3153262 (16 gathers per pair of taps), kept as the oracle: the fused pass must give the same crops, pixel
for pixel up to float rounding. Stated tolerance: no pixel differs by more than 1 level of 255, and at most 0.5% of the values differ at all (both round a float
sum; summed in another order, a sum that lands within float error of k + 0.5 can round either way).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor

from lit_colorization.data.crops import SQUASH, Resize
from lit_colorization.data.encoded import MAX_TAPS, crop_boxes, resized_crops
from tests.paths import REPO

MAX_DIFFERENT_FRACTION = 0.005


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", REPO / "benchmarks" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


tap_by_tap_crops = load_bench().tap_by_tap_crops


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
