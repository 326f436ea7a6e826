"""Soft-encoding: hand-computed cases, the fast SoftEncoder against the exact reference and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from sklearn.neighbors import NearestNeighbors

from lit_colorization.color import (
    SoftEncoder,
    ab_bins,
    cached_soft_encoder,
    soft_encode,
    soft_encode_exact,
    uint8_to_lab,
)

BINS = ab_bins()


def bin_index(a: float, b: float) -> int:
    return BINS.tolist().index([a, b])


def pixels(*ab: tuple[float, float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1 x 2 x 1 x N ab image holding the given (a, b) pixels."""
    return torch.tensor(ab, dtype=dtype).T.reshape(1, 2, 1, len(ab))


def random_ab(low: float, high: float, seed: int, shape=(2, 2, 48, 64)) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def photo_ab(stride: int = 4) -> torch.Tensor:
    photos = [data.astronaut(), data.coffee()[:384, :512], data.chelsea()[:288, :448]]
    ab = [
        uint8_to_lab(torch.from_numpy(photo[:288, :448].copy()).permute(2, 0, 1)[None])[:, 1:]
        for photo in photos
    ]
    return torch.cat(ab)[..., ::stride, ::stride]


def box(encoder: SoftEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's exact box as 1 x 2 x 1 x 1 low and high corners."""
    return tuple(torch.tensor(corner).view(1, 2, 1, 1) for corner in (encoder.box_low, encoder.box_high))


def test_pixel_on_an_isolated_bin_centre_is_one_hot():
    bins = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [-100.0, 0.0], [0.0, -100.0], [70.0, 70.0]])
    target = soft_encode_exact(pixels((100.0, 0.0)), bins)
    assert torch.equal(target[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0]))
    assert torch.equal(SoftEncoder(bins)(pixels((100.0, 0.0))), target)


def test_pixel_on_a_canonical_bin_centre_weights_its_four_neighbours():
    # k = 5: the centre at distance 0 and four neighbours at 10, each exp(-100 / 50) = exp(-2) relative to it.
    target = SoftEncoder(BINS)(pixels((0.0, 0.0)))[0, :, 0, 0]
    total = 1 + 4 * math.exp(-2)
    assert target[bin_index(0, 0)].item() == pytest.approx(1 / total, abs=1e-7)
    for a, b in [(-10, 0), (10, 0), (0, -10), (0, 10)]:
        assert target[bin_index(a, b)].item() == pytest.approx(math.exp(-2) / total, abs=1e-7)
    assert int((target > 0).sum()) == 5


def test_pixel_halfway_between_two_bins_splits_evenly_with_k_2():
    target = SoftEncoder(BINS, k=2)(pixels((5.0, 0.0)))[0, :, 0, 0]
    assert target[bin_index(0, 0)].item() == pytest.approx(0.5, abs=1e-7)
    assert target[bin_index(10, 0)].item() == pytest.approx(0.5, abs=1e-7)
    assert int((target > 0).sum()) == 2


def test_weights_follow_the_gaussian_of_the_distance():
    # (3, 0): distances 3 and 7 to its two nearest bins, weights in the ratio exp(-(49 - 9) / (2 * 5^2)).
    indices, weights = SoftEncoder(BINS, k=2).encode_sparse(pixels((3.0, 0.0)))
    assert indices[0, :, 0, 0].tolist() == [bin_index(0, 0), bin_index(10, 0)]
    expected = 1 / (1 + math.exp(-40 / 50))
    assert weights[0, :, 0, 0].tolist() == pytest.approx([expected, 1 - expected], abs=1e-7)


@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_equals_exact_on_random_ab(k, dtype):
    ab = random_ab(-110, 110, seed=k).to(dtype)
    fast = SoftEncoder(BINS, k=k)(ab)
    exact = soft_encode_exact(ab, BINS, k=k)
    assert fast.dtype == exact.dtype == dtype
    assert (fast - exact).abs().max().item() <= 1e-6


@pytest.mark.parametrize("k", [5, 10])
def test_fast_equals_exact_on_photo_ab(k):
    ab = photo_ab()
    assert (SoftEncoder(BINS, k=k)(ab) - soft_encode_exact(ab, BINS, k=k)).abs().max().item() <= 1e-6


def test_fast_equals_exact_on_exact_ties():
    # Points on the lattice's symmetry points are equidistant from several bins; both break ties by bin index.
    ties = pixels((0.0, 0.0), (5.0, 5.0), (5.0, 0.0), (0.0, 5.0), (-5.0, 15.0), (95.0, -5.0))
    for k in (1, 2, 5, 10):
        assert torch.equal(SoftEncoder(BINS, k=k)(ties), soft_encode_exact(ties, BINS, k=k))
    assert SoftEncoder(BINS).nearest(pixels((5.0, 0.0))).item() == bin_index(0, 0)


def test_fast_equals_exact_on_a_lattice_through_cell_edges_and_bin_midpoints():
    # Step 1.25 hits every table cell edge (multiples of 2.5) and every bin midpoint and lattice symmetry point.
    steps = torch.arange(-140.0, 150.01, 1.25)
    ab = torch.stack(torch.meshgrid(steps, steps, indexing="ij")).unsqueeze(0)
    assert torch.equal(SoftEncoder(BINS)(ab), soft_encode_exact(ab, BINS))


