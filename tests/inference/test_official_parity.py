"""``colorize --weights-format official`` gives what the authors' own demo gives (docs/reference.md sections 3, 4.1).

The release is rebuilt here without project code (``tests/release_eccv16.py``): its module in the official key
layout, with random weights made photo-dependent and peaked, and its demo pipeline (PIL bicubic, scikit-image
Lab, torch bilinear). The official layout fixes the channel counts, so this is the full 32M-parameter network:
one forward pass at 256x256 takes a few seconds on a CPU, and each photo is colorized once per pipeline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lit_colorization.inference.colorizer import colorize_rgb, describe_decoding, load_colorizer
from tests.helpers import run_module
from tests.release_eccv16 import CALIBRATION_SIZE, demo_inputs, random_release_network, release_demo

PHOTOS = ("astronaut", "coffee", "chelsea")
# Standard deviation of the logits over the 313 bins: peaked enough that the decoding rule shows in the colours.
SHARPEN = 3.0
MAX_DIFF, MEAN_DIFF = 2 / 255, 0.5 / 255


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    photos = {name: getattr(data, name)() for name in PHOTOS}
    network = random_release_network(list(photos.values()), sharpen=SHARPEN)
    weights = tmp_path_factory.mktemp("release") / "colorization_release_v2.pth"
    torch.save(network.state_dict(), weights)
    expected = {name: release_demo(network, rgb) for name, rgb in photos.items()}
    return photos, network, weights, expected


def _differences(colorized_uint8: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    difference = np.abs(colorized_uint8.astype(np.float64) / 255 - expected)
    return float(difference.max()), float(difference.mean())


def test_the_random_release_network_is_peaked(release):
    photos, network, _, _ = release
    with torch.no_grad():
        probabilities = torch.softmax(
            network.logits(demo_inputs(photos["astronaut"], CALIBRATION_SIZE)[1]), dim=1
        )
    # Far from uniform (1/313): the plain softmax and an annealed one give visibly different colours.
    assert probabilities.amax(dim=1).mean() > 0.2


def test_official_colorize_reproduces_the_release_demo(release, tmp_path: Path):
    photos, _, weights, expected = release
    for name, rgb in photos.items():
        Image.fromarray(rgb).save(tmp_path / f"{name}.png")
    out = tmp_path / "out"
    result = run_module(
        "lit_colorization.cli.colorize",
        "--ckpt",
        str(weights),
        "--weights-format",
        "official",
        "--out",
        str(out),
        *(str(tmp_path / f"{name}.png") for name in PHOTOS),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the release's own output" in result.stdout
    for name in PHOTOS:
        colorized = np.asarray(Image.open(out / f"{name}.png").convert("RGB"))
        assert colorized.shape == photos[name].shape
        largest, mean = _differences(colorized, expected[name])
        print(f"{name}: max |diff| {largest * 255:.2f}/255, mean {mean * 255:.3f}/255")
        assert largest <= MAX_DIFF and mean <= MEAN_DIFF, name


def test_annealing_the_release_again_at_038_differs_notably(release):
    photos, _, weights, expected = release
    colorizer = load_colorizer(weights, "official")
    assert "not the release's output" in describe_decoding(colorizer, 0.38)
    rgb = photos["astronaut"]
    colorized = colorize_rgb(colorizer, torch.from_numpy(rgb), 0.38, 256)
    largest, mean = _differences(colorized, expected["astronaut"])
    print(f"astronaut at T=0.38: max |diff| {largest * 255:.2f}/255, mean {mean * 255:.3f}/255")
    assert largest > 30 / 255 and mean > 3 / 255
