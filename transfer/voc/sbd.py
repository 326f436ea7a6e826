"""The data of voc-seg ``protocol=release``: VOC2011's segmentation sets, SBD, and the lists the release used.

SBD (Hariharan et al.'s Semantic Boundaries Dataset, the "bh" of the release's ``datum_voc2011bh_segtrain``) is
read in its standard layout, ``<sbd_root>/dataset/`` (``benchmark_RELEASE/dataset`` as it unpacks): ``img/<id>.jpg``,
``cls/<id>.mat`` (a MATLAB struct ``GTcls`` whose ``Segmentation`` is the H x W class map, 0 background and 1-20
the VOC classes, no void) and the lists ``train.txt`` and ``val.txt``. The ``.mat`` files are read with
``scipy.io.loadmat``: MATLAB data, never code.

The lists (docs/reference.md section 11.6):

- training: VOC2011 segmentation ``train`` plus SBD ``train``, each image once. An image in both keeps VOC's own
  annotation (with its void borders); the release's LMDB does not say which it kept.
- validation: ``seg11valid``, the VOC2011 segmentation ``val`` images that are not in SBD ``train`` (FCN's
  ``data/pascal/README.md``: "VOC 2011 segval intersects with SBD train"), in ``val.txt`` order: 736 images on the
  real data (the release's ``test_iter: 736``). It is derived here from the user's lists, not shipped.

By construction the two lists share no image; ``release_lists`` checks it all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from transfer.voc.dataset import (
    SEGMENTATION_VOID,
    VOC_CLASSES,
    check_segmentation_layout,
    read_class_mask,
    read_voc_image,
    segmentation_lookup,
    voc_year_dir,
)

RELEASE_VOC_YEAR = "2011"
SBD_SPLITS = ("train", "val")
SEG11VALID_IMAGES = 736  # on the real VOC2011 and SBD (the release's solver0.prototxt: test_iter 736)
SBD_HINT = (
    "expected SBD's layout <sbd_root>/dataset/ with img/<id>.jpg, cls/<id>.mat, train.txt and val.txt "
    "(benchmark_RELEASE as it unpacks); set data.sbd_root (make: SBD=...)"
)


def sbd_dataset_dir(sbd_root: str | Path) -> Path:
    """``<sbd_root>/dataset``: where SBD's img/, cls/ and lists live."""
    return Path(sbd_root) / "dataset"


def sbd_ids(sbd_root: str | Path, split: str) -> list[str]:
    """The ids of SBD's ``split`` list, after checking that the folder, the list and every listed image and
    ``.mat`` exist (a one-line error naming the first thing missing)."""
    if split not in SBD_SPLITS:
        raise ValueError(f"SBD split must be one of {list(SBD_SPLITS)}, got {split!r}")
    dataset = sbd_dataset_dir(sbd_root)
    listing = dataset / f"{split}.txt"
    for required in (dataset, dataset / "img", dataset / "cls", listing):
        if not required.exists():
            raise FileNotFoundError(f"SBD: missing {required}; {SBD_HINT}")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{listing} lists no image ids")
    missing = [
        path
        for image_id in ids
        for path in (dataset / "img" / f"{image_id}.jpg", dataset / "cls" / f"{image_id}.mat")
        if not path.is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"SBD: missing {missing[0]} ({len(missing)} files listed in {listing} are absent); {SBD_HINT}"
        )
    return ids


def read_sbd_mask(path: str | Path) -> np.ndarray:
    """The class map (uint8 H x W) of one SBD ``cls/<id>.mat``: ``GTcls.Segmentation``."""
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises many kinds (MatReadError, IndexError, ...) on a damaged file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable SBD .mat file ({reason})") from None
    gt = contents.get("GTcls")
    if gt is None or gt.dtype.names is None or "Segmentation" not in gt.dtype.names:
        raise ValueError(f"{path}: no GTcls.Segmentation (SBD's cls/*.mat holds the struct GTcls)")
    segmentation = np.asarray(gt["Segmentation"].flat[0])
    if segmentation.ndim != 2 or not np.issubdtype(segmentation.dtype, np.integer):
        raise ValueError(
            f"{path}: GTcls.Segmentation is {segmentation.dtype} of shape {segmentation.shape}, "
            "expected an integer H x W class map"
        )
    if segmentation.size and (segmentation.min() < 0 or segmentation.max() > SEGMENTATION_VOID):
        raise ValueError(f"{path}: GTcls.Segmentation holds values outside 0-255")
    return segmentation.astype(np.uint8)


@dataclass(frozen=True)
class AnnotatedImage:
    """One image of a segmentation list and where its class map comes from."""

    image_id: str
    image: Path
    mask: Path
    source: str  # "voc2011" (a SegmentationClass PNG) or "sbd" (a cls/*.mat)


