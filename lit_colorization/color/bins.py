"""The quantized ab bins: the canonical 313 in-gamut centres of a 10 x 10 grid, or a user's own set from a .npy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

NUM_BINS = 313
GRID_STEP = 10

# docs/reference.md section 1: for a = -90, -80, ..., 100 the in-gamut b run from b_min to b_max in steps of 10.
# Index order (a ascending, then b ascending) is the order of the released weights' 313-way output.
_A_VALUES = tuple(range(-90, 101, GRID_STEP))
_B_MIN = (50, 20, 0, -20, -30, -40, -50, -50, -60, -70, -80, -80, -90, -100, -100, -110, -110, -110, -110, -90)  # fmt: skip
_B_MAX = (90, 90, 90, 90, 100, 100, 100, 100, 100, 100, 90, 90, 90, 90, 80, 80, 80, 70, 70, 0)


def check_bins(bins: Tensor) -> None:
    """Raise unless ``bins`` is a (Q, 2) tensor of ab centres with Q >= 1."""
    if bins.ndim != 2 or bins.shape[1] != 2 or bins.shape[0] < 1:
        raise ValueError(f"bins must be (Q, 2) ab centres, got shape {tuple(bins.shape)}")


def _canonical_bins() -> Tensor:
    centres = [
        (a, b)
        for a, b_min, b_max in zip(_A_VALUES, _B_MIN, _B_MAX, strict=True)
        for b in range(b_min, b_max + 1, GRID_STEP)
    ]
    return torch.tensor(centres, dtype=torch.float32)


def _load_bins(path: Path) -> Tensor:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ab bins file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path}: not a readable .npy array of ab bins: {error}") from None
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 1:
        raise ValueError(f"{path}: ab bins must have shape (Q, 2), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{path}: ab bins must be real numbers, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError(f"{path}: ab bins contain non-finite values")
    bins = torch.from_numpy(array.astype(np.float32))
    if torch.unique(bins, dim=0).shape[0] != bins.shape[0]:
        raise ValueError(f"{path}: ab bins contain duplicate centres")
    return bins


def ab_bins(path: str | os.PathLike | None = None) -> Tensor:
    """Bin centres, (Q, 2) float32: the canonical 313 when ``path`` is None, else a (Q, 2) .npy of (a, b) rows."""
    return _canonical_bins() if path is None else _load_bins(Path(path))
