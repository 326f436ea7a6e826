"""Annealed-mean decoding (T = 1 mean, T -> 0 mode, the paper's formula) and the gray-image mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_colorization.color import ab_bins, annealed_mean, nongray_mask

BINS = ab_bins()


def random_logits(seed: int, shape=(2, 313, 3, 4)) -> torch.Tensor:
    return 2 * torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_temperature_one_is_the_softmax_mean():
    logits = random_logits(0)
    probabilities = np.exp(logits.double().numpy())
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    expected = np.einsum("bqhw,qc->bchw", probabilities, BINS.double().numpy())
    assert np.abs(annealed_mean(logits, BINS, T=1.0).numpy() - expected).max() < 1e-4


def test_small_temperature_gives_the_most_likely_bin():
    logits = random_logits(1)
    best = logits.argmax(dim=1)
    # A margin of 0.1 over the runner-up makes every other bin weigh less than exp(-100) at T = 1e-3.
    logits.scatter_add_(1, best.unsqueeze(1), torch.full_like(best.unsqueeze(1), 0.1, dtype=logits.dtype))
    mode = BINS[best].permute(0, 3, 1, 2)
    assert torch.allclose(annealed_mean(logits, BINS, T=1e-3), mode, atol=1e-4)


def test_default_temperature_is_the_papers_formula():
    # f_T(z) = exp(log z / T) / sum_q exp(log z_q / T) with z = softmax(logits), T = 0.38.
    logits = random_logits(2).double().numpy()
    z = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    annealed = np.exp(np.log(z) / 0.38)
    annealed /= annealed.sum(axis=1, keepdims=True)
    expected = np.einsum("bqhw,qc->bchw", annealed, BINS.double().numpy())
    ours = annealed_mean(torch.from_numpy(logits).float(), BINS)
    assert ours.shape == (2, 2, 3, 4) and ours.dtype == torch.float32
    assert np.abs(ours.numpy() - expected).max() < 1e-3


def test_float64_and_autocast():
    logits = random_logits(3)
    assert annealed_mean(logits.double(), BINS).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = annealed_mean(logits, BINS)
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, annealed_mean(logits, BINS))


@pytest.mark.parametrize(
    ("logits", "T", "message"),
    [
        (torch.zeros(1, 312, 2, 2), 0.38, "B x 313 x H x W"),
        (torch.zeros(313, 2, 2), 0.38, "B x 313 x H x W"),
        (torch.zeros(1, 313, 2, 2), 0.0, "temperature T must be positive"),
    ],
)
def test_bad_decode_inputs_raise_clear_errors(logits, T, message):
    with pytest.raises(ValueError, match=message):
        annealed_mean(logits, BINS, T)


def test_nongray_mask_flags_images_with_any_colour_beyond_the_threshold():
    ab = torch.zeros(5, 2, 3, 3)
    ab[1, 0, 2, 2] = 5.0  # exactly at the threshold: still gray
    ab[2, 0, 1, 1] = 5.01
    ab[3, 1, 0, 0] = -6.0
    ab[4] = 4.9 * torch.sign(torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(0)))
    mask = nongray_mask(ab)
    assert mask.dtype == torch.bool and mask.tolist() == [False, False, True, True, False]
    assert nongray_mask(ab, thresh=4.0).tolist() == [False, True, True, True, True]


def test_nongray_mask_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="B x 2 x H x W"):
        nongray_mask(torch.zeros(1, 3, 2, 2))
