"""From the network's per-bin logits back to ab, and the test for images that carry no colour signal."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_colorization.color.bins import check_bins

ANNEALED_MEAN_TEMPERATURE = 0.38
AB_SCALE = 110.0  # ab regression outputs are in units of 110, the range of the ab plane


def annealed_mean(logits: Tensor, bins: Tensor, T: float = ANNEALED_MEAN_TEMPERATURE) -> Tensor:
    """B x Q x H x W logits -> B x 2 x H x W ab: the bin centres weighted by softmax(logits / T).

    This is the paper's f_T(z) = exp(log z / T) / sum exp(log z / T) with z = softmax(logits): log z differs
    from the logits by a per-pixel constant, which the softmax cancels. T = 1 gives the mean, T -> 0 the mode.
    Computed in float32 (float64 for float64 logits) with autocast off.
    """
    check_bins(bins)
    if logits.ndim != 4 or logits.shape[1] != bins.shape[0]:
        raise ValueError(
            f"logits must be B x {bins.shape[0]} x H x W to match the bins, got {tuple(logits.shape)}"
        )
    if not T > 0:
        raise ValueError(f"temperature T must be positive, got {T}")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    with torch.autocast(logits.device.type, enabled=False):
        probabilities = torch.softmax(logits.to(dtype) / T, dim=1)
        return torch.einsum("bqhw,qc->bchw", probabilities, bins.to(probabilities))


def nongray_mask(ab: Tensor, thresh: float = 5.0) -> Tensor:
    """(B,) bool: True for images with some pixel whose |a| or |b| exceeds ``thresh`` (they carry colour)."""
    if ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab must be B x 2 x H x W, got shape {tuple(ab.shape)}")
    return (ab.abs() > thresh).flatten(start_dim=1).any(dim=1)


def regression_ab(output: Tensor) -> Tensor:
    """ab in Lab units from a 2-channel regression output (the paper's L2 baseline)."""
    return output.float() * AB_SCALE
