"""The canonical 313 bins against docs/reference.md's table, and loading a user's bins from .npy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_colorization.color import NUM_BINS, ab_bins, rgb_to_lab

# docs/reference.md section 1, row by row as printed there.
REFERENCE_A = list(range(-90, 101, 10))
REFERENCE_B_MIN = [
    50,
    20,
    0,
    -20,
    -30,
    -40,
    -50,
    -50,
    -60,
    -70,
    -80,
    -80,
    -90,
    -100,
    -100,
    -110,
    -110,
    -110,
    -110,
    -90,
]
REFERENCE_B_MAX = [90, 90, 90, 90, 100, 100, 100, 100, 100, 100, 90, 90, 90, 90, 80, 80, 80, 70, 70, 0]
REFERENCE_COUNT = [5, 8, 10, 12, 14, 15, 16, 16, 17, 18, 18, 18, 19, 20, 19, 20, 20, 19, 19, 10]


def test_canonical_bins_match_the_reference_table_entry_by_entry():
    bins = ab_bins()
    assert bins.shape == (NUM_BINS, 2) == (313, 2) and bins.dtype == torch.float32
    assert sum(REFERENCE_COUNT) == 313
    assert bins[0].tolist() == [-90.0, 50.0] and bins[-1].tolist() == [100.0, 0.0]
    rows = bins.long().tolist()
    start = 0
    for a, b_min, b_max, count in zip(
        REFERENCE_A, REFERENCE_B_MIN, REFERENCE_B_MAX, REFERENCE_COUNT, strict=True
    ):
        column = rows[start : start + count]
        assert column == [[a, b] for b in range(b_min, b_max + 1, 10)], f"a = {a}"
        start += count
    assert start == len(rows)


def test_canonical_bins_are_sorted_by_a_then_b():
    rows = [tuple(row) for row in ab_bins().tolist()]
    assert rows == sorted(rows) and len(set(rows)) == 313


@pytest.mark.slow
def test_every_8_bit_colour_rounds_to_one_of_the_bins():
    # docs/reference.md: rounding the ab of all 2^24 sRGB colours to the 10-grid touches 261 of the 313 bins.
    levels = torch.arange(256, dtype=torch.float32) / 255
    green, blue = torch.meshgrid(levels, levels, indexing="ij")
    touched = torch.zeros(64, 64, dtype=torch.bool)  # grid index + 32 covers a, b in [-320, 310]
    for red in levels.split(16):
        rgb = torch.stack(
            [red.view(-1, 1, 1).expand(-1, 256, 256), *(c.expand(len(red), 256, 256) for c in (green, blue))],
            1,
        )
        grid = torch.round(rgb_to_lab(rgb)[:, 1:] / 10).long() + 32
        touched[grid[:, 0].flatten(), grid[:, 1].flatten()] = True
    touched_ab = {(10 * (i - 32), 10 * (j - 32)) for i, j in touched.nonzero().tolist()}
    bins = {tuple(row) for row in ab_bins().long().tolist()}
    assert len(touched_ab) == 261
    assert touched_ab <= bins


def test_user_bins_load_from_npy(tmp_path):
    centres = np.array([[0.0, 0.0], [12.5, -3.0], [-40.0, 60.0]], dtype=np.float64)
    path = tmp_path / "bins.npy"
    np.save(path, centres)
    bins = ab_bins(path)
    assert bins.dtype == torch.float32
    assert torch.equal(bins, torch.tensor(centres, dtype=torch.float32))
    assert torch.equal(ab_bins(str(path)), bins)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((5, 3)), r"shape \(Q, 2\)"),
        (np.zeros(10), r"shape \(Q, 2\)"),
        (np.zeros((0, 2)), r"shape \(Q, 2\)"),
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), "non-finite"),
        (np.array([[0.0, 1.0], [np.inf, 2.0]]), "non-finite"),
        (np.array([[0.0, 1.0], [0.0, 1.0]]), "duplicate"),
        (np.array([["a", "b"]]), "real numbers"),
    ],
)
def test_bad_bins_files_raise_clear_errors(tmp_path, array, message):
    path = tmp_path / "bins.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=message) as raised:
        ab_bins(path)
    assert str(path) in str(raised.value)


def test_missing_and_unreadable_bins_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ab_bins(tmp_path / "absent.npy")
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match="not a readable .npy"):
        ab_bins(garbage)
