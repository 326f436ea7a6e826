"""colorize in bounded memory: the full-resolution work a band of rows at a time gives what the whole-image
``F.interpolate`` path gives, and a large photo costs its uint8 copies, not ~160 bytes a pixel of float work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_colorization.color import rgb_to_lab
from lit_colorization.color.pictures import lab_batch_to_rgb, to_uint8_image
from lit_colorization.inference import tiles
from lit_colorization.inference.colorizer import colorize_rgb, load_colorizer
from lit_colorization.inference.network_output import output_to_ab
from lit_colorization.inference.official import release_ab
from tests.faults.test_fault_inputs import write_bad_weights
from tests.paths import REPO


@pytest.mark.parametrize(
    ("source", "target"),
    [((64, 64), (1000, 750)), ((7, 5), (33, 29)), ((300, 400), (32, 32)), ((9, 9), (9, 9))],
)
def test_banded_and_sampled_resizes_are_f_interpolates(source, target) -> None:
    image = torch.randn(1, 2, *source, generator=torch.Generator().manual_seed(0)) * 50
    whole = F.interpolate(image, size=target, mode="bilinear", align_corners=False)
    banded = torch.cat(
        [tiles.resize_rows(image, target, a, min(target[0], a + 37)) for a in range(0, target[0], 37)], -2
    )
    sampled = tiles.sample_bilinear(lambda rows, columns: image[..., rows, :][..., columns], source, target)
    assert banded.shape == sampled.shape == whole.shape
    # Same taps and weights; only the order of float operations may differ (a wrong tap would be off by units).
    tolerance = 1e-5 * float(image.abs().max())
    assert (banded - whole).abs().max() <= tolerance and (sampled - whole).abs().max() <= tolerance


@pytest.fixture(scope="module")
def colorizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    write_bad_weights(folder)  # good.ckpt among them
    return load_colorizer(folder / "good.ckpt")


def photo(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    noise = np.random.default_rng(0).normal(0, 10, (height, width, 3))
    smooth = np.stack(
        [128 + 100 * np.sin(6 * x), 128 + 90 * np.cos(5 * y), 128 + 80 * np.sin(4 * (x - y))], -1
    )
    return (smooth + noise).clip(0, 255).astype(np.uint8)


def whole_image_colorization(colorizer, rgb: np.ndarray, size: int) -> np.ndarray:
    """The path before bands: float lightness of the whole photo, ab upsampled to it at once."""
    lightness = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[:, :1]
    small = F.interpolate(lightness, size=(size, size), mode="bilinear", align_corners=False)
    ab = output_to_ab(colorizer.network(small), colorizer.bins, 0.38, False)
    ab = F.interpolate(ab, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    return to_uint8_image(lab_batch_to_rgb(lightness, ab)[0])


@torch.no_grad()
def test_a_photo_colorized_in_many_bands_is_the_whole_image_colorization(colorizer, monkeypatch) -> None:
    rgb = photo(203, 157)
    monkeypatch.setattr(tiles, "BAND_PIXELS", 157 * 9)  # 23 bands
    banded = colorize_rgb(colorizer, torch.from_numpy(rgb), 0.38, 64)
    expected = whole_image_colorization(colorizer, rgb, 64)
    difference = np.abs(banded.astype(int) - expected.astype(int))
    assert banded.shape == rgb.shape and difference.max() <= 1 and (difference > 0).mean() < 1e-3


@torch.no_grad()
def test_the_official_pipeline_in_bands_is_its_whole_image_resize(colorizer, monkeypatch) -> None:
    rgb = photo(90, 120)
    ab, lightness_of = release_ab(colorizer.network, colorizer.bins, torch.from_numpy(rgb), 1.0, 64)
    whole = F.interpolate(ab, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    expected = to_uint8_image(lab_batch_to_rgb(lightness_of(torch.from_numpy(rgb)), whole)[0])
    colorizer.weights_format = "official"
    monkeypatch.setattr(tiles, "BAND_PIXELS", 120 * 7)
    banded = colorize_rgb(colorizer, torch.from_numpy(rgb), 1.0, 64)
    colorizer.weights_format = "lit"
    assert np.abs(banded.astype(int) - expected.astype(int)).max() <= 1


MEASURE = """
import json, resource, sys, numpy as np, torch
from lit_colorization.inference.colorizer import colorize_rgb, load_colorizer
colorizer = load_colorizer(sys.argv[1])
rgb = torch.from_numpy(np.full((2000, 2000, 3), 90, dtype=np.uint8))
colorize_rgb(colorizer, torch.from_numpy(np.full((256, 256, 3), 90, dtype=np.uint8)), None, 256)  # warm up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
colorize_rgb(colorizer, rgb, None, 256)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024))
"""


@pytest.mark.slow  # a subprocess colorizing a 4 MP photo: its start-up alone takes tens of seconds on a busy machine
def test_a_4_megapixel_photo_costs_its_uint8_copies_not_float_work(colorizer, tmp_path) -> None:
    write_bad_weights(tmp_path)
    checkpoint = tmp_path / "good.ckpt"
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(checkpoint)], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    grown = json.loads(result.stdout.splitlines()[-1])
    # The photo's uint8 copies are 12 MB, the bands' float work some 50 MB; at once in float it was 640 MB.
    assert grown < 25 * 2000 * 2000, f"peak memory grew {grown / 1e6:.0f} MB"
