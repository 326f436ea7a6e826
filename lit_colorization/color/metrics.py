"""Colorization metrics (docs/reference.md section 8): AuC of the ab error and Hasler-Suesstrunk colourfulness.

PSNR and SSIM come from torchmetrics.
"""

from __future__ import annotations

import torch
from torch import Tensor

AUC_MAX_THRESHOLD = 150


def _check_ab_pair(pred_ab: Tensor, true_ab: Tensor) -> None:
    if true_ab.ndim != 4 or true_ab.shape[1] != 2:
        raise ValueError(f"true_ab must be B x 2 x H x W, got shape {tuple(true_ab.shape)}")
    if pred_ab.shape != true_ab.shape:
        raise ValueError(
            f"pred_ab has shape {tuple(pred_ab.shape)}, expected {tuple(true_ab.shape)} like true_ab"
        )
    if true_ab.numel() == 0:
        raise ValueError(f"pred_ab and true_ab hold no pixels (shape {tuple(true_ab.shape)})")


def _pixel_weights(weights: Tensor | None, true_ab: Tensor) -> Tensor:
    batch, _, height, width = true_ab.shape
    if weights is None:
        return torch.ones(batch * height * width, dtype=torch.float64, device=true_ab.device)
    if weights.shape != (batch, height, width):
        raise ValueError(f"weights must be B x H x W = {(batch, height, width)}, got {tuple(weights.shape)}")
    if (weights < 0).any() or not weights.sum() > 0:
        raise ValueError("weights must be non-negative with a positive sum")
    return weights.to(torch.float64).flatten()


def auc_curve(
    pred_ab: Tensor, true_ab: Tensor, max_threshold: int = AUC_MAX_THRESHOLD, weights: Tensor | None = None
) -> Tensor:
    """(max_threshold + 1,) curve: the (weighted) fraction of pixels whose ab L2 error is <= t, for t = 0, 1, ...

    ``weights`` (B x H x W, non-negative) weights each pixel, e.g. by the rebalancing weight of its true bin.
    """
    _check_ab_pair(pred_ab, true_ab)
    if max_threshold < 0 or int(max_threshold) != max_threshold:
        raise ValueError(f"max_threshold must be a non-negative integer, got {max_threshold}")
    pixel_weights = _pixel_weights(weights, true_ab)
    dtype = torch.float64 if true_ab.dtype == torch.float64 else torch.float32
    delta = (pred_ab.to(dtype) - true_ab.to(dtype)).square()
    error = (delta[:, 0] + delta[:, 1]).sqrt().flatten()
    # Sorted errors and cumulative weights answer every threshold at once with O(N) memory and no atomics.
    sorted_error, order = error.sort()
    cumulative = torch.cumsum(pixel_weights[order], dim=0)
    thresholds = torch.arange(int(max_threshold) + 1, dtype=dtype, device=error.device)
    within = torch.searchsorted(sorted_error, thresholds, right=True)
    mass = torch.where(within > 0, cumulative[(within - 1).clamp(min=0)], 0.0)
    return (mass / cumulative[-1]).to(dtype)


def auc(
    pred_ab: Tensor, true_ab: Tensor, max_threshold: int = AUC_MAX_THRESHOLD, weights: Tensor | None = None
) -> Tensor:
    """Scalar in [0, 1]: area under ``auc_curve``, i.e. its mean over the integer thresholds 0..max_threshold.

    A constant error of e (integer, 0 <= e <= max_threshold) is within t for the max_threshold - e + 1
    thresholds t >= e, so it scores (max_threshold - e + 1) / (max_threshold + 1); a perfect prediction scores 1.
    """
    return auc_curve(pred_ab, true_ab, max_threshold, weights).mean()


def colorfulness(rgb: Tensor) -> Tensor:
    """(B,) Hasler-Suesstrunk colourfulness, on the 0..255 scale of their paper.

    ``rgb`` is B x 3 x H x W: float in [0, 1] (scaled by 255 here) or uint8 in 0..255.
    M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), rg = R - G, yb = (R + G) / 2 - B,
    with population statistics over each image's pixels.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must be B x 3 x H x W, got shape {tuple(rgb.shape)}")
    dtype = torch.float64 if rgb.dtype == torch.float64 else torch.float32
    scale = 1.0 if rgb.dtype == torch.uint8 else 255.0
    red, green, blue = (rgb.to(dtype) * scale).flatten(start_dim=2).unbind(dim=1)
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = torch.sqrt(rg.var(dim=1, correction=0) + yb.var(dim=1, correction=0))
    centre = torch.sqrt(rg.mean(dim=1).square() + yb.mean(dim=1).square())
    return spread + 0.3 * centre
