"""Pascal VOC readers for the transfer benchmarks, on top of torchvision's ``VOCDetection`` and
``VOCSegmentation`` (never downloads).

Every dataset yields images as uint8 tensors (3 x H x W, RGB), the form the GPU pipeline expects. Box
convention: VOC annotates 1-based inclusive pixel indices (xmin..xmax). We return continuous 0-based
pixel-edge coordinates ``[xmin - 1, ymin - 1, xmax, ymax]``, so a box's plain area ``(x1 - x0) * (y1 - y0)``
equals the devkit's ``(xmax - xmin + 1) * (ymax - ymin + 1)`` and IoU needs no "+1" (see ``evaluation.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError
from xml.etree.ElementTree import parse as parse_xml

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.datasets import VOCDetection, VOCSegmentation
from torchvision.io import ImageReadMode, decode_image

# The standard order: index i is class id i + 1 in detection (0 is background) and column i in classification.
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_YEARS = ("2007", "2011", "2012")  # 2011: the VOC2011 segmentation sets of voc-seg protocol=release
log = logging.getLogger(__name__)
_reported_outside: set[str] = (
    set()
)  # per process: a DataLoader worker warns about a file once, not every epoch
IMAGE_SETS = ("train", "val", "trainval", "test")
# VOC's segmentation label for object borders and unsure pixels: neither trained on nor scored.
SEGMENTATION_VOID = 255


@dataclass(frozen=True)
class VOCObject:
    name: str
    box: tuple[float, float, float, float]  # 0-based pixel-edge xyxy, see the module docstring
    difficult: bool


def voc_year_dir(root: str | Path, year: str = "2007") -> Path:
    """``root/VOCdevkit/VOC<year>``: where one year's JPEGImages, Annotations and ImageSets live."""
    return Path(root) / "VOCdevkit" / f"VOC{year}"


def _check_split(root: Path, year: str, image_set: str, task: str, per_image: tuple[str, str]) -> list[str]:
    """Validate the arguments and one split's files: ``ImageSets/<task>/<image_set>.txt``, then for each listed
    id ``JPEGImages/<id>.jpg`` and ``<folder>/<id><suffix>`` of ``per_image``; return the ids."""
    if year not in VOC_YEARS:
        raise ValueError(f"year must be one of {VOC_YEARS}, got {year!r}")
    if image_set not in IMAGE_SETS or (image_set == "test" and year != "2007"):
        raise ValueError(
            f"image_set must be train/val/trainval (or test for 2007), got {image_set!r} for {year}"
        )
    folder, suffix = per_image
    expected = (
        f"expected {root}/VOCdevkit/VOC{year}/ with JPEGImages/<id>.jpg, {folder}/<id>{suffix} "
        f"and ImageSets/{task}/{image_set}.txt"
    )
    voc_dir = voc_year_dir(root, year)
    split_file = voc_dir / "ImageSets" / task / f"{image_set}.txt"
    for required in (voc_dir, voc_dir / "JPEGImages", voc_dir / folder, split_file):
        if not required.exists():
            raise FileNotFoundError(f"Pascal VOC: missing {required}; {expected}")
    image_ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    if not image_ids:
        raise ValueError(f"{split_file} lists no image ids")
    missing = [
        path
        for image_id in image_ids
        for path in (voc_dir / "JPEGImages" / f"{image_id}.jpg", voc_dir / folder / f"{image_id}{suffix}")
        if not path.is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"Pascal VOC: missing {missing[0]} ({len(missing)} files listed in {split_file} are absent); {expected}"
        )
    return image_ids


def check_voc_layout(root: str | Path, year: str, image_set: str) -> list[str]:
    """Validate the arguments and the VOCdevkit files for one split; return the split's image ids."""
    return _check_split(Path(root), year, image_set, "Main", ("Annotations", ".xml"))


def check_segmentation_layout(root: str | Path, year: str, image_set: str) -> list[str]:
    """Validate one segmentation split (``ImageSets/Segmentation``, ``SegmentationClass/<id>.png``); its ids."""
    return _check_split(Path(root), year, image_set, "Segmentation", ("SegmentationClass", ".png"))


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    unknown = [name for name in classes if name not in VOC_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be distinct Pascal VOC class names, got {list(classes)} (unknown: {unknown})"
        )
    return tuple(classes)


