"""Resizing and cropping of H x W x 3 uint8 arrays, and the per-sample random generator.

Training crops are random with a random horizontal flip; validation crops are centred. Every random
choice comes from `sample_rng(seed, epoch, index)`, never from global state, so a crop depends only
on those three numbers: the same on every run, different on every epoch and for every index (and
therefore on every DDP rank, since ranks receive disjoint indices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from lit_colorization.data.data_config import RESIZE_MODES, SHORTER_SIDE, SQUASH

# Keeps the crop stream apart from other streams keyed by the same (seed, index), e.g. synthetic images.
CROP_STREAM = 0xC0


@dataclass(frozen=True)
class Resize:
    """How a photo is scaled before it is cropped: its shorter side to ``size`` (aspect ratio kept), or squashed
    to ``size`` x ``size``."""

    size: int
    mode: str = SHORTER_SIDE

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}; got {self.mode!r}")

    def apply(self, image: np.ndarray) -> np.ndarray:
        if self.mode == SQUASH:
            return _resize(image, height=self.size, width=self.size)
        return resize_shorter_side(image, self.size)

    def source_pixels_per_pixel(
        self, heights: torch.Tensor, widths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(down, across) the source pixels per pixel of ``apply``'s result, for photos of ``heights`` x ``widths``."""
        if self.mode == SQUASH:
            return heights / self.size, widths / self.size
        factor = torch.minimum(heights, widths) / self.size
        return factor, factor


def sample_rng(seed: int, epoch: int, index: int, stream: int = CROP_STREAM) -> np.random.Generator:
    """A generator determined by (stream, seed, epoch, index) alone."""
    return np.random.default_rng([stream, seed, epoch, index])


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Scale `image` so that its shorter side is `size` pixels, keeping the aspect ratio."""
    height, width = image.shape[:2]
    scale = size / min(height, width)
    return _resize(image, height=max(size, round(height * scale)), width=max(size, round(width * scale)))


def ensure_min_size(image: np.ndarray, min_height: int, min_width: int) -> np.ndarray:
    """Upscale `image` (aspect ratio kept) just enough to be at least min_height x min_width."""
    height, width = image.shape[:2]
    scale = max(min_height / height, min_width / width)
    if scale <= 1:
        return image
    return _resize(
        image,
        height=max(min_height, math.ceil(height * scale)),
        width=max(min_width, math.ceil(width * scale)),
    )


def fit_for_crop(image: np.ndarray, crop_size: int, resize: Resize | None) -> np.ndarray:
    """Apply the optional `resize`, then upscale anything still smaller than the crop."""
    if resize is not None:
        image = resize.apply(image)
    return ensure_min_size(image, crop_size, crop_size)


def crop_at(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    """The size x size window whose top-left corner is (top, left)."""
    height, width = image.shape[:2]
    if not (0 <= top <= height - size and 0 <= left <= width - size):
        raise ValueError(f"crop {size}x{size} at ({top}, {left}) does not fit in a {height}x{width} image")
    return image[top : top + size, left : left + size]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    return crop_at(image, (height - size) // 2, (width - size) // 2, size)


def random_crop_flip(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly placed size x size crop, mirrored left-right with probability 1/2."""
    height, width = image.shape[:2]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    crop = crop_at(image, top, left, size)
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 array -> contiguous 3 x H x W uint8 tensor (a copy)."""
    return torch.from_numpy(np.array(image.transpose(2, 0, 1), order="C"))


def crop_sample(
    image: np.ndarray, crop_size: int, resize: Resize | None, rng: np.random.Generator | None
) -> torch.Tensor:
    """Training crop (random, flipped) when `rng` is given, else the deterministic centre crop."""
    fitted = fit_for_crop(image, crop_size, resize)
    crop = center_crop(fitted, crop_size) if rng is None else random_crop_flip(fitted, crop_size, rng)
    return to_chw_tensor(crop)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def resize_rule(cfg: Any) -> Resize | None:
    """The scaling before cropping that ``data.resize`` and ``data.resize_mode`` describe; None without one."""
    return None if cfg.resize is None else Resize(cfg.resize, cfg.resize_mode)
