"""Empirical ab prior of a training set: one streamed pass, on the device, with a progress bar.

``python -m lit_colorization.cli.priors [--preset NAME] [--out PATH] key=value ...`` writes a (Q,) ``.npy``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from lit_colorization.color import ab_bins, smooth_prior
from lit_colorization.color.targets import ColorTargetBuilder
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.data import build_datamodule
from lit_colorization.data.datamodule import training_rgb_batches
from lit_colorization.pretrain.target_setup import build_targets, target_stride
from lit_colorization.store.atomic import atomic_open


def compute_prior(
    rgb_batches: Iterable[Tensor],
    targets: ColorTargetBuilder,
    sigma: float = 5.0,
    device: str | torch.device = "cpu",
    total: int | None = None,
) -> Tensor:
    """Smoothed distribution of the nearest ab bins of the target pixels of the coloured images of
    ``rgb_batches`` (uint8 B x 3 x H x W), sampled as ``targets`` samples them for the loss."""
    targets = targets.to(device)
    num_bins = targets.bins.shape[0]
    counts = torch.zeros(num_bins, dtype=torch.float64, device=device)
    # Gray images are weighted out rather than indexed out: the loop never waits on the device.
    for rgb in tqdm(rgb_batches, total=total, desc="prior", unit="batch", file=sys.stderr):
        nearest, colored = targets.prior_sample(rgb.to(device, non_blocking=True))
        weights = colored.to(torch.float64).view(-1, 1, 1).expand_as(nearest)
        counts += torch.bincount(nearest.flatten(), weights=weights.flatten(), minlength=num_bins)
    if counts.sum() == 0:
        raise ValueError("no coloured pixels found in the training data: cannot compute an ab prior")
    return smooth_prior(counts, targets.bins.double(), sigma).float().cpu()


def save_prior(prior: Tensor, path: str | Path) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as stream:
        np.save(stream, prior.numpy().astype(np.float32))
    return path


def load_prior(path: str | Path, num_bins: int) -> Tensor:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prior file not found")
    try:
        prior = np.load(path, allow_pickle=False)  # a file from elsewhere is data
    except (ValueError, OSError) as error:
        raise ValueError(f"{path}: not a readable .npy prior: {error}") from None
    if prior.shape != (num_bins,):
        raise ValueError(
            f"{path}: prior has shape {prior.shape}, expected ({num_bins},) to match the ab bins"
        )
    if not np.all(np.isfinite(prior)) or prior.min() < 0 or prior.sum() <= 0:
        raise ValueError(f"{path}: prior must be finite, non-negative and not all zero")
    return torch.from_numpy(prior / prior.sum()).float()


def prior_from_datamodule(datamodule, config: PretrainConfig, bins: Tensor) -> Tensor:
    """The prior of ``datamodule``'s training data (built from ``config.data``), counted on the target grid of
    ``config``'s network."""
    targets = build_targets(config.targets, bins, None, target_stride(config))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batches, total = training_rgb_batches(datamodule, device)
    return compute_prior(batches, targets, config.targets.sigma, device=device, total=total)


def write_prior(config: PretrainConfig, out: str | Path | None = None) -> Path:
    """Compute the training set's prior and write it to ``out`` (default ``runs/<run>/prior.npy``); the path."""
    bins = ab_bins(config.targets.bins_path)
    prior = prior_from_datamodule(build_datamodule(config.data), config, bins)
    written = save_prior(prior, out or Path(config.runs_dir) / config.run / "prior.npy")
    print(f"prior over {bins.shape[0]} bins ({int((prior > 0).sum())} non-zero) written to {written}")
    return written