def parse_objects(annotation: dict[str, Any], source: str) -> list[VOCObject]:
    """Objects of one annotation as parsed by ``torchvision.datasets.VOCDetection.parse_voc_xml``."""
    objects = []
    for raw in annotation["annotation"].get("object", []):
        try:
            name = raw["name"]
            bndbox = raw["bndbox"]
            xmin, ymin, xmax, ymax = (float(bndbox[key]) for key in ("xmin", "ymin", "xmax", "ymax"))
            # Some VOC2012 objects carry no <difficult> tag; the devkit reads that as not difficult.
            difficult = bool(int(raw.get("difficult", "0")))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: malformed <object> {raw!r} ({error!r})") from error
        if name not in VOC_CLASSES:
            raise ValueError(
                f"{source}: unknown class name {name!r}; expected one of the 20 Pascal VOC classes"
            )
        if not (xmin <= xmax and ymin <= ymax):
            raise ValueError(f"{source}: box of {name!r} has xmin > xmax or ymin > ymax: {bndbox}")
        objects.append(VOCObject(name, (xmin - 1, ymin - 1, xmax, ymax), difficult))
    return objects


def read_voc_image(path: str) -> torch.Tensor:
    """The RGB image of ``path``; a file that does not decode (truncated, not an image) is a one-line error naming
    it. Evaluation does not skip it, as pretraining does: the benchmark's images are fixed."""
    try:
        return decode_image(path, mode=ImageReadMode.RGB)
    except (RuntimeError, OSError, ValueError) as error:
        # Raised in a DataLoader worker, where torchvision's error would not name the file.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if ".cpp:" in reason:  # torchvision's "<function>, <source file>:<line>, <message>"
            reason = reason.rsplit(", ", 1)[-1]
        raise ValueError(
            f"{path}: unreadable image ({reason}); replace it, or remove its id from the split's list"
        ) from None


class _VOCReader:
    """Decoded image and parsed objects of one VOC split, listed by torchvision's ``VOCDetection``."""

    def __init__(self, root: str | Path, year: str, image_set: str) -> None:
        self.image_ids = check_voc_layout(root, year, image_set)
        self._voc = VOCDetection(str(root), year=year, image_set=image_set, download=False)

    def __len__(self) -> int:
        return len(self._voc)

    def read(self, index: int) -> tuple[torch.Tensor, list[VOCObject]]:
        annotation_path = self._voc.annotations[index]
        image = read_voc_image(self._voc.images[index])
        try:
            root = parse_xml(annotation_path).getroot()
        except ParseError as error:
            # Raised in a DataLoader worker, where a ParseError would come back as a traceback without the file.
            raise ValueError(f"{annotation_path}: not a well-formed VOC annotation (XML: {error})") from None
        objects = parse_objects(VOCDetection.parse_voc_xml(root), annotation_path)
        height, width = image.shape[-2:]
        return image, clip_to_image(objects, width, height, annotation_path)


def clip_to_image(objects: list[VOCObject], width: int, height: int, source: str) -> list[VOCObject]:
    """``objects`` with their boxes cut to the ``width`` x ``height`` image; those wholly outside it are dropped.

    A box past the image edge is an annotation error (the devkit's boxes lie within the image); one warning per
    file and process names it.
    """
    kept, changed = [], []
    for obj in objects:
        x0, y0, x1, y1 = obj.box
        clipped = (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(x1, width), min(y1, height))
        if clipped == obj.box:
            kept.append(obj)
            continue
        inside = clipped[0] < clipped[2] and clipped[1] < clipped[3]
        changed.append(f"{obj.name} {obj.box} {'clipped' if inside else 'dropped'}")
        if inside:
            kept.append(VOCObject(obj.name, clipped, obj.difficult))
    if changed and source not in _reported_outside:
        _reported_outside.add(source)
        log.warning("%s: boxes outside the %dx%d image: %s", source, width, height, "; ".join(changed))
    return kept


class _VOCSplit(Dataset):
    """The images of one VOC split with their objects, restricted to ``classes``."""

    def __init__(self, root: str | Path, year: str, image_set: str, classes: Sequence[str]) -> None:
        self.classes = _check_classes(classes)
        self._reader = _VOCReader(root, year, image_set)
        self.image_ids = self._reader.image_ids

    def __len__(self) -> int:
        return len(self._reader)


