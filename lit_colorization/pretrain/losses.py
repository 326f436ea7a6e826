"""Colorization losses on the sparse soft-encoded targets of ``targets.py``; pure functions of tensors."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_colorization.color.decode import AB_SCALE


def _masked_mean(per_pixel: Tensor, pixel_weights: Tensor, colored: Tensor) -> Tensor:
    """Mean over the pixels of coloured images of ``per_pixel * pixel_weights``; 0 (with a gradient) when none."""
    mask = colored.to(per_pixel.dtype).view(-1, 1, 1)
    weighted = per_pixel * pixel_weights * mask
    count = mask.expand_as(per_pixel).sum()
    return weighted.sum() / count.clamp_min(1.0)


def soft_cross_entropy(
    logits: Tensor, bin_indices: Tensor, bin_weights: Tensor, pixel_weights: Tensor, colored: Tensor
) -> Tensor:
    """Cross-entropy against soft-encoded targets given as (k nearest bins, weights), never as a dense Q-vector.

    logits: B x Q x h x w; bin_indices, bin_weights: B x k x h x w; pixel_weights: B x h x w; colored: (B,) bool.
    """
    if logits.shape[-2:] != bin_indices.shape[-2:]:
        raise ValueError(
            f"network output {tuple(logits.shape[-2:])} and targets {tuple(bin_indices.shape[-2:])} differ in size: "
            "the crop size must be a multiple of the network's input_multiple"
        )
    log_probs = F.log_softmax(logits.float(), dim=1)
    per_pixel = -(log_probs.gather(1, bin_indices) * bin_weights).sum(dim=1)
    return _masked_mean(per_pixel, pixel_weights, colored)


def ab_regression_loss(
    predicted_ab: Tensor, target_ab: Tensor, pixel_weights: Tensor, colored: Tensor
) -> Tensor:
    """The paper's L2 baseline: squared error of ab (in units of ``AB_SCALE``) summed over a and b."""
    if predicted_ab.shape != target_ab.shape:
        raise ValueError(
            f"predicted ab {tuple(predicted_ab.shape)} and target ab {tuple(target_ab.shape)} differ"
        )
    per_pixel = ((predicted_ab.float() - target_ab / AB_SCALE) ** 2).sum(dim=1)
    return _masked_mean(per_pixel, pixel_weights, colored)
