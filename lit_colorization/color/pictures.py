"""Pictures of colorizations: Lab batches to RGB, and (gray | prediction(s) | ground truth) grids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from lit_colorization.color import lab_to_rgb


def lab_batch_to_rgb(lightness: Tensor, ab: Tensor) -> Tensor:
    """B x 1 x H x W lightness and B x 2 x H x W ab -> RGB in [0, 1] (float32)."""
    return lab_to_rgb(torch.cat([lightness.float(), ab.float()], dim=1))


def to_uint8_image(rgb: Tensor) -> np.ndarray:
    """3 x H x W RGB in [0, 1] -> H x W x 3 uint8."""
    return (rgb.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def colorization_grid(
    lightness: Tensor, predicted_ab: Tensor | Sequence[Tensor], true_ab: Tensor, gap: int = 2
) -> np.ndarray:
    """One row per image: the gray input, the prediction(s) and the ground truth, as an H x W x 3 uint8 array.

    ``predicted_ab`` is one B x 2 x H x W prediction, or several (one column each, in order).
    """
    predictions = [predicted_ab] if isinstance(predicted_ab, Tensor) else list(predicted_ab)
    columns = [
        lab_batch_to_rgb(lightness, torch.zeros_like(true_ab)),
        *(lab_batch_to_rgb(lightness, ab) for ab in predictions),
        lab_batch_to_rgb(lightness, true_ab),
    ]
    batch, _, height, width = lightness.shape
    grid = torch.ones(3, batch * (height + gap) - gap, len(columns) * (width + gap) - gap)
    for row in range(batch):
        for column, images in enumerate(columns):
            top, left = row * (height + gap), column * (width + gap)
            grid[:, top : top + height, left : left + width] = images[row].cpu()
    return to_uint8_image(grid)
