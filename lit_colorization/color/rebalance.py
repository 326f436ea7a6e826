"""Class rebalancing: the empirical ab prior of a training set and the per-bin loss weights derived from it.

The prior is counted in one streamed pass (``bin_histogram`` per batch, summed), then smoothed once
(``smooth_prior``); ``empirical_prior`` does both for an iterable of batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from lit_colorization.color.bins import check_bins
from lit_colorization.color.encode import cached_soft_encoder, squared_distances


def bin_histogram(ab: Tensor, bins: Tensor) -> Tensor:
    """(Q,) int64 count of the pixels of ``ab`` (B x 2 x H x W) whose nearest bin is each bin, on ab's device."""
    check_bins(bins)
    nearest = cached_soft_encoder(bins.to(ab.device), k=1).nearest(ab)
    return torch.bincount(nearest.flatten(), minlength=bins.shape[0])


def _check_distribution(values: Tensor, num_bins: int, name: str) -> None:
    if values.shape != (num_bins,):
        raise ValueError(f"{name} must have shape ({num_bins},) to match the bins, got {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contains non-finite values")
    if (values < 0).any():
        raise ValueError(f"{name} contains negative values")
    if values.sum() <= 0:
        raise ValueError(f"{name} is all zero: no pixels were counted")


def smooth_prior(counts: Tensor, bins: Tensor, sigma: float = 5.0) -> Tensor:
    """(Q,) counts -> (Q,) float64 distribution, smoothed by a Gaussian of ``sigma`` ab units over the bin centres.

    p_s[q] is proportional to sum_r p[r] exp(-|c_q - c_r|^2 / (2 sigma^2)), then normalised to sum 1.
    """
    check_bins(bins)
    _check_distribution(counts, bins.shape[0], "counts")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    # float64: a prior spans many orders of magnitude and its inverse becomes a loss weight.
    probability = counts.to(torch.float64) / counts.to(torch.float64).sum()
    centres = bins.to(device=counts.device, dtype=torch.float64)
    squared = squared_distances(centres[:, :1], centres[:, 1:], centres[:, 0], centres[:, 1])
    kernel = torch.exp(squared / (-2.0 * sigma * sigma))
    smoothed = kernel @ probability
    return smoothed / smoothed.sum()


def empirical_prior(ab_batches: Iterable[Tensor], bins: Tensor, sigma: float = 5.0) -> Tensor:
    """(Q,) float64 smoothed distribution of nearest bins over every pixel of every B x 2 x H x W batch."""
    counts = None
    for ab in ab_batches:
        batch_counts = bin_histogram(ab, bins)
        counts = batch_counts if counts is None else counts + batch_counts.to(counts.device)
    if counts is None:
        raise ValueError("ab_batches is empty: no pixels to compute a prior from")
    return smooth_prior(counts, bins, sigma)


def rebalance_weights(prior: Tensor, lam: float = 0.5) -> Tensor:
    """(Q,) prior -> (Q,) class weights w = 1 / ((1 - lam) p + lam u), scaled so that sum(p * w) = 1.

    p is the prior normalised to sum 1; u is uniform over the bins with p > 0; bins with p = 0 never occur
    as a nearest bin and get weight 0. lam = 0 weights by the inverse prior, lam = 1 weights every bin 1.
    """
    if prior.ndim != 1:
        raise ValueError(f"prior must be a (Q,) vector, got shape {tuple(prior.shape)}")
    _check_distribution(prior, prior.shape[0], "prior")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    dtype = prior.dtype if prior.is_floating_point() else torch.float64
    probability = prior.to(dtype) / prior.to(dtype).sum()
    support = probability > 0
    uniform = support.to(dtype) / support.sum()
    mixed = (1.0 - lam) * probability + lam * uniform
    weights = torch.where(support, 1.0 / torch.where(support, mixed, 1.0), 0.0)
    return weights / (probability * weights).sum()
