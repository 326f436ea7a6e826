"""Soft-encoding of ab targets: each pixel's k nearest bin centres, weighted by a Gaussian of the distance.

``soft_encode_exact`` measures every pixel against every bin (an N x Q matrix): the reference.
``SoftEncoder`` gives the same result from a precomputed table: the ab plane is cut into small
square cells and each cell lists the few bins that can be among the k nearest of any point inside it, so a
pixel is only measured against its cell's list (12 bins for the canonical 313 and k = 5, 17 for k = 10).

Both order each pixel's bins by increasing distance and break exact ties by the lower bin index, and both
compute squared distances with the same operations, so they pick the same bins even at ties.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lit_colorization.color.bins import check_bins

# Cells per axis above which the cell side grows instead (bins with a tight cluster and a far outlier).
_MAX_CELLS_PER_AXIS = 1024
# Rows of the cell-to-bin distance matrix built at once while the table is made (bounds memory).
_TABLE_CHUNK = 4096


def _check_ab(ab: Tensor) -> None:
    if ab.ndim != 4 or ab.shape[1] != 2:
        raise ValueError(f"ab must be B x 2 x H x W, got shape {tuple(ab.shape)}")
    if not ab.is_floating_point():
        raise TypeError(f"ab must be a float tensor, got {ab.dtype}")


def _check_k_sigma(k: int, sigma: float, num_bins: int) -> None:
    if not 1 <= k <= num_bins:
        raise ValueError(f"k must be between 1 and the number of bins ({num_bins}), got {k}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")


def _working_dtype(ab: Tensor) -> torch.dtype:
    return torch.float64 if ab.dtype == torch.float64 else torch.float32


def _pixel_coordinates(ab: Tensor) -> tuple[Tensor, Tensor]:
    """B x 2 x H x W -> the a and the b of every pixel as (B*H*W, 1) columns, in the working dtype."""
    ab = ab.to(_working_dtype(ab))
    return ab[:, 0].reshape(-1, 1), ab[:, 1].reshape(-1, 1)


def _to_image(per_pixel: Tensor, like: Tensor) -> Tensor:
    """(B*H*W, C) -> B x C x H x W, with B, H, W taken from ``like``."""
    batch, _, height, width = like.shape
    return per_pixel.reshape(batch, height, width, per_pixel.shape[1]).permute(0, 3, 1, 2).contiguous()


def squared_distances(points_a: Tensor, points_b: Tensor, centres_a: Tensor, centres_b: Tensor) -> Tensor:
    """Squared distances of points, as (N, 1) a and b columns, to centres given by (Q,) or (N, C) a and b.

    Two products and one sum (no cdist, no matmul trick): a pixel-bin pair gets the same rounding whichever
    path measures it, which is what lets SoftEncoder and soft_encode_exact agree at exact ties.
    """
    delta_a = points_a - centres_a
    delta_b = points_b - centres_b
    return delta_a * delta_a + delta_b * delta_b


def _k_smallest(squared: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k smallest entries of each row, ascending, and their columns; ties go to the lower column."""
    values, columns = squared.sort(dim=1, stable=True)
    return values[:, :k].contiguous(), columns[:, :k].contiguous()


def _gaussian_weights(ascending_squared: Tensor, sigma: float) -> Tensor:
    # exp(-d^2 / 2 sigma^2) normalised to 1. Measured from the nearest bin (the first column) so that a pixel
    # far from every bin cannot underflow to 0 / 0; written out because torch's CPU softmax is slow over 5 columns.
    weights = torch.exp((ascending_squared - ascending_squared[:, :1]) / (-2.0 * sigma * sigma))
    return weights / weights.sum(dim=1, keepdim=True)


def _dense(indices: Tensor, weights: Tensor, num_bins: int) -> Tensor:
    batch, _, height, width = indices.shape
    dense = weights.new_zeros(batch, num_bins, height, width)
    return dense.scatter_(1, indices, weights)


def soft_encode_exact(ab: Tensor, bins: Tensor, k: int = 5, sigma: float = 5.0) -> Tensor:
    """B x 2 x H x W ab -> B x Q x H x W soft targets, measuring every pixel against every bin.

    The reference for ``SoftEncoder``: a full (B*H*W) x Q distance matrix and its k smallest per pixel (cdist
    and top-k, written out as squared differences and a stable sort so that ties resolve as in SoftEncoder).
    It holds that matrix, so keep inputs small.
    """
    _check_ab(ab)
    check_bins(bins)
    _check_k_sigma(k, sigma, bins.shape[0])
    points_a, points_b = _pixel_coordinates(ab)
    centres = bins.to(points_a)
    squared, indices = _k_smallest(squared_distances(points_a, points_b, centres[:, 0], centres[:, 1]), k)
    weights = _gaussian_weights(squared, sigma)
    return _dense(_to_image(indices, ab), _to_image(weights, ab), bins.shape[0])


