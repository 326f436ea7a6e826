"""sRGB <-> CIE Lab (D65, 2 degree observer), the conversion scikit-image's ``rgb2lab`` / ``lab2rgb`` define.

These functions pin down what the rest of the project relies on: batched B x 3 x H x W input, RGB clamped to
[0, 1] first, and the maths in float32 (float64 stays float64) with autocast off, because bf16/fp16 Lab is off by
whole ab units, which is coarser than the quantization.

sRGB -> Lab, which every training batch goes through, is kornia's conversion (``kornia.color.rgb_to_lab``, the
design card's colour module) without its per-call constants: kornia builds its XYZ matrix and white point as
device tensors from host lists at every call, and such a copy makes the host wait until the device has finished
its queued work (two waits a training step, measured on an H200), so the next batch could not be prepared while
the current step ran. Here kornia's sRGB linearisation (``rgb_to_linear_rgb``) is called as it is, and its XYZ
matrix divided by its D65 white point is made once per (device, dtype) and kept; the rest is kornia's formula.
The 3 x 3 product is three fused multiply-adds, not a matmul, so that TF32 matmuls (on for CUDA runs) never
round it. ``benchmarks/bench_color.py --lab`` times it against the hand-written conversion it replaced and
kornia's own. Lab -> sRGB (decoding, reports) is kornia's.
"""

from __future__ import annotations

import kornia.color
import torch
from torch import Tensor, nn


def _check_batch(image: Tensor, name: str) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must be B x 3 x H x W, got shape {tuple(image.shape)}")


def _working_dtype(image: Tensor) -> torch.dtype:
    return torch.float64 if image.dtype == torch.float64 else torch.float32


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1] (B x 3 x H x W, any float dtype) -> Lab (L in [0, 100]), float32 or float64."""
    _check_batch(rgb, "rgb")
    if not rgb.is_floating_point():
        # Integer RGB is 0..255; clamping it to [0, 1] would silently turn every photo white.
        raise TypeError(
            f"rgb must be a float tensor in [0, 1], got {rgb.dtype}; use uint8_to_lab for uint8 images"
        )
    with torch.autocast(rgb.device.type, enabled=False):
        return _srgb_to_lab(rgb.to(_working_dtype(rgb)).clamp(0.0, 1.0))


# kornia 0.9.0's sRGB -> XYZ matrix (kornia/color/xyz.py lines 54-62) and D65 white (kornia/color/lab.py line 84).
RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
D65_WHITE = (0.95047, 1.0, 1.08883)
_LAB_EPSILON = 0.008856  # (6/29)^3: below it CIE's f(t) is linear
_XYZ_OVER_WHITE: dict[tuple[torch.device, torch.dtype], Tensor] = {}


def xyz_over_white(device: torch.device, dtype: torch.dtype) -> Tensor:
    """(3, 3, 1, 1) sRGB -> XYZ / white on ``device``: copied there once per (device, dtype), then reused."""
    key = (device, dtype)
    matrix = _XYZ_OVER_WHITE.get(key)
    if matrix is None:
        rows = [[value / white for value in row] for row, white in zip(RGB_TO_XYZ, D65_WHITE, strict=True)]
        matrix = torch.tensor(rows, dtype=dtype, device=device)[:, :, None, None]
        _XYZ_OVER_WHITE[key] = matrix
    return matrix


def _srgb_to_lab(rgb: Tensor) -> Tensor:
    linear = kornia.color.rgb_to_linear_rgb(rgb)
    matrix = xyz_over_white(rgb.device, rgb.dtype)
    red, green, blue = linear[:, 0:1], linear[:, 1:2], linear[:, 2:3]
    # (B, 3, H, W) X / Xn, Y / Yn, Z / Zn: a column of the matrix per input channel, three fused multiply-adds.
    xyz = torch.addcmul(torch.addcmul(red * matrix[:, 0], green, matrix[:, 1]), blue, matrix[:, 2])
    f = torch.where(xyz > _LAB_EPSILON, xyz.clamp(min=_LAB_EPSILON).pow(1 / 3), 7.787 * xyz + 4 / 29)
    fx, fy, fz = f.unbind(dim=1)
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Lab (B x 3 x H x W) -> sRGB clamped to [0, 1], float32 or float64."""
    _check_batch(lab, "lab")
    if not lab.is_floating_point():
        raise TypeError(f"lab must be a float tensor, got {lab.dtype}")
    with torch.autocast(lab.device.type, enabled=False):
        return kornia.color.lab_to_rgb(lab.to(_working_dtype(lab)), clip=True)


def uint8_to_lab(rgb_uint8: Tensor) -> Tensor:
    """uint8 sRGB (B x 3 x H x W, 0..255), the form data loaders deliver, -> float32 Lab."""
    _check_batch(rgb_uint8, "rgb_uint8")
    if rgb_uint8.dtype != torch.uint8:
        raise TypeError(f"rgb_uint8 must be uint8 (0..255), got {rgb_uint8.dtype}")
    return rgb_to_lab(rgb_uint8.to(torch.float32) / 255.0)


class RgbToLab(nn.Module):
    """Module form of ``rgb_to_lab``."""

    def forward(self, rgb: Tensor) -> Tensor:
        return rgb_to_lab(rgb)


class LabToRgb(nn.Module):
    """Module form of ``lab_to_rgb``."""

    def forward(self, lab: Tensor) -> Tensor:
        return lab_to_rgb(lab)