class VOCClassification(_VOCSplit):
    """Multi-label VOC classification: ``(image, target, difficult_only)``.

    ``target`` is float (C,): 1 where the image has a non-difficult instance of the class, else 0.
    ``difficult_only`` is bool (C,): the class appears only as difficult objects (VOC's "0" label); evaluation
    ignores those entries (see ``evaluation.classification_map``). ``transform`` maps the uint8 image tensor.
    """

    def __init__(
        self,
        root: str | Path,
        year: str = "2007",
        image_set: str = "trainval",
        classes: Sequence[str] = VOC_CLASSES,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__(root, year, image_set, classes)
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, objects = self._reader.read(index)
        target = torch.zeros(len(self.classes))
        present = torch.zeros(len(self.classes), dtype=torch.bool)
        for obj in objects:
            if obj.name in self.classes:
                column = self.classes.index(obj.name)
                present[column] = True
                if not obj.difficult:
                    target[column] = 1.0
        difficult_only = present & (target == 0)
        if self.transform is not None:
            image = self.transform(image)
        return image, target, difficult_only


class VOCDetectionDataset(_VOCSplit):
    """VOC detection in torchvision's detection convention: ``(image, {"boxes", "labels", "difficult"})``.

    ``boxes`` is a float32 ``tv_tensors.BoundingBoxes`` (N, 4) in 0-based pixel-edge xyxy, so
    torchvision.transforms.v2 moves it with the image; ``labels`` int64 (N,) are 1-based indices into
    ``classes`` (0 = background); ``difficult`` bool (N,). Objects of classes outside ``classes`` are dropped;
    difficult ones are kept and flagged. ``transforms`` maps ``(image, target)`` jointly.
    """

    def __init__(
        self,
        root: str | Path,
        year: str = "2007",
        image_set: str = "trainval",
        classes: Sequence[str] = VOC_CLASSES,
        transforms: Callable[
            [torch.Tensor, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]
        ]
        | None = None,
    ) -> None:
        super().__init__(root, year, image_set, classes)
        self.transforms = transforms

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image, objects = self._reader.read(index)
        kept = [obj for obj in objects if obj.name in self.classes]
        boxes = torch.tensor([obj.box for obj in kept], dtype=torch.float32).reshape(-1, 4)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:])),
            "labels": torch.tensor([self.classes.index(obj.name) + 1 for obj in kept], dtype=torch.int64),
            "difficult": torch.tensor([obj.difficult for obj in kept], dtype=torch.bool),
        }
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def segmentation_lookup(classes: Sequence[str]) -> torch.Tensor:
    """VOC mask index (0-255) -> training label: 0 background, ``i + 1`` for ``classes[i]``,
    ``SEGMENTATION_VOID`` for void and for objects of VOC classes outside ``classes`` (neither background nor a
    studied class, so they are ignored), -1 for indices VOC never uses (21-254)."""
    lookup = torch.full((256,), -1, dtype=torch.int64)
    lookup[0] = 0
    lookup[SEGMENTATION_VOID] = SEGMENTATION_VOID
    for voc_label, name in enumerate(VOC_CLASSES, start=1):
        lookup[voc_label] = classes.index(name) + 1 if name in classes else SEGMENTATION_VOID
    return lookup


def read_class_mask(path: str | Path) -> np.ndarray:
    """The class indices of a VOC ``SegmentationClass`` PNG (palette or grey), as uint8 H x W."""
    try:
        with Image.open(path) as png:
            mode = png.mode
            indices = np.array(png, dtype=np.uint8) if mode in ("P", "L") else None
    except OSError as error:
        # Raised in a DataLoader worker, where PIL's error would come back as a traceback.
        raise ValueError(f"{path}: not a readable PNG ({error})") from None
    if indices is None:
        raise ValueError(
            f"{path}: expected a palette PNG of class indices as VOC's SegmentationClass, got mode {mode} "
            "(a colour rendering of the mask cannot be read as labels)"
        )
    return indices


class VOCSegmentationDataset(Dataset):
    """VOC semantic segmentation, listed by torchvision's ``VOCSegmentation``: ``(image, mask)``.

    ``image`` is a uint8 ``tv_tensors.Image`` (3 x H x W), ``mask`` an int64 ``tv_tensors.Mask`` (H x W) of
    ``segmentation_lookup(classes)`` labels, so torchvision.transforms.v2 ``transforms`` move both together.
    """

    def __init__(
        self,
        root: str | Path,
        year: str = "2012",
        image_set: str = "train",
        classes: Sequence[str] = VOC_CLASSES,
        transforms: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        self.classes = _check_classes(classes)
        self.image_ids = check_segmentation_layout(root, year, image_set)
        self._voc = VOCSegmentation(str(root), year=year, image_set=image_set, download=False)
        self._lookup = segmentation_lookup(self.classes)
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self._voc)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = read_voc_image(self._voc.images[index])
        mask_path = self._voc.masks[index]
        indices = torch.from_numpy(read_class_mask(mask_path)).long()
        if tuple(indices.shape) != tuple(image.shape[-2:]):
            raise ValueError(
                f"{mask_path}: mask is {tuple(indices.shape)} but its image is {tuple(image.shape[-2:])} (H x W)"
            )
        labels = self._lookup[indices]
        if bool((labels < 0).any()):
            unknown = sorted(set(indices[labels < 0].tolist()))
            raise ValueError(
                f"{mask_path}: class indices {unknown[:5]} are not VOC labels (0-20 and {SEGMENTATION_VOID})"
            )
        image, mask = tv_tensors.Image(image), tv_tensors.Mask(labels)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask


def collate_detection(
    batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Images and targets as lists (sizes and box counts differ), as torchvision detectors take them."""
    return [image for image, _ in batch], [target for _, target in batch]