def _median_spacing(bins: Tensor) -> float:
    """Median distance from a bin to its nearest other bin: the scale the table's cells are cut to."""
    if bins.shape[0] == 1:
        return 1.0
    distances = torch.cdist(bins, bins, compute_mode="donot_use_mm_for_euclid_dist")
    distances.fill_diagonal_(math.inf)
    return distances.min(dim=1).values.median().item()


class _CandidateTable(NamedTuple):
    indices: Tensor  # (cells, C) int64: each cell's candidate bins in ascending order, padded with 0
    centres_a: Tensor  # (cells, C): their a, padded with +inf so a padding slot is never the nearer one
    centres_b: Tensor  # (cells, C): their b, padded likewise
    low: tuple[float, float]  # the box's low (a, b) corner
    high: tuple[float, float]  # the box's high (a, b) corner
    cell: float  # side of a cell
    shape: tuple[int, int]  # cells along a and along b


def _candidate_table(bins: Tensor, k: int) -> _CandidateTable:
    """Per cell of a box around the bins, the bins that can be among the k nearest of a point in it.

    For a cell with centre m and half-diagonal r, any point p in it has its k-th nearest bin within
    d_k(m) + r (triangle inequality), and a bin b with |m - b| > d_k(m) + 2r is farther than that from
    every such p. So {b : |m - b| <= d_k(m) + 2r} holds the k nearest of every point of the cell. A small
    slack on r covers points that float rounding puts into a neighbouring cell, and distance rounding.
    ``bins`` is float64 on the CPU.
    """
    low_bins, high_bins = bins.min(dim=0).values, bins.max(dim=0).values
    spacing = _median_spacing(bins)
    span = max((high_bins - low_bins).max().item(), spacing)
    low = low_bins - span / 4
    extent = high_bins + span / 4 - low
    cell = max(spacing / 4, extent.max().item() / _MAX_CELLS_PER_AXIS)
    shape = (math.ceil(extent[0].item() / cell), math.ceil(extent[1].item() / cell))
    centres_a = low[0] + cell * (torch.arange(shape[0], dtype=torch.float64) + 0.5)
    centres_b = low[1] + cell * (torch.arange(shape[1], dtype=torch.float64) + 0.5)
    centres = torch.cartesian_prod(centres_a, centres_b)
    reach = 2 * (cell / math.sqrt(2)) * 1.001 + 1e-6 * span

    candidate = torch.cat(
        [
            distances <= (distances.topk(k, dim=1, largest=False).values[:, -1:] + reach)
            for distances in (torch.cdist(chunk, bins) for chunk in centres.split(_TABLE_CHUNK))
        ]
    )
    # nonzero lists each cell's candidates in ascending bin order; pack them into rows of equal width.
    counts = candidate.sum(dim=1)
    cells, bin_of = candidate.nonzero(as_tuple=True)
    slot = torch.arange(cells.shape[0]) - (torch.cumsum(counts, dim=0) - counts)[cells]
    indices = torch.zeros(candidate.shape[0], int(counts.max()), dtype=torch.long)
    indices[cells, slot] = bin_of
    padding = torch.arange(indices.shape[1]) >= counts.unsqueeze(1)
    centres_a, centres_b = (bins[:, axis][indices].masked_fill(padding, math.inf) for axis in (0, 1))
    low_a, low_b = low.tolist()
    high = (low_a + cell * shape[0], low_b + cell * shape[1])
    return _CandidateTable(indices, centres_a, centres_b, (low_a, low_b), high, cell, shape)


