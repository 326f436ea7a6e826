"""Full-resolution work of ``colorize`` in bounded memory: bilinear resizing by rows, as ``F.interpolate`` does it.

A photo's full-resolution steps (its lightness, the ab upsampled to its size, Lab to RGB) take some 160 bytes a
pixel when done at once in float: 3.8 GB for a 4000x4000 photo. Done a band of rows at a time they take the
band's; the photo itself stays uint8. ``resize_rows`` gives the rows ``[start, stop)`` of the bilinear resize
(``align_corners=False``, no antialiasing) that ``F.interpolate(..., size=..., mode="bilinear")`` gives whole, by
the same taps and weights (PyTorch's ``area_pixel_compute_source_index``; the tests compare them), and
``sample_bilinear`` its values at the taps of a small output from a large input computed only where sampled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

BAND_PIXELS = 1 << 19  # pixels of one band of rows: a few tens of MB of float work


def taps(in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(first source index, second source index, weight of the second) of each output index of a bilinear
    resize from ``in_size`` to ``out_size`` (align_corners=False), in float32 as PyTorch computes them on CPU."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    positions = torch.arange(out_size, dtype=torch.float32)
    source = (scale * (positions + 0.5) - 0.5).clamp(min=0)
    first = source.floor().long().clamp(max=in_size - 1)
    weight = (source - first.float()).clamp(0, 1)
    second = torch.where(first < in_size - 1, first + 1, first)
    return first, second, weight


def resize_rows(image: Tensor, size: tuple[int, int], start: int, stop: int) -> Tensor:
    """Rows ``[start, stop)`` of ``image`` (B x C x h x w) resized bilinearly to ``size`` (H, W)."""
    height, width = size
    top, bottom, down = (part[start:stop] for part in taps(image.shape[-2], height))
    left, right, across = taps(image.shape[-1], width)
    down = down.to(image.dtype).view(-1, 1)
    across = across.to(image.dtype)

    def along_row(rows: Tensor) -> Tensor:
        picked = image[..., rows, :]
        return picked[..., left] * (1 - across) + picked[..., right] * across

    return along_row(top) * (1 - down) + along_row(bottom) * down


def sample_bilinear(
    values_at: Callable[[Tensor, Tensor], Tensor], in_size: tuple[int, int], size: tuple[int, int]
) -> Tensor:
    """The bilinear resize of a large image to the small ``size``, computing the image only at the pixels the
    resize reads: ``values_at(rows, columns)`` gives B x C x len(rows) x len(columns) of it."""
    top, bottom, down = taps(in_size[0], size[0])
    left, right, across = taps(in_size[1], size[1])
    rows, row_at = torch.unique(torch.cat([top, bottom]), return_inverse=True)
    columns, column_at = torch.unique(torch.cat([left, right]), return_inverse=True)
    values = values_at(rows, columns)
    top_at, bottom_at = row_at[: size[0]], row_at[size[0] :]
    left_at, right_at = column_at[: size[1]], column_at[size[1] :]
    down = down.to(values.dtype).view(-1, 1)
    across = across.to(values.dtype)

    def along_row(at: Tensor) -> Tensor:
        picked = values[..., at, :]
        return picked[..., left_at] * (1 - across) + picked[..., right_at] * across

    return along_row(top_at) * (1 - down) + along_row(bottom_at) * down


def bands(height: int, width: int, pixels: int | None = None) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive bands of rows of about ``pixels`` (None: ``BAND_PIXELS``) pixels each."""
    rows = max(1, (BAND_PIXELS if pixels is None else pixels) // max(1, width))
    for start in range(0, height, rows):
        yield start, min(height, start + rows)
