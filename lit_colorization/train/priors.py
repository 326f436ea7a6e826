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

from lit_colorization.color import SoftEncoder, check_bins, nongray_mask, smooth_prior, uint8_to_lab
from lit_colorization.color.targets import subsample
from lit_colorization.data.config import resize_rule
from lit_colorization.data.encoded import DeviceCropper
from lit_colorization.store.atomic import atomic_open

PRIOR_STRIDE = 4  # every 4th pixel, as the targets are taken: the same distribution at 1/16 of the work


def compute_prior(
    rgb_batches: Iterable[Tensor],
    bins: Tensor,
    sigma: float = 5.0,
    gray_threshold: float = 5.0,
    device: str | torch.device = "cpu",
    total: int | None = None,
) -> Tensor:
    """Smoothed distribution of nearest ab bins over the coloured images of ``rgb_batches`` (uint8 B x 3 x H x W)."""
    check_bins(bins)
    bins = bins.to(device)
    # One encoder for the whole pass, and gray images weighted out rather than indexed out: the loop never
    # waits on the device.
    encoder = SoftEncoder(bins, k=1).to(device)
    counts = torch.zeros(bins.shape[0], dtype=torch.float64, device=device)
    for rgb in tqdm(rgb_batches, total=total, desc="prior", unit="batch", file=sys.stderr):
        full_ab = uint8_to_lab(rgb.to(device, non_blocking=True))[:, 1:]
        nearest = encoder.nearest(subsample(full_ab, PRIOR_STRIDE))
        colored = nongray_mask(full_ab, gray_threshold).to(torch.float64).view(-1, 1, 1).expand_as(nearest)
        counts += torch.bincount(nearest.flatten(), weights=colored.flatten(), minlength=bins.shape[0])
    if counts.sum() == 0:
        raise ValueError("no coloured pixels found in the training data: cannot compute an ab prior")
    return smooth_prior(counts, bins.double(), sigma).float().cpu()


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
        prior = np.load(path)
    except (ValueError, OSError) as error:
        raise ValueError(f"{path}: not a readable .npy prior: {error}") from None
    if prior.shape != (num_bins,):
        raise ValueError(
            f"{path}: prior has shape {prior.shape}, expected ({num_bins},) to match the ab bins"
        )
    if not np.all(np.isfinite(prior)) or prior.min() < 0 or prior.sum() <= 0:
        raise ValueError(f"{path}: prior must be finite, non-negative and not all zero")
    return torch.from_numpy(prior / prior.sum()).float()


def prior_from_datamodule(datamodule, bins: Tensor, sigma: float, gray_threshold: float) -> Tensor:
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = datamodule.config
    if data.decode == "gpu":  # batches of JPEG bytes: decode and crop them on the device, as training does
        cropper = DeviceCropper(data.crop_size, resize_rule(data), data.strict)
        batches = (cropper(batch, device)["rgb"] for batch in loader)
    else:
        batches = (batch["rgb"] for batch in loader)
    return compute_prior(batches, bins, sigma, gray_threshold, device=device, total=len(loader))