class SoftEncoder(nn.Module):
    """Soft-encoding of B x 2 x H x W ab against fixed bins, equal to ``soft_encode_exact`` without its N x Q matrix.

    Exact (the same bins as ``soft_encode_exact``, ties included, and the same weights from the same float
    operations) for every ab in ``box_low``..``box_high``: the bins' bounding box widened by a quarter of its
    span on each side, for the canonical bins a in [-142.5, 152.5] and b in [-162.5, 152.5], wider than the
    [-128, 127] that Lab ab is quoted in. ab outside the box is clamped onto it first. Work per pixel is
    O(``num_candidates``), not O(Q).

    The tables are non-persistent buffers, so ``.to(device)`` moves them and checkpoints do not carry them.
    Output weights are float32 (float64 for float64 ab); bin indices are int64.
    """

    def __init__(self, bins: Tensor, k: int = 5, sigma: float = 5.0) -> None:
        super().__init__()
        check_bins(bins)
        _check_k_sigma(k, sigma, bins.shape[0])
        if not torch.isfinite(bins).all():
            raise ValueError("bins contain non-finite values")
        self.k = k
        self.sigma = float(sigma)
        self.num_bins = bins.shape[0]
        table = _candidate_table(bins.detach().to("cpu", torch.float64), k)
        self.box_low, self.box_high = table.low, table.high
        self.cell_size = table.cell
        self.grid_shape = table.shape
        self.num_candidates = table.indices.shape[1]
        # float64 bins keep float64 centres so float64 ab is measured against exactly the values given.
        dtype = torch.float64 if bins.dtype == torch.float64 else torch.float32
        self.register_buffer("candidate_indices", table.indices, persistent=False)
        self.register_buffer("candidate_a", table.centres_a.to(dtype), persistent=False)
        self.register_buffer("candidate_b", table.centres_b.to(dtype), persistent=False)

    def _candidate_distances(self, ab: Tensor) -> tuple[Tensor, Tensor]:
        """Squared distance of each pixel to its cell's candidates (N, C), and the pixel's cell (N, 1)."""
        _check_ab(ab)
        points_a, points_b = _pixel_coordinates(ab)
        points_a = points_a.clamp(self.box_low[0], self.box_high[0])
        points_b = points_b.clamp(self.box_low[1], self.box_high[1])
        rows, columns = self.grid_shape
        row = ((points_a - self.box_low[0]) / self.cell_size).floor().long().clamp(0, rows - 1)
        column = ((points_b - self.box_low[1]) / self.cell_size).floor().long().clamp(0, columns - 1)
        cell = row * columns + column
        centres_a = self.candidate_a.to(points_a.dtype).index_select(0, cell.view(-1))
        centres_b = self.candidate_b.to(points_a.dtype).index_select(0, cell.view(-1))
        return squared_distances(points_a, points_b, centres_a, centres_b), cell

    def encode_sparse(self, ab: Tensor) -> tuple[Tensor, Tensor]:
        """ab -> (bin indices B x k x H x W int64, weights B x k x H x W), nearest bin first, weights summing to 1."""
        squared, cell = self._candidate_distances(ab)
        nearest_squared, slots = _k_smallest(squared, self.k)
        indices = self.candidate_indices.view(-1)[cell * self.num_candidates + slots]
        weights = _gaussian_weights(nearest_squared, self.sigma)
        return _to_image(indices, ab), _to_image(weights, ab)

    def forward(self, ab: Tensor) -> Tensor:
        """ab -> dense B x Q x H x W soft targets."""
        indices, weights = self.encode_sparse(ab)
        return _dense(indices, weights, self.num_bins)

    def nearest(self, ab: Tensor) -> Tensor:
        """ab -> B x H x W int64 index of each pixel's nearest bin (lower index on an exact tie)."""
        squared, cell = self._candidate_distances(ab)
        # argmin returns the first minimum, and candidates are stored in ascending bin order.
        slots = squared.argmin(dim=1, keepdim=True)
        indices = self.candidate_indices.view(-1)[cell * self.num_candidates + slots]
        batch, _, height, width = ab.shape
        return indices.reshape(batch, height, width)


@functools.lru_cache(maxsize=8)
def _cached_encoder(
    bin_values: tuple[float, ...], dtype: torch.dtype, k: int, sigma: float, device: torch.device
) -> SoftEncoder:
    bins = torch.tensor(bin_values, dtype=torch.float64).reshape(-1, 2).to(dtype)
    return SoftEncoder(bins, k=k, sigma=sigma).to(device)


def cached_soft_encoder(bins: Tensor, k: int = 5, sigma: float = 5.0) -> SoftEncoder:
    """A ``SoftEncoder`` on ``bins.device``, built once per (bin values, k, sigma, device).

    Looking it up copies the bins to the host; a training loop should hold its own ``SoftEncoder``.
    """
    check_bins(bins)
    bin_values = tuple(bins.detach().to("cpu", torch.float64).flatten().tolist())
    return _cached_encoder(bin_values, bins.dtype, k, float(sigma), bins.device)


def soft_encode(ab: Tensor, bins: Tensor, k: int = 5, sigma: float = 5.0) -> Tensor:
    """B x 2 x H x W ab -> B x Q x H x W soft targets, by a cached ``SoftEncoder`` (equal to ``soft_encode_exact``)."""
    return cached_soft_encoder(bins, k, sigma)(ab)
