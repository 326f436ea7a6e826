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
from transfer.voc.synthetic import SBD_FOLDER, make_tiny_sbd, make_tiny_voc

TEST_YEAR = "2007"
NUM_TEST_VIEWS = 10
TINY_SBD_EXTRA = 4  # SBD-only images of the tiny SBD (its other images are the tiny VOC2011's)


@dataclass(frozen=True)
class VOCSource:
    root: Path  # the folder holding VOCdevkit/, as the readers take it
    classes: tuple[str, ...]
    label: str  # the dataset as recorded in results rows


def tiny_voc_folder(tiny: Any, year: str = TEST_YEAR, with_sbd: bool = False) -> Path:
    """``<cache_dir>/<year and settings>``: one cached dataset per generator setting, so a changed setting (or a
    generator that writes more, as segmentation masks once were added) never reuses."""
    sbd = f"+sbd{TINY_SBD_EXTRA}" if with_sbd else ""
    settings = (
        f"voc{year}{sbd}-train{tiny.num_train}-val{tiny.num_val}-test{tiny.num_test}-size{tiny.image_size}-"
        f"seed{tiny.seed}-{'+'.join(tiny.classes)}"
    )
    return Path(tiny.cache_dir) / settings


def ensure_tiny_voc(tiny: Any, year: str = TEST_YEAR, with_sbd: bool = False) -> Path:
    """The tiny VOC<year> root for ``tiny`` (a ``TinyVOCConfig``), generated on first use; ``with_sbd`` adds a
    tiny SBD in ``<root>/benchmark_RELEASE`` (``make_tiny_sbd``)."""
    root = tiny_voc_folder(tiny, year, with_sbd)
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
            if with_sbd:
                make_tiny_sbd(staging, TINY_SBD_EXTRA, tuple(tiny.classes), tiny.image_size, tiny.seed)
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


@dataclass(frozen=True)
class ReleaseSegSource(VOCSource):
    sbd_root: Path  # the SBD folder holding dataset/


def resolve_release_seg_source(data: Any) -> ReleaseSegSource:
    """Where voc-seg ``protocol=release`` reads VOC2011 and SBD (the tiny pair without ``data.root``); a one-line
    error naming the key when SBD is not there."""
    if data.root is None:
        root = ensure_tiny_voc(data.tiny, "2011", with_sbd=True)
        classes = tuple(data.classes) if data.classes is not None else tuple(data.tiny.classes)
        return ReleaseSegSource(
            root, classes, "tiny-voc11+sbd segmentation train -> seg11valid", root / SBD_FOLDER
        )
    root = Path(data.root)
    if not (root / "VOCdevkit").is_dir():
        raise FileNotFoundError(
            f"config key 'data.root' (DATA): {root} has no VOCdevkit/ folder; pass the folder that holds "
            "VOCdevkit/VOC2011"
        )
    sbd_root = Path(data.sbd_root) if data.sbd_root is not None else root / SBD_FOLDER
    if not (sbd_root / "dataset").is_dir():
        raise FileNotFoundError(
            f"config key 'data.sbd_root' (SBD): {sbd_root} has no dataset/ folder; protocol=release trains on "
            "VOC2011 + SBD: pass SBD's benchmark_RELEASE folder, or use protocol=project-fcn"
        )
    classes = tuple(data.classes) if data.classes is not None else VOC_CLASSES
    return ReleaseSegSource(
        root.resolve(), classes, "VOC11+SBD segmentation train -> seg11valid", sbd_root.resolve()
    )


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


def whole_image_transform(scale: int, side: int) -> v2.Compose:
    """uint8 image -> shorter side ``scale``, then the whole image resized to ``side`` x ``side`` (aspect not
    kept): fair_self_supervision_benchmark's SVM features (docs/reference.md section 11.5)."""
    return v2.Compose([v2.Resize(scale, antialias=True), v2.Resize((side, side), antialias=True)])


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


class ScaleJitterCrop:
    """uint8 image -> one ``crop`` x ``crop`` view as philkr's ``TransformationLayer`` samples it.

    docs/reference.md section 11.4: a scale ``s`` uniform in ``[min(min_scale, s_max), s_max]`` with
    ``s_max = min(max_scale, H / crop, W / crop)``; the view samples a ``crop * s`` square of the image
    bilinearly, its centre uniform where the square stays inside the image (centred on an axis the square
    overflows), mirrored with probability 1/2; pixels outside the image are 0. The layer has no test mode, so the
    protocol's test views are more draws of the same. The view is rounded back to 8 bits.
    """

    def __init__(
        self, crop: int, min_scale: float, max_scale: float, generator: torch.Generator | None = None
    ) -> None:
        if crop < 1 or not 0 < min_scale <= max_scale:
            raise ValueError(
                f"need crop >= 1 and 0 < min_scale <= max_scale, got {crop}, {min_scale}, {max_scale}"
            )
        self.crop, self.min_scale, self.max_scale = crop, min_scale, max_scale
        self.generator = generator

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator, dtype=torch.float64))

    def __call__(self, image: Tensor) -> Tensor:
        _, height, width = image.shape
        crop = self.crop
        top_scale = min(self.max_scale, height / crop, width / crop)
        scale = self._uniform(min(self.min_scale, top_scale), top_scale)
        spans = [min(crop * scale, side) for side in (width, height)]
        shift_x, shift_y = (
            self._uniform(-(side - span) / 2, (side - span) / 2)
            for side, span in zip((width, height), spans, strict=True)
        )
        mirror = -1.0 if float(torch.rand((), generator=self.generator)) < 0.5 else 1.0
        # Output pixel x samples the image at s * (x - crop / 2) (mirrored) + W / 2 + shift, in pixel units.
        steps = torch.arange(crop, dtype=torch.float64) - crop / 2
        xs = mirror * scale * steps + width / 2 + shift_x
        ys = scale * steps + height / 2 + shift_y
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        inside = (grid_x >= 0) & (grid_x < width) & (grid_y >= 0) & (grid_y < height)
        normalised = torch.stack(
            [2 * grid_x / max(width - 1, 1) - 1, 2 * grid_y / max(height - 1, 1) - 1], dim=-1
        ).float()
        sampled = torch.nn.functional.grid_sample(
            image[None].float(), normalised[None], mode="bilinear", padding_mode="border", align_corners=True
        )[0]
        return (sampled * inside).round().clamp(0, 255).to(torch.uint8)


class RepeatedViews:
    """image -> (``views``, 3, crop, crop): ``views`` independent draws of ``transform`` (e.g. ``ScaleJitterCrop``)."""

    def __init__(self, transform: ScaleJitterCrop, views: int) -> None:
        self.transform, self.views = transform, views

    def __call__(self, image: Tensor) -> Tensor:
        return torch.stack([self.transform(image) for _ in range(self.views)])
