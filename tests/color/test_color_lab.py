"""Lab conversions against scikit-image's rgb2lab / lab2rgb, gradients, dtype and autocast handling."""

from __future__ import annotations

import warnings

import kornia.color
import numpy as np
import pytest
import torch
from skimage import color, data

from lit_colorization.color import LabToRgb, RgbToLab, lab_to_rgb, rgb_to_lab, uint8_to_lab
from lit_colorization.color.lab import xyz_over_white

PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}


def to_batch(image: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """H x W x 3 -> 1 x 3 x H x W."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).to(dtype)


def to_image(batch: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W -> H x W x 3 float64."""
    return batch[0].permute(1, 2, 0).double().numpy()


def random_rgb(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((40, 50, 3))


def skimage_lab2rgb(lab: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # Out-of-gamut Lab makes skimage warn that it clipped negative Z, which both sides do.
        warnings.simplefilter("ignore", UserWarning)
        return color.lab2rgb(lab)


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-3), (torch.float32, 0.01)])
def test_rgb_to_lab_matches_skimage_on_random_colours(dtype, tolerance):
    rgb = random_rgb()
    ours = to_image(rgb_to_lab(to_batch(rgb, dtype)))
    assert np.abs(ours - color.rgb2lab(rgb)).max() < tolerance


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_rgb_to_lab_matches_skimage_on_photos(name):
    photo = PHOTOS[name]()
    expected = color.rgb2lab(photo)
    in_float64 = to_image(rgb_to_lab(to_batch(photo / 255.0, torch.float64)))
    from_uint8 = to_image(uint8_to_lab(to_batch(photo, torch.uint8)))
    assert np.abs(in_float64 - expected).max() < 1e-3
    assert np.abs(from_uint8 - expected).max() < 0.01


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-3), (torch.float32, 0.01)])
def test_lab_to_rgb_matches_skimage_in_and_out_of_gamut(dtype, tolerance):
    rng = np.random.default_rng(1)
    in_gamut = color.rgb2lab(random_rgb(2))
    # Arbitrary Lab, much of it outside sRGB: exercises the negative-Z and final [0, 1] clipping.
    anywhere = np.stack([rng.uniform(0, 100, (40, 50)), *rng.uniform(-110, 110, (2, 40, 50))], axis=-1)
    for lab in (in_gamut, anywhere):
        ours = to_image(lab_to_rgb(to_batch(lab, dtype)))
        assert np.abs(ours - skimage_lab2rgb(lab)).max() < tolerance
        assert ours.min() >= 0.0 and ours.max() <= 1.0


def test_round_trip_on_a_photo_in_float64():
    rgb = to_batch(data.coffee()[::4, ::4] / 255.0, torch.float64)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-9)


def test_gradients_in_float64():
    # Values away from the piecewise kinks (sRGB 0.04045, XYZ 0.008856) and from the clamps.
    rgb = 0.2 + 0.6 * torch.rand(1, 3, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.autograd.gradcheck(rgb_to_lab, (rgb.requires_grad_(),))
    lab = rgb_to_lab(rgb.detach()).requires_grad_()
    assert torch.autograd.gradcheck(lab_to_rgb, (lab,))


def test_rgb_outside_unit_range_is_clamped():
    rgb = torch.tensor([-0.5, 0.3, 1.7, 2.0, 0.0, -1.0], dtype=torch.float64).reshape(1, 3, 1, 2)
    assert torch.equal(rgb_to_lab(rgb), rgb_to_lab(rgb.clamp(0, 1)))


def test_low_precision_input_and_autocast_compute_in_float32():
    rgb = torch.from_numpy(random_rgb(3)).permute(2, 0, 1).unsqueeze(0).float()
    reference = rgb_to_lab(rgb)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = rgb_to_lab(rgb)
        back = lab_to_rgb(reference)
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, reference)
    assert back.dtype == torch.float32 and torch.equal(back, lab_to_rgb(reference))
    half = rgb.to(torch.bfloat16)
    assert rgb_to_lab(half).dtype == torch.float32
    assert torch.equal(rgb_to_lab(half), rgb_to_lab(half.float()))


def test_uint8_to_lab_equals_scaled_float_conversion():
    rgb = torch.from_numpy(data.chelsea()[::8, ::8].copy()).permute(2, 0, 1).unsqueeze(0)
    lab = uint8_to_lab(rgb)
    assert lab.dtype == torch.float32
    assert torch.equal(lab, rgb_to_lab(rgb.float() / 255.0))


def test_modules_equal_functions():
    rgb = torch.rand(2, 3, 4, 5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(RgbToLab()(rgb), rgb_to_lab(rgb))
    lab = rgb_to_lab(rgb)
    assert torch.equal(LabToRgb()(lab), lab_to_rgb(lab))


@pytest.mark.parametrize(
    ("call", "tensor", "error", "message"),
    [
        (rgb_to_lab, torch.rand(3, 4, 4), ValueError, "B x 3 x H x W"),
        (rgb_to_lab, torch.rand(1, 4, 4, 4), ValueError, "B x 3 x H x W"),
        (rgb_to_lab, torch.zeros(1, 3, 2, 2, dtype=torch.uint8), TypeError, "uint8_to_lab"),
        (lab_to_rgb, torch.rand(1, 2, 4, 4), ValueError, "B x 3 x H x W"),
        (uint8_to_lab, torch.rand(1, 3, 2, 2), TypeError, "uint8"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, tensor, error, message):
    with pytest.raises(error, match=message):
        call(tensor)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rgb_to_lab_is_kornias_conversion_with_its_constants_kept_per_device_and_dtype(dtype):
    rgb = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(1), dtype=dtype)
    expected = kornia.color.rgb_to_lab(rgb)
    assert torch.allclose(rgb_to_lab(rgb), expected, atol=1e-4 if dtype == torch.float32 else 1e-10)
    # Made once per (device, dtype) and reused: no copy from the host at later calls.
    first = xyz_over_white(rgb.device, dtype)
    rgb_to_lab(rgb)
    assert xyz_over_white(rgb.device, dtype) is first and first.dtype == dtype