def test_fast_equals_exact_for_irregular_user_bins():
    bins = torch.rand(40, 2, generator=torch.Generator().manual_seed(7)) * 120 - 60
    encoder = SoftEncoder(bins, k=5, sigma=8.0)
    low, high = box(encoder)
    ab = low + (high - low) * random_ab(0, 1, seed=8)
    assert (encoder(ab) - soft_encode_exact(ab, bins, k=5, sigma=8.0)).abs().max().item() <= 1e-6


def test_matches_scikit_learn_nearest_neighbours_on_photo_ab():
    ab = photo_ab(stride=8)
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2).double().numpy()
    distances, neighbours = NearestNeighbors(n_neighbors=5).fit(BINS.double().numpy()).kneighbors(points)
    weights = np.exp(-(distances**2) / (2 * 5.0**2))
    weights /= weights.sum(axis=1, keepdims=True)
    expected = np.zeros((len(points), len(BINS)))
    np.put_along_axis(expected, neighbours, weights, axis=1)
    ours = SoftEncoder(BINS)(ab).permute(0, 2, 3, 1).reshape(-1, len(BINS)).double().numpy()
    assert np.abs(ours - expected).max() < 1e-5
    # Gray pixels sit exactly on (0, 0), four bins away at an exact tie: compare nearest where it is unique.
    unique = distances[:, 0] < distances[:, 1]
    nearest = SoftEncoder(BINS).nearest(ab).flatten().numpy()
    assert np.array_equal(nearest[unique], neighbours[unique, 0])


def test_dense_rows_sum_to_one_and_agree_with_the_sparse_form():
    ab = random_ab(-110, 110, seed=3)
    encoder = SoftEncoder(BINS)
    dense = encoder(ab)
    indices, weights = encoder.encode_sparse(ab)
    assert dense.shape == (2, 313, 48, 64) and indices.shape == weights.shape == (2, 5, 48, 64)
    assert indices.dtype == torch.int64
    assert torch.allclose(dense.sum(dim=1), torch.ones(2, 48, 64), atol=1e-6)
    assert torch.equal(dense.gather(1, indices), weights)
    assert (weights[:, :-1] >= weights[:, 1:]).all(), "bins come nearest first"
    assert torch.equal(encoder.nearest(ab), indices[:, 0])


def test_table_is_small_so_no_pixel_is_measured_against_all_bins():
    assert SoftEncoder(BINS, k=5).num_candidates == 12
    assert SoftEncoder(BINS, k=10).num_candidates == 17
    assert SoftEncoder(BINS).state_dict() == {}


def test_ab_outside_the_table_box_is_clamped_onto_it():
    encoder = SoftEncoder(BINS)
    assert encoder.box_low == (-142.5, -162.5) and encoder.box_high == (152.5, 152.5)
    far = pixels((500.0, -300.0), (-1000.0, 20.0), (0.0, 1e6))
    low, high = box(encoder)
    clamped = torch.maximum(torch.minimum(far, high), low)
    assert torch.equal(encoder(far), soft_encode_exact(clamped, BINS))
    inside = random_ab(-142, 152, seed=11)
    assert torch.equal(encoder(inside), soft_encode_exact(inside, BINS))


def test_soft_encode_caches_one_encoder_per_bins_k_sigma():
    ab = random_ab(-110, 110, seed=4, shape=(1, 2, 8, 8))
    assert torch.equal(soft_encode(ab, BINS), soft_encode_exact(ab, BINS))
    assert cached_soft_encoder(BINS.clone()) is cached_soft_encoder(BINS)
    assert cached_soft_encoder(BINS, k=10) is not cached_soft_encoder(BINS)


def test_single_bin_and_empty_batch():
    one = torch.tensor([[3.0, -4.0]])
    ab = random_ab(-50, 50, seed=5, shape=(1, 2, 3, 3))
    assert torch.equal(SoftEncoder(one, k=1)(ab), torch.ones(1, 1, 3, 3))
    indices, weights = SoftEncoder(BINS).encode_sparse(torch.zeros(0, 2, 4, 4))
    assert indices.shape == weights.shape == (0, 5, 4, 4)


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: SoftEncoder(BINS, k=0), ValueError, "k must be between 1 and the number of bins"),
        (lambda: SoftEncoder(BINS, k=314), ValueError, "k must be between 1 and the number of bins"),
        (lambda: SoftEncoder(BINS, sigma=0.0), ValueError, "sigma must be positive"),
        (lambda: SoftEncoder(BINS[:, :1]), ValueError, r"bins must be \(Q, 2\)"),
        (lambda: SoftEncoder(torch.tensor([[0.0, math.nan]]), k=1), ValueError, "non-finite"),
        (lambda: SoftEncoder(BINS)(torch.zeros(1, 3, 2, 2)), ValueError, "B x 2 x H x W"),
        (lambda: SoftEncoder(BINS).nearest(torch.zeros(2, 2, 2)), ValueError, "B x 2 x H x W"),
        (lambda: soft_encode_exact(torch.zeros(1, 2, 2, 2, dtype=torch.long), BINS), TypeError, "float"),
    ],
)
def test_bad_arguments_raise_clear_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()
