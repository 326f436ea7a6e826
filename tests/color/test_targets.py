"""ColorTargetBuilder (lit_colorization/color/targets.py) against independent references: scikit-image Lab,
brute-force nearest bins, the closed-form rebalancing weights and the Gaussian soft-encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_colorization.color import ab_bins
from lit_colorization.color.targets import ColorTargetBuilder
from tests.colour_references import (
    colour_images,
    gray_image,
    nearest_bin,
    pixels,
    rebalancing_weights,
    separated_colours,
    skimage_ab,
    skimage_lab,
    soft_targets,
)

BINS = ab_bins()
STRIDE = 4
SIDE = 16


def skewed_prior(seed: int) -> np.ndarray:
    """A prior spanning about four orders of magnitude, positive everywhere, so weights differ bin to bin."""
    return np.random.default_rng(seed).gamma(0.3, size=BINS.shape[0]) + 1e-5


def batch(k: int, seed: int) -> np.ndarray:
    """Two coloured images and a gray one, uint8 3 x SIDE x SIDE."""
    colours = separated_colours(BINS.double().numpy(), 64, ranks=k, seed=seed)
    return np.concatenate([colour_images(colours, 2, SIDE, seed), gray_image(SIDE, seed)])


@pytest.mark.parametrize(("lam", "rebalance"), [(0.5, True), (0.2, True), (0.5, False)])
def test_pixel_weights_are_the_closed_form_weight_of_each_target_pixels_nearest_bin(lam, rebalance):
    prior = skewed_prior(0)
    rgb = batch(k=5, seed=1)
    builder = ColorTargetBuilder(BINS, torch.from_numpy(prior), stride=STRIDE, lam=lam, rebalance=rebalance)
    targets = builder(torch.from_numpy(rgb))

    target_ab = skimage_ab(rgb)[:, :, ::STRIDE, ::STRIDE]
    nearest = nearest_bin(pixels(target_ab), BINS.double().numpy()).reshape(3, SIDE // STRIDE, SIDE // STRIDE)
    weights = rebalancing_weights(prior, lam)
    assert weights.max() / weights.min() > 10  # the prior is far from uniform: unit weights cannot pass
    expected = weights[nearest] if rebalance else np.ones(nearest.shape)
    np.testing.assert_allclose(targets.pixel_weights.double().numpy(), expected, rtol=1e-5)
    # The metrics weight by the inverse prior whether or not the loss does.
    np.testing.assert_allclose(
        builder.metric_weights_for(targets.ab).double().numpy(),
        weights[nearest_bin(pixels(skimage_ab(rgb)), BINS.double().numpy())].reshape(3, SIDE, SIDE),
        rtol=1e-5,
    )
    assert targets.colored.tolist() == [True, True, False]


@pytest.mark.parametrize(("k", "sigma"), [(5, 5.0), (3, 8.0), (1, 5.0)])
def test_soft_targets_are_the_gaussian_of_the_k_nearest_bins_of_every_stride_th_pixel(k, sigma):
    rgb = batch(k=k, seed=2)[:2]  # the coloured images: every one of their pixels is clear of ties
    builder = ColorTargetBuilder(BINS, torch.full((313,), 1 / 313), stride=STRIDE, k=k, sigma=sigma)
    targets = builder(torch.from_numpy(rgb))

    ab = skimage_ab(rgb)
    np.testing.assert_allclose(targets.lightness.double().numpy(), skimage_lab(rgb)[:, :1], atol=1e-3)
    np.testing.assert_allclose(targets.ab.double().numpy(), ab, atol=1e-3)
    target_ab = ab[:, :, ::STRIDE, ::STRIDE]
    np.testing.assert_allclose(targets.target_ab.double().numpy(), target_ab, atol=1e-3)
    expected = soft_targets(pixels(target_ab), BINS.double().numpy(), k, sigma)
    assert targets.bin_indices.shape == (2, k, SIDE // STRIDE, SIDE // STRIDE)
    dense = torch.zeros(2, 313, SIDE // STRIDE, SIDE // STRIDE, dtype=torch.float64)
    dense.scatter_(1, targets.bin_indices, targets.bin_weights.double())
    np.testing.assert_allclose(pixels(dense.numpy()), expected, atol=1e-4)
