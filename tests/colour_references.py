"""Independent references for the training targets, the loss and AuC, in float64 numpy.

Lab comes from scikit-image (not kornia, which the code uses), nearest bins from a brute-force distance matrix
(not the code's cell table), the rebalancing weights and AuC from their closed forms (docs/reference.md
sections 3 and 8). Test images are drawn from colours that no float rounding can move across a decision: every
colour's distances to its nearest bins are well apart, and its distance from ab = 0 is far from an integer.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2lab

AUC_THRESHOLDS = np.arange(151)  # t = 0, 1, ..., 150 ab units
SEPARATION = 0.05  # ab units between consecutive bin distances of a test colour (float32 Lab is off by ~1e-4)
INTEGER_CLEARANCE = 0.01  # ab units between a test colour's |ab| and the nearest integer threshold


def skimage_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 B x 3 x H x W -> float64 B x 3 x H x W Lab, by scikit-image."""
    return rgb2lab(rgb.transpose(0, 2, 3, 1).astype(np.float64) / 255.0).transpose(0, 3, 1, 2)


def skimage_ab(rgb: np.ndarray) -> np.ndarray:
    """uint8 B x 3 x H x W -> float64 B x 2 x H x W ab, by scikit-image."""
    return skimage_lab(rgb)[:, 1:]


def sorted_bin_distances(ab: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) ab -> distances to every bin, ascending per row, and the bins in that order (both (N, Q))."""
    distances = np.sqrt(((ab[:, None, :] - bins[None, :, :]) ** 2).sum(axis=2))
    order = np.argsort(distances, axis=1, kind="stable")
    return np.take_along_axis(distances, order, axis=1), order


def pixels(image: np.ndarray) -> np.ndarray:
    """B x C x H x W -> (B*H*W, C), rows in B, H, W order."""
    return image.transpose(0, 2, 3, 1).reshape(-1, image.shape[1])


def separated_colours(bins: np.ndarray, count: int, ranks: int, seed: int) -> np.ndarray:
    """``count`` uint8 RGB colours (count, 3) whose first ``ranks`` + 1 bin distances are SEPARATION apart."""
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    while len(chosen) < count:
        candidates = rng.integers(0, 256, (4 * count, 3), dtype=np.uint8)
        ab = pixels(skimage_ab(candidates.T.reshape(1, 3, -1, 1)))
        distances, _ = sorted_bin_distances(ab, bins)
        gaps = np.diff(distances[:, : ranks + 1], axis=1).min(axis=1)
        norm = np.hypot(ab[:, 0], ab[:, 1])
        clear = np.abs(norm - np.round(norm)) > INTEGER_CLEARANCE
        coloured = np.abs(ab).max(axis=1) > 10  # far above the gray threshold of 5
        chosen.extend(candidates[(gaps > SEPARATION) & clear & coloured])
    return np.stack(chosen[:count])


def colour_images(colours: np.ndarray, count: int, side: int, seed: int) -> np.ndarray:
    """uint8 count x 3 x side x side images, every pixel one of ``colours`` at random."""
    picks = np.random.default_rng(seed).integers(0, len(colours), (count, side, side))
    return colours[picks].transpose(0, 3, 1, 2).copy()


def gray_image(side: int, seed: int) -> np.ndarray:
    """uint8 1 x 3 x side x side image with R = G = B: no colour signal."""
    levels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    return np.repeat(levels[None, None], 3, axis=1)


def rebalancing_weights(prior: np.ndarray, lam: float) -> np.ndarray:
    """w = 1 / ((1 - lam) p + lam / Q), scaled so that sum(p w) = 1, for a prior p > 0 everywhere."""
    p = prior / prior.sum()
    w = 1.0 / ((1.0 - lam) * p + lam / len(p))
    return w / (p * w).sum()


def soft_targets(ab_pixels: np.ndarray, bins: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """(N, 2) ab -> (N, Q) soft targets: the k nearest bins weighted by exp(-d^2 / 2 sigma^2), summing to 1."""
    distances, order = sorted_bin_distances(ab_pixels, bins)
    gauss = np.exp(-(distances[:, :k] ** 2) / (2 * sigma**2))
    targets = np.zeros((len(ab_pixels), len(bins)))
    np.put_along_axis(targets, order[:, :k], gauss / gauss.sum(axis=1, keepdims=True), axis=1)
    return targets


def nearest_bin(ab_pixels: np.ndarray, bins: np.ndarray) -> np.ndarray:
    return sorted_bin_distances(ab_pixels, bins)[1][:, 0]


def weighted_auc(error: np.ndarray, weights: np.ndarray) -> float:
    """Area under the curve of the weighted fraction of pixels with error <= t, t = 0..150, normalised to [0, 1]."""
    within = error[:, None] <= AUC_THRESHOLDS[None, :]
    return float(((weights[:, None] * within).sum(axis=0) / weights.sum()).mean())
