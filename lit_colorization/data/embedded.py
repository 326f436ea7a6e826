"""The embedded default data set: colour photos shipped inside scikit-image and scikit-learn.

Only files that are inside the installed packages are used, found by path (never through
`skimage.data.<name>()`, which may try a download); a photo missing from the installed version is skipped.
Each crop is labelled with its photo's index; `classes` are the photo names.

Train/validation split: every photo (after the optional shorter-side resize, and upscaled if needed to
at least S x 2S along its longer side) loses a strip S pixels wide at the end of its longer side
(right edge of a landscape photo, bottom of a portrait or square one). Validation crops are
`val_crops` fixed S x S windows spaced evenly along that strip; training crops are random windows
(with flips) from the rest, so no training pixel is ever a validation pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
from torch.utils.data import Dataset

from lit_colorization.data.collate import Sample
from lit_colorization.data.crops import (
    Resize,
    crop_at,
    ensure_min_size,
    random_crop_flip,
    sample_rng,
    to_chw_tensor,
)
from lit_colorization.data.images import read_rgb
from lit_colorization.data.sampling import SharedEpoch

# (name, package, file): the colour photographs among the two libraries' bundled images.
EMBEDDED_PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "skimage.data", "astronaut.png"),
    ("chelsea", "skimage.data", "chelsea.png"),
    ("coffee", "skimage.data", "coffee.png"),
    ("hubble_deep_field", "skimage.data", "hubble_deep_field.jpg"),
    ("immunohistochemistry", "skimage.data", "ihc.png"),
    ("motorcycle", "skimage.data", "motorcycle_left.png"),
    ("retina", "skimage.data", "retina.jpg"),
    ("rocket", "skimage.data", "rocket.jpg"),
    ("china", "sklearn.datasets.images", "china.jpg"),
    ("flower", "sklearn.datasets.images", "flower.jpg"),
)


@dataclass(frozen=True)
class NamedPhoto:
    name: str
    image: np.ndarray  # H x W x 3 uint8


def load_embedded_photos() -> list[NamedPhoto]:
    """Every photo of `EMBEDDED_PHOTOS` present in the installed packages, in that order."""
    photos = []
    for name, package, filename in EMBEDDED_PHOTOS:
        resource = resources.files(package) / filename
        if resource.is_file():
            with resources.as_file(resource) as path:
                photos.append(NamedPhoto(name, read_rgb(path, strict=True)))
    if not photos:
        raise FileNotFoundError(
            "none of the embedded photos were found in the installed scikit-image / scikit-learn packages"
        )
    return photos


@dataclass(frozen=True)
class HeldOutPhoto:
    train_region: np.ndarray
    val_strip: np.ndarray


def hold_out_strip(image: np.ndarray, crop_size: int, resize: Resize | None) -> HeldOutPhoto:
    """Split a photo into a training region and a crop_size-wide validation strip (see module docstring)."""
    if resize is not None:
        image = resize.apply(image)
    height, width = image.shape[:2]
    if width > height:
        image = ensure_min_size(image, crop_size, 2 * crop_size)
        cut = image.shape[1] - crop_size
        return HeldOutPhoto(train_region=image[:, :cut], val_strip=image[:, cut:])
    image = ensure_min_size(image, 2 * crop_size, crop_size)
    cut = image.shape[0] - crop_size
    return HeldOutPhoto(train_region=image[:cut], val_strip=image[cut:])


def evenly_spaced_crops(region: np.ndarray, size: int, count: int) -> list[np.ndarray]:
    """`count` size x size windows from the top-left to the bottom-right corner of `region`."""
    height, width = region.shape[:2]
    tops = np.linspace(0, height - size, count).round().astype(int)
    lefts = np.linspace(0, width - size, count).round().astype(int)
    return [crop_at(region, int(top), int(left), size) for top, left in zip(tops, lefts, strict=True)]


class EmbeddedTrainDataset(Dataset):
    """`crops_per_photo` random crops (with flips) of each photo's training region per epoch."""

    def __init__(
        self,
        photos: Sequence[NamedPhoto],
        crop_size: int,
        crops_per_photo: int,
        resize: Resize | None = None,
        seed: int = 0,
    ) -> None:
        self.classes = [photo.name for photo in photos]
        self.regions = [hold_out_strip(photo.image, crop_size, resize).train_region for photo in photos]
        self.crop_size = crop_size
        self.crops_per_photo = crops_per_photo
        self.seed = seed
        self._epoch = SharedEpoch()

    def __len__(self) -> int:
        return len(self.regions) * self.crops_per_photo

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def __getitem__(self, index: int) -> Sample:
        photo = index // self.crops_per_photo
        rng = sample_rng(self.seed, self._epoch.value, index)
        return to_chw_tensor(random_crop_flip(self.regions[photo], self.crop_size, rng)), photo


class EmbeddedValDataset(Dataset):
    """`crops_per_photo` fixed crops of each photo's validation strip."""

    def __init__(
        self, photos: Sequence[NamedPhoto], crop_size: int, crops_per_photo: int, resize: Resize | None = None
    ) -> None:
        self.classes = [photo.name for photo in photos]
        self.crops = [
            evenly_spaced_crops(
                hold_out_strip(photo.image, crop_size, resize).val_strip, crop_size, crops_per_photo
            )
            for photo in photos
        ]
        self.crops_per_photo = crops_per_photo

    def __len__(self) -> int:
        return len(self.crops) * self.crops_per_photo

    def __getitem__(self, index: int) -> Sample:
        photo, position = divmod(index, self.crops_per_photo)
        return to_chw_tensor(self.crops[photo][position]), photo
