"""The colour maths, training targets and metrics on CUDA, against the same independent references as on the CPU
(scikit-image Lab, brute-force bins, closed-form weights, a numpy AuC). Skipped where there is no GPU; the device
check (scripts/device_check.sh) runs them on a lent one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_colorization.color import ab_bins, annealed_mean, lab_to_rgb, rgb_to_lab, soft_encode_exact
from lit_colorization.color.metrics import auc, colorfulness
from lit_colorization.color.targets import ColorTargetBuilder
from tests.colour_references import (
    colour_images,
    nearest_bin,
    pixels,
    rebalancing_weights,
    separated_colours,
    skimage_ab,
    skimage_lab,
    soft_targets,
    weighted_auc,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

BINS = ab_bins()
STRIDE = 4
SIDE = 32


def coloured_batch(seed: int) -> np.ndarray:
    """Three uint8 images whose pixels are clear of ties between the 5th and 6th nearest bins."""
    colours = separated_colours(BINS.double().numpy(), 64, ranks=5, seed=seed)
    return colour_images(colours, 3, SIDE, seed)


def test_lab_round_trip_on_cuda_matches_scikit_image() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (4, 3, SIDE, SIDE), dtype=np.uint8)
    image = torch.from_numpy(rgb).cuda().float() / 255
    lab = rgb_to_lab(image)
    assert lab.is_cuda
    np.testing.assert_allclose(lab.double().cpu().numpy(), skimage_lab(rgb), atol=2e-3)
    np.testing.assert_allclose(lab_to_rgb(lab).double().cpu().numpy(), rgb / 255, atol=5e-4)


def test_targets_on_cuda_are_the_references_soft_encoding_and_rebalancing_weights() -> None:
    prior = np.random.default_rng(1).gamma(0.3, size=BINS.shape[0]) + 1e-5
    rgb = coloured_batch(seed=2)
    builder = ColorTargetBuilder(BINS, torch.from_numpy(prior), stride=STRIDE).cuda()
    targets = builder(torch.from_numpy(rgb).cuda())
    assert targets.bin_indices.is_cuda and targets.pixel_weights.is_cuda

    target_ab = skimage_ab(rgb)[:, :, ::STRIDE, ::STRIDE]
    side = SIDE // STRIDE
    dense = torch.zeros(3, BINS.shape[0], side, side, dtype=torch.float64, device="cuda")
    dense.scatter_(1, targets.bin_indices, targets.bin_weights.double())
    expected = soft_targets(pixels(target_ab), BINS.double().numpy(), k=5, sigma=5.0)
    np.testing.assert_allclose(pixels(dense.cpu().numpy()), expected, atol=1e-4)
    nearest = nearest_bin(pixels(target_ab), BINS.double().numpy()).reshape(3, side, side)
    np.testing.assert_allclose(
        targets.pixel_weights.double().cpu().numpy(), rebalancing_weights(prior, 0.5)[nearest], rtol=1e-5
    )
    assert targets.colored.tolist() == [True, True, True]


def test_fast_soft_encoding_on_cuda_equals_the_exact_one() -> None:
    ab = (torch.rand(2, 2, 48, 48, device="cuda") - 0.5) * 220
    bins = BINS.cuda()
    builder = ColorTargetBuilder(BINS, None, stride=1).cuda()
    indices, weights = builder.encoder.encode_sparse(ab)
    dense = torch.zeros(2, BINS.shape[0], 48, 48, device="cuda").scatter_(1, indices, weights)
    torch.testing.assert_close(dense, soft_encode_exact(ab, bins), atol=1e-5, rtol=0)


def test_auc_colourfulness_and_decoding_on_cuda_match_the_cpu_and_numpy() -> None:
    generator = torch.Generator().manual_seed(3)
    true_ab = (torch.rand(2, 2, SIDE, SIDE, generator=generator) - 0.5) * 200
    pred_ab = true_ab + torch.randn(2, 2, SIDE, SIDE, generator=generator) * 20
    weights = torch.rand(2, SIDE, SIDE, generator=generator)
    error = (pred_ab - true_ab).square().sum(dim=1).sqrt().flatten().double().numpy()
    reference = weighted_auc(error, weights.flatten().double().numpy())
    assert auc(pred_ab.cuda(), true_ab.cuda(), weights=weights.cuda()).item() == pytest.approx(
        reference, abs=1e-6
    )

    rgb = torch.rand(2, 3, SIDE, SIDE, generator=generator)
    torch.testing.assert_close(colorfulness(rgb.cuda()).cpu(), colorfulness(rgb), atol=1e-3, rtol=1e-5)
    logits = torch.randn(2, BINS.shape[0], 8, 8, generator=generator)
    torch.testing.assert_close(
        annealed_mean(logits.cuda(), BINS.cuda()).cpu(), annealed_mean(logits, BINS), atol=1e-3, rtol=1e-4
    )


def test_rgb_to_lab_on_cuda_makes_the_host_wait_for_nothing_after_its_first_call() -> None:
    # kornia's own rgb_to_lab copies its constants from the host at every call, a wait for the device's queue.
    rgb_uint8 = np.random.default_rng(1).integers(0, 256, (2, 3, SIDE, SIDE), dtype=np.uint8)
    rgb = torch.from_numpy(rgb_uint8).cuda().float() / 255.0
    first = rgb_to_lab(rgb)  # the constants reach the device once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        again = rgb_to_lab(rgb)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(first, again)
    assert np.abs(again.double().cpu().numpy() - skimage_lab(rgb_uint8)).max() < 0.01
