"""The one place where a uint8 RGB batch on the device becomes network input and training targets.

The LightningModule, the priors command, evaluation and the benchmark all call ``ColorTargetBuilder`` so they
cannot drift apart. Everything here runs on the batch's device; nothing returns to the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lit_colorization.color import SoftEncoder, nongray_mask, rebalance_weights, uint8_to_lab


@dataclass
class ColorTargets:
    lightness: Tensor  # B x 1 x H x W, L in [0, 100]: the network input
    ab: Tensor  # B x 2 x H x W at full resolution (for metrics)
    target_ab: Tensor  # B x 2 x h x w, every ``stride``-th pixel (not averaged)
    bin_indices: Tensor  # B x k x h x w int64: the k nearest bins of each target pixel
    bin_weights: Tensor  # B x k x h x w: their Gaussian soft-encoding weights, summing to 1
    pixel_weights: Tensor  # B x h x w: loss weight of each pixel's nearest bin (rebalancing, or 1 when off)
    colored: Tensor  # (B,) bool: images with any colour signal; gray images are masked out of the loss


def subsample(image: Tensor, stride: int) -> Tensor:
    """Every ``stride``-th pixel (not averaged), as the release took its targets (eccv16: 1/4, AlexNet: 1/8)."""
    return image[..., ::stride, ::stride]


class ColorTargetBuilder(nn.Module):
    """uint8 RGB (B x 3 x H x W) -> ``ColorTargets``, with bins, soft-encoder tables and class weights as buffers.

    ``prior`` is None only for the pass that computes the prior (``prior_sample``): every bin then weighs 1.
    """

    def __init__(
        self,
        bins: Tensor,
        prior: Tensor | None,
        stride: int,
        k: int = 5,
        sigma: float = 5.0,
        lam: float = 0.5,
        rebalance: bool = True,
        gray_threshold: float = 5.0,
    ) -> None:
        super().__init__()
        if prior is None:
            prior = torch.ones(bins.shape[0])
        if prior.shape != (bins.shape[0],):
            raise ValueError(
                f"prior has shape {tuple(prior.shape)}, expected ({bins.shape[0]},) to match the bins"
            )
        self.stride = stride
        self.gray_threshold = gray_threshold
        self.encoder = SoftEncoder(bins, k=k, sigma=sigma)
        self.register_buffer("bins", bins.float().clone(), persistent=False)
        # Rebalanced metrics always weight by the inverse prior, whether or not the loss does, so that runs
        # trained with and without rebalancing are scored alike.
        metric_weights = rebalance_weights(prior.float(), lam)
        loss_weights = metric_weights if rebalance else torch.ones_like(metric_weights)
        self.register_buffer("metric_weights", metric_weights, persistent=False)
        self.register_buffer("loss_weights", loss_weights, persistent=False)

    def lab(self, rgb: Tensor) -> Tensor:
        if rgb.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 RGB batch, got {rgb.dtype}")
        return uint8_to_lab(rgb)

    def target_ab(self, rgb: Tensor) -> tuple[Tensor, Tensor]:
        """Full-resolution Lab and the subsampled ab targets (what priors are computed from)."""
        lab = self.lab(rgb)
        return lab, subsample(lab[:, 1:], self.stride)

    def colored(self, ab: Tensor) -> Tensor:
        """(B,) bool: the images of full-resolution ``ab`` with any colour signal."""
        return nongray_mask(ab, self.gray_threshold)

    def metric_weights_for(self, ab: Tensor) -> Tensor:
        """Inverse-prior weight of each pixel's nearest bin (B x H x W), for rebalanced AuC."""
        return self.metric_weights[self.encoder.nearest(ab)]

    def prior_sample(self, rgb: Tensor) -> tuple[Tensor, Tensor]:
        """What the prior counts: the nearest bin of each target pixel (B x h x w int64), and the (B,) mask of
        coloured images (gray ones are left out of the loss, so out of the prior too)."""
        lab, target_ab = self.target_ab(rgb)
        return self.encoder.nearest(target_ab), self.colored(lab[:, 1:])

    def forward(self, rgb: Tensor) -> ColorTargets:
        lab, target_ab = self.target_ab(rgb)
        indices, weights = self.encoder.encode_sparse(target_ab)
        nearest = indices.gather(1, weights.argmax(dim=1, keepdim=True)).squeeze(1)
        return ColorTargets(
            lightness=lab[:, :1],
            ab=lab[:, 1:],
            target_ab=target_ab,
            bin_indices=indices,
            bin_weights=weights,
            pixel_weights=self.loss_weights[nearest],
            colored=self.colored(lab[:, 1:]),
        )