class SegmentationList(Dataset):
    """``(image, mask)`` of a list of ``AnnotatedImage``: as ``VOCSegmentationDataset`` yields them (a uint8
    ``tv_tensors.Image`` and an int64 ``tv_tensors.Mask`` of ``segmentation_lookup(classes)`` labels)."""

    def __init__(
        self,
        entries: Sequence[AnnotatedImage],
        classes: Sequence[str] = VOC_CLASSES,
        transforms: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.entries = list(entries)
        self.image_ids = [entry.image_id for entry in self.entries]
        self.classes = tuple(classes)
        self._lookup = segmentation_lookup(self.classes)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self.entries[index]
        image = read_voc_image(str(entry.image))
        raw = read_sbd_mask(entry.mask) if entry.source == "sbd" else read_class_mask(entry.mask)
        indices = torch.from_numpy(raw).long()
        if tuple(indices.shape) != tuple(image.shape[-2:]):
            raise ValueError(
                f"{entry.mask}: mask is {tuple(indices.shape)} but its image is {tuple(image.shape[-2:])} (H x W)"
            )
        labels = self._lookup[indices]
        if bool((labels < 0).any()):
            unknown = sorted(set(indices[labels < 0].tolist()))
            raise ValueError(
                f"{entry.mask}: class indices {unknown[:5]} are not VOC labels (0-20 and {SEGMENTATION_VOID})"
            )
        image, mask = tv_tensors.Image(image), tv_tensors.Mask(labels)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


@dataclass(frozen=True)
class ReleaseLists:
    """The release protocol's training and validation images, and how the training list was put together."""

    train: list[AnnotatedImage]
    seg11valid: list[AnnotatedImage]
    counts: dict[str, Any]  # what the results row records about the lists


def _voc_entry(voc_root: Path, image_id: str) -> AnnotatedImage:
    year_dir = voc_year_dir(voc_root, RELEASE_VOC_YEAR)
    return AnnotatedImage(
        image_id,
        year_dir / "JPEGImages" / f"{image_id}.jpg",
        year_dir / "SegmentationClass" / f"{image_id}.png",
        "voc2011",
    )


def _sbd_entry(sbd_root: Path, image_id: str) -> AnnotatedImage:
    dataset = sbd_dataset_dir(sbd_root)
    return AnnotatedImage(
        image_id, dataset / "img" / f"{image_id}.jpg", dataset / "cls" / f"{image_id}.mat", "sbd"
    )


def _listed(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not found; protocol=release reads VOCdevkit/VOC2011 and SBD's lists"
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def release_list_sizes(voc_root: str | Path, sbd_root: str | Path) -> tuple[int, int]:
    """(training images, seg11valid images) from the lists alone (no image is opened): for planning."""
    lists = voc_year_dir(voc_root, RELEASE_VOC_YEAR) / "ImageSets" / "Segmentation"
    voc_train, voc_val = _listed(lists / "train.txt"), _listed(lists / "val.txt")
    sbd_train = _listed(sbd_dataset_dir(sbd_root) / "train.txt")
    return len(set(voc_train) | set(sbd_train)), len(seg11valid_ids(voc_val, sbd_train))


def seg11valid_ids(voc_val: Sequence[str], sbd_train: Sequence[str]) -> list[str]:
    """FCN's ``seg11valid``: the VOC2011 segmentation val ids not in SBD train, in val's order."""
    in_sbd_train = set(sbd_train)
    return [image_id for image_id in voc_val if image_id not in in_sbd_train]


def release_lists(voc_root: str | Path, sbd_root: str | Path) -> ReleaseLists:
    """VOC2011 segmentation train + SBD train (VOC's annotation where both have the image) and seg11valid, read
    from the user's VOCdevkit/VOC2011 and SBD."""
    voc_root, sbd_root = Path(voc_root), Path(sbd_root)
    voc_train = check_segmentation_layout(voc_root, RELEASE_VOC_YEAR, "train")
    voc_val = check_segmentation_layout(voc_root, RELEASE_VOC_YEAR, "val")
    sbd_train = sbd_ids(sbd_root, "train")
    in_voc_train = set(voc_train)
    train = [_voc_entry(voc_root, image_id) for image_id in voc_train]
    train += [_sbd_entry(sbd_root, image_id) for image_id in sbd_train if image_id not in in_voc_train]
    valid = [_voc_entry(voc_root, image_id) for image_id in seg11valid_ids(voc_val, sbd_train)]
    shared = {entry.image_id for entry in train} & {entry.image_id for entry in valid}
    if shared:  # impossible for well-formed lists; a duplicated id across VOC's train and val would do it
        raise ValueError(
            f"the release's training and seg11valid lists share {len(shared)} image(s), e.g. {sorted(shared)[0]}: "
            f"check {voc_year_dir(voc_root, RELEASE_VOC_YEAR)}/ImageSets/Segmentation"
        )
    if not valid:
        raise ValueError(
            "seg11valid is empty: every VOC2011 segmentation val image is in SBD train; check data.sbd_root"
        )
    counts = {
        "voc2011_train": len(voc_train),
        "sbd_train": len(sbd_train),
        "voc2011_train_in_sbd_train": len(in_voc_train & set(sbd_train)),
        "train_images": len(train),
        "voc2011_val": len(voc_val),
        "seg11valid_images": len(valid),
    }
    return ReleaseLists(train, valid, counts)
