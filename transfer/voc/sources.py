"""Where the VOC benchmarks read their data, and the image pipelines of the classification protocols.

A real VOCdevkit is read in place (``data.root``, never downloaded). Without one, a tiny synthetic VOC2007 (VOC2012
for segmentation) is generated once into ``data.tiny.cache_dir/<its year and settings>/`` and reused: generation
happens in a temporary folder renamed into place under a file lock, so concurrent runs never see a half-written
dataset.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from transfer.voc.dataset import VOC_CLASSES
from transfer.voc.synthetic import make_tiny_voc

TEST_YEAR = "2007"
NUM_TEST_VIEWS = 10


@dataclass(frozen=True)
class VOCSource:
    root: Path  # the folder holding VOCdevkit/, as the readers take it
    classes: tuple[str, ...]
    label: str  # the dataset as recorded in results rows


def tiny_voc_folder(tiny: Any, year: str = TEST_YEAR) -> Path:
    """``<cache_dir>/<year and settings>``: one cached dataset per generator setting, so a changed setting (or a
    generator that writes more, as segmentation masks once were added) never reuses."""
    settings = (
        f"voc{year}-train{tiny.num_train}-val{tiny.num_val}-test{tiny.num_test}-size{tiny.image_size}-"
        f"seed{tiny.seed}-{'+'.join(tiny.classes)}"
    )
    return Path(tiny.cache_dir) / settings


def ensure_tiny_voc(tiny: Any, year: str = TEST_YEAR) -> Path:
    """The tiny VOC<year> root for ``tiny`` (a ``TinyVOCConfig``), generated on first use."""
    root = tiny_voc_folder(tiny, year)
    if (root / "VOCdevkit").is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if (root / "VOCdevkit").is_dir():  # another run generated it while this one waited for the lock
            return root
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            make_tiny_voc(
                staging,
                num_train=tiny.num_train,
                num_val=tiny.num_val,
                num_test=tiny.num_test,
                classes=tuple(tiny.classes),
                image_size=tiny.image_size,
                seed=tiny.seed,
                year=year,
            )
            staging.rename(root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return root


def resolve_voc_source(data: Any) -> VOCSource:
    """The VOCdevkit parent and class list of a ``VOCDataConfig``."""
    if data.root is None:
        root = ensure_tiny_voc(data.tiny)
        classes = tuple(data.classes) if data.classes is not None else tuple(data.tiny.classes)
        return VOCSource(root, classes, f"tiny-voc {data.train_set} -> {data.test_set}")
    root = Path(data.root)
    if not (root / "VOCdevkit").is_dir():
        raise FileNotFoundError(
            f"config key 'data.root' (DATA): {root} has no VOCdevkit/ folder; pass the folder that holds "
            "VOCdevkit/VOC2007"
        )
    classes = tuple(data.classes) if data.classes is not None else VOC_CLASSES
    years = "+".join(year[2:] for year in data.train_years)
    return VOCSource(root.resolve(), classes, f"VOC{years} {data.train_set} -> VOC07 {data.test_set}")


def resolve_voc_seg_source(data: Any) -> VOCSource:
    """The VOCdevkit parent and class list of a ``VOCSegDataConfig`` (the tiny VOC of ``data.year`` without a root)."""
    short = f"VOC{data.year[2:]}"
    splits = f"{data.train_set} -> {data.test_set}"
    if data.root is None:
        root = ensure_tiny_voc(data.tiny, data.year)
        classes = tuple(data.classes) if data.classes is not None else tuple(data.tiny.classes)
        return VOCSource(root, classes, f"tiny-{short.lower()} segmentation {splits}")
    root = Path(data.root)
    if not (root / "VOCdevkit").is_dir():
        raise FileNotFoundError(
            f"config key 'data.root' (DATA): {root} has no VOCdevkit/ folder; pass the folder that holds "
            f"VOCdevkit/VOC{data.year}"
        )
    classes = tuple(data.classes) if data.classes is not None else VOC_CLASSES
    return VOCSource(root.resolve(), classes, f"{short} segmentation {splits}")


def training_set(source: VOCSource, data: Any, reader: type[Dataset], **kwargs: Any) -> Dataset:
    """``reader`` (a VOC dataset class) over ``data.train_set`` of every year in ``data.train_years``."""
    parts = [
        reader(source.root, year, data.train_set, classes=source.classes, **kwargs)
        for year in data.train_years
    ]
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


class Indexed(Dataset):
    """``(index, sample)``: evaluation keys each image by its index, so duplicates from padded DDP shards drop."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


def classification_train_transform(resize: int, crop: int) -> v2.Compose:
    """uint8 image -> shorter side ``resize``, random ``crop`` x ``crop`` crop, random horizontal flip."""
    return v2.Compose([v2.Resize(resize, antialias=True), v2.RandomCrop(crop), v2.RandomHorizontalFlip()])


def centre_crop_transform(resize: int, crop: int) -> v2.Compose:
    """uint8 image -> shorter side ``resize``, central ``crop`` x ``crop`` crop (the SVM protocol's one view)."""
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(crop)])


def ten_crop_views(image: Tensor, crop: int) -> Tensor:
    """(3, H, W) -> (10, 3, crop, crop): the 4 corner and the centre crops, then the same of the mirrored image."""
    return torch.stack(TF.ten_crop(image, [crop, crop]))


class TenCropTransform:
    """uint8 image -> shorter side ``resize`` -> ``ten_crop_views``."""

    def __init__(self, resize: int, crop: int) -> None:
        self.resize = v2.Resize(resize, antialias=True)
        self.crop = crop

    def __call__(self, image: Tensor) -> Tensor:
        return ten_crop_views(self.resize(image), self.crop)
