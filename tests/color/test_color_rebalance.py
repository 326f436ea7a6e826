"""Priors (histogram + Gaussian smoothing over bin centres) and rebalancing weights against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from lit_colorization.color import ab_bins, bin_histogram, empirical_prior, rebalance_weights, smooth_prior

BINS = ab_bins()


def bin_index(a: float, b: float) -> int:
    return BINS.tolist().index([a, b])


def random_ab(seed: int, shape=(3, 2, 16, 20)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 200 - 100


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_uniform_prior_gives_unit_weights(lam):
    weights = rebalance_weights(torch.full((313,), 1 / 313, dtype=torch.float64), lam)
    assert torch.allclose(weights, torch.ones(313, dtype=torch.float64), atol=1e-12)


def test_lam_one_gives_unit_weights_on_the_support_and_zero_off_it():
    prior = torch.rand(313, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    prior[[0, 17, 312]] = 0
    weights = rebalance_weights(prior, lam=1.0)
    support = prior > 0
    assert torch.allclose(weights[support], torch.ones(310, dtype=torch.float64), atol=1e-12)
    assert torch.equal(weights[~support], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 0.9])
def test_expected_weight_under_the_prior_is_one(lam):
    prior = torch.rand(313, generator=torch.Generator().manual_seed(1), dtype=torch.float64) ** 4
    prior[5] = 0
    weights = rebalance_weights(prior, lam)
    assert (prior / prior.sum() * weights).sum().item() == pytest.approx(1.0, abs=1e-12)
    assert weights[5].item() == 0.0


def test_two_bin_closed_form():
    # p = (0.8, 0.2), lam = 0.5: mixed = (0.65, 0.35); sum(p / mixed) = 0.8 / 0.65 + 0.2 / 0.35.
    weights = rebalance_weights(torch.tensor([0.8, 0.2], dtype=torch.float64), lam=0.5)
    norm = 0.8 / 0.65 + 0.2 / 0.35
    assert weights.tolist() == pytest.approx([1 / 0.65 / norm, 1 / 0.35 / norm], abs=1e-12)
    # lam = 0 is the plain inverse prior: w = 1 / (Q p).
    assert rebalance_weights(torch.tensor([0.8, 0.2]), lam=0.0).tolist() == pytest.approx([0.625, 2.5])


def test_unnormalised_counts_give_the_same_weights():
    prior = torch.tensor([3.0, 1.0, 0.0, 4.0])
    assert torch.allclose(rebalance_weights(prior), rebalance_weights(prior / 8), atol=1e-7)


@pytest.mark.parametrize(
    ("prior", "lam", "message"),
    [
        (torch.ones(4), 1.5, r"lam must be in \[0, 1\]"),
        (torch.ones(4), -0.1, r"lam must be in \[0, 1\]"),
        (torch.tensor([1.0, -1.0, 2.0]), 0.5, "negative"),
        (torch.zeros(4), 0.5, "all zero"),
        (torch.tensor([1.0, float("nan")]), 0.5, "non-finite"),
        (torch.ones(2, 2), 0.5, r"\(Q,\) vector"),
    ],
)
def test_bad_priors_raise_clear_errors(prior, lam, message):
    with pytest.raises(ValueError, match=message):
        rebalance_weights(prior, lam)


def test_smoothing_a_one_hot_histogram_gives_the_gaussian_profile():
    counts = torch.zeros(313)
    counts[bin_index(20, -30)] = 7
    sigma = 5.0
    smoothed = smooth_prior(counts, BINS, sigma)
    squared = ((BINS.double() - torch.tensor([20.0, -30.0], dtype=torch.float64)) ** 2).sum(dim=1)
    profile = torch.exp(-squared / (2 * sigma**2))
    assert smoothed.dtype == torch.float64
    assert torch.allclose(smoothed, profile / profile.sum(), rtol=1e-12, atol=0)
    # Four neighbours at distance 10 each hold exp(-2) of the centre's mass.
    assert (smoothed[bin_index(30, -30)] / smoothed[bin_index(20, -30)]).item() == pytest.approx(np.exp(-2))


def test_smoothing_sums_to_one_and_ignores_the_count_scale():
    counts = torch.randint(0, 50, (313,), generator=torch.Generator().manual_seed(6))
    smoothed = smooth_prior(counts, BINS)
    assert smoothed.sum().item() == pytest.approx(1.0, abs=1e-12) and (smoothed > 0).all()
    assert torch.allclose(smooth_prior(7 * counts.double(), BINS.double()), smoothed, rtol=1e-12, atol=0)


def test_bin_histogram_counts_nearest_bins():
    ab = torch.tensor([[0.0, 0.0], [1.0, -2.0], [58.0, 61.0], [58.0, 61.0], [-91.0, 52.0]]).T.reshape(
        1, 2, 1, 5
    )
    counts = bin_histogram(ab, BINS)
    assert counts.dtype == torch.int64 and counts.sum().item() == 5
    assert counts[bin_index(0, 0)] == 2 and counts[bin_index(60, 60)] == 2 and counts[bin_index(-90, 50)] == 1


def test_bin_histogram_matches_scikit_learn():
    ab = random_ab(2)
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy()
    nearest = NearestNeighbors(n_neighbors=1).fit(BINS.double().numpy()).kneighbors(points)[1][:, 0]
    assert np.array_equal(bin_histogram(ab, BINS).numpy(), np.bincount(nearest, minlength=313))


def test_empirical_prior_is_the_smoothed_histogram_of_all_batches():
    batches = [random_ab(3), random_ab(4, shape=(1, 2, 7, 9)), random_ab(5)]
    prior = empirical_prior(batches, BINS, sigma=5.0)
    counts = sum(bin_histogram(ab, BINS) for ab in batches)
    assert torch.equal(prior, smooth_prior(counts, BINS, 5.0))
    flat = torch.cat(
        [ab.permute(0, 2, 3, 1).reshape(1, -1, 1, 2).permute(0, 3, 1, 2) for ab in batches], dim=2
    )
    assert torch.allclose(empirical_prior([flat], BINS), prior, atol=1e-15)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: smooth_prior(torch.ones(312), BINS), r"shape \(313,\)"),
        (lambda: smooth_prior(-torch.ones(313), BINS), "negative"),
        (lambda: smooth_prior(torch.zeros(313), BINS), "all zero"),
        (lambda: smooth_prior(torch.ones(313), BINS, sigma=0.0), "sigma must be positive"),
        (lambda: empirical_prior([], BINS), "empty"),
        (lambda: bin_histogram(torch.zeros(2, 3, 4, 4), BINS), "B x 2 x H x W"),
    ],
)
def test_bad_smoothing_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
