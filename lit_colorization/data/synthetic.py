"""Deterministic synthetic colour images for fast tests and smoke runs.

Image `index` of class `index % num_classes` is a smooth brightness gradient plus a few soft blobs, all
with hues within +-0.1 of the class hue `class / num_classes` (hue in [0, 1)). Every `gray_every`-th
image (indices gray_every-1, 2*gray_every-1, ...) is turned to gray (R = G = B), to exercise the
"no colour signal" mask; it keeps its class label. Images depend only on (seed, split, index).
"""

from __future__ import annotations

import numpy as np
from skimage.color import hsv2rgb
from torch.utils.data import Dataset

from lit_colorization.data.collate import Sample
from lit_colorization.data.crops import Resize, crop_sample, sample_rng
from lit_colorization.data.sampling import SharedEpoch

IMAGE_STREAM = 0x1A
SPLIT_IDS = {"train": 0, "val": 1}
HUE_SPREAD = 0.1
BLOBS_PER_IMAGE = 3
# ITU-R BT.709 luma weights, the ones skimage.color.rgb2gray uses.
LUMA_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])


def is_gray_index(index: int, gray_every: int) -> bool:
    return gray_every > 0 and index % gray_every == gray_every - 1


def class_hue(label: int, num_classes: int) -> float:
    return label / num_classes


def synthetic_image(
    seed: int, split: str, index: int, size: int, num_classes: int, gray_every: int
) -> np.ndarray:
    """The size x size x 3 uint8 image number `index` of `split` ("train" or "val")."""
    rng = np.random.default_rng([IMAGE_STREAM, seed, SPLIT_IDS[split], index])
    coords = (np.arange(size) + 0.5) / size
    ys, xs = np.meshgrid(coords, coords, indexing="ij")
    angle = rng.uniform(0, 2 * np.pi)
    # In [0, 1]: the projection onto a unit direction of a point of the centred unit square is within +-1/sqrt(2).
    ramp = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) / np.sqrt(2) + 0.5

    hue_offset = 0.4 * HUE_SPREAD * (ramp - 0.5)
    value = 0.35 + 0.45 * ramp
    for _ in range(BLOBS_PER_IMAGE):
        centre_y, centre_x = rng.uniform(0.1, 0.9, size=2)
        width = rng.uniform(0.08, 0.2)
        bump = np.exp(-((ys - centre_y) ** 2 + (xs - centre_x) ** 2) / (2 * width**2))
        hue_offset += rng.uniform(-0.5, 0.5) * HUE_SPREAD * bump
        value += rng.uniform(-0.25, 0.25) * bump
    hue_offset = np.clip(hue_offset, -HUE_SPREAD, HUE_SPREAD)
    hue = np.mod(class_hue(index % num_classes, num_classes) + hue_offset, 1.0)
    saturation = np.full_like(hue, rng.uniform(0.55, 0.95))
    rgb = hsv2rgb(np.stack([hue, saturation, np.clip(value, 0.05, 1.0)], axis=-1))
    if is_gray_index(index, gray_every):
        rgb = np.repeat((rgb @ LUMA_WEIGHTS)[..., None], 3, axis=-1)
    return np.rint(rgb * 255).astype(np.uint8)


class SyntheticColorDataset(Dataset):
    """Crops of `num_images` synthetic images; random crops and flips for "train", centre crops for "val"."""

    def __init__(
        self,
        num_images: int,
        image_size: int,
        crop_size: int,
        split: str = "train",
        seed: int = 0,
        num_classes: int = 4,
        gray_every: int = 8,
        resize: Resize | None = None,
    ) -> None:
        if split not in SPLIT_IDS:
            raise ValueError(f"split must be one of {sorted(SPLIT_IDS)}, got {split!r}")
        self.num_images = num_images
        self.image_size = image_size
        self.crop_size = crop_size
        self.split = split
        self.seed = seed
        self.num_classes = num_classes
        self.gray_every = gray_every
        self.resize = resize
        self.classes = [f"hue_{class_hue(label, num_classes):.2f}" for label in range(num_classes)]
        self._epoch = SharedEpoch()

    def __len__(self) -> int:
        return self.num_images

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def image(self, index: int) -> np.ndarray:
        return synthetic_image(
            self.seed, self.split, index, self.image_size, self.num_classes, self.gray_every
        )

    def __getitem__(self, index: int) -> Sample:
        rng = sample_rng(self.seed, self._epoch.value, index) if self.split == "train" else None
        return crop_sample(self.image(index), self.crop_size, self.resize, rng), index % self.num_classes
