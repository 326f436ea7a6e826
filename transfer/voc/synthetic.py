"""A tiny synthetic Pascal VOC (2007, or 2011 / 2012 for segmentation) in the exact VOCdevkit layout, for tests and
smoke runs.

Each image is a textured, low-saturation background with 1-3 non-overlapping objects; each chosen class has
its own saturated colour and shape, so a small network can learn the task. Annotations follow VOC: 1-based
inclusive pixel boxes, ``truncated`` for objects cut by the border, ``difficult`` for some small objects, and
per-class image-set files with 1 / -1 / 0 (0: the class is present only as difficult objects). Every image is
also segmented as VOC does it: ``SegmentationClass/<id>.png`` is a palette PNG with VOC's colour map whose
indices are 0 (background), 1-20 (the class in the standard VOC order) and 255 (a void band along every object's
outline), listed in ``ImageSets/Segmentation/<split>.txt``.

Years: 2007 has train, val, trainval and test; 2011 and 2012 have no test split (their test annotations are not
public), so ``num_test`` must be 0 there. The readers take the same ``root`` either way.

``make_tiny_sbd`` adds a tiny SBD beside a tiny VOC2011, in SBD's layout (``benchmark_RELEASE/dataset/``: ``img/``,
``cls/<id>.mat`` with ``GTcls.Segmentation``, ``train.txt``, ``val.txt``), for voc-seg ``protocol=release``.

CLI: ``python -m transfer.voc.synthetic --out DIR [--year 2012 --num-train N --num-val N --num-test N
--classes a,b,c]``.
"""

from __future__ import annotations

import argparse
import colorsys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from transfer.voc.dataset import SEGMENTATION_VOID, VOC_CLASSES, VOC_YEARS, voc_year_dir

DEFAULT_CLASSES = ("aeroplane", "car", "cat", "dog", "person")
SHAPES = ("rectangle", "ellipse", "triangle", "diamond", "cross")
DIFFICULT_PROBABILITY = 0.3
TRUNCATED_PROBABILITY = 0.15
MAX_OBJECTS = 3
PLACEMENT_TRIES = 30
# Width of the void band along each outline, in pixels across: VOC's is about 5 on 500-pixel images.
VOID_BAND = 3


@dataclass(frozen=True)
class SyntheticObject:
    name: str
    xmin: int  # 1-based inclusive pixel box, as in VOC annotations
    ymin: int
    xmax: int
    ymax: int
    truncated: bool
    difficult: bool


def class_style(name: str, classes: Sequence[str]) -> tuple[str, tuple[int, int, int]]:
    """Shape and RGB colour of a class: by its position in ``classes``, so up to 5 classes differ in both."""
    position = list(classes).index(name)
    red, green, blue = colorsys.hsv_to_rgb(position / len(classes), 0.9, 0.95)
    return SHAPES[position % len(SHAPES)], (round(red * 255), round(green * 255), round(blue * 255))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    # Low-frequency colour blobs plus pixel noise: texture without competing with the saturated objects.
    grey = rng.uniform(70, 180)
    luminance = rng.normal(0, 30, size=(5, 5, 1))
    coarse = (grey + luminance + rng.normal(0, 12, size=(5, 5, 3))).clip(0, 255).astype(np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32
    )
    noisy = smooth + rng.normal(0, 12, size=smooth.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def _draw(
    draw: ImageDraw.ImageDraw, shape: str, colour: tuple[int, int, int] | int, box: tuple[int, int, int, int]
) -> None:
    x0, y0, x1, y1 = box
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "rectangle":
        draw.rectangle(box, fill=colour)
    elif shape == "ellipse":
        draw.ellipse(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(centre_x, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "diamond":
        draw.polygon([(centre_x, y0), (x1, centre_y), (centre_x, y1), (x0, centre_y)], fill=colour)
    else:
        arm_x, arm_y = (x1 - x0) / 6, (y1 - y0) / 6
        draw.rectangle((x0, centre_y - arm_y, x1, centre_y + arm_y), fill=colour)
        draw.rectangle((centre_x - arm_x, y0, centre_x + arm_x, y1), fill=colour)


def _overlaps(box: tuple[int, int, int, int], others: list[tuple[int, int, int, int]]) -> bool:
    return any(box[0] <= o[2] and o[0] <= box[2] and box[1] <= o[3] and o[1] <= box[3] for o in others)


def _place(
    rng: np.random.Generator, width: int, height: int, difficult: bool, truncated: bool
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(drawn box, visible box) in 0-based inclusive pixels; they differ only for a truncated object."""
    low, high = (0.12, 0.2) if difficult else (0.25, 0.5)
    box_w = int(rng.uniform(low, high) * width) + 4
    box_h = int(rng.uniform(low, high) * height) + 4
    if truncated:
        # Let up to 40% of the object hang over the left/top or right/bottom border.
        x0 = int(rng.integers(-int(0.4 * box_w), width - int(0.6 * box_w)))
        y0 = int(rng.integers(-int(0.4 * box_h), height - int(0.6 * box_h)))
    else:
        x0 = int(rng.integers(0, width - box_w))
        y0 = int(rng.integers(0, height - box_h))
    drawn = (x0, y0, x0 + box_w - 1, y0 + box_h - 1)
    visible = (max(drawn[0], 0), max(drawn[1], 0), min(drawn[2], width - 1), min(drawn[3], height - 1))
    return drawn, visible


def _image_size(rng: np.random.Generator, longest_side: int) -> tuple[int, int]:
    shortest_side = int(rng.uniform(0.6, 1.0) * longest_side)
    landscape = rng.random() < 0.7
    return (longest_side, shortest_side) if landscape else (shortest_side, longest_side)


def voc_palette() -> list[int]:
    """VOC's colour map as a flat ``putpalette`` list: index i's colour spreads i's bits, three at a time from
    the lowest, over the high bits of red, green and blue (0 black, 1 dark red, ..., 255 cream)."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        bits = index
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette += [red, green, blue]
    return palette


def _segmentation_mask(
    width: int, height: int, drawn: list[tuple[str, int, tuple[int, int, int, int]]]
) -> Image.Image:
    """The palette PNG of one image: each drawn (shape, VOC label, box) filled with its label, then a void band
    (``SEGMENTATION_VOID``) along every outline, as VOC marks its uncertain object borders."""
    mask = Image.new("L", (width, height), 0)
    band = Image.new("L", (width, height), 0)
    for shape, label, box in drawn:
        layer = Image.new("L", (width, height), 0)
        _draw(ImageDraw.Draw(layer), shape, 255, box)
        mask.paste(label, mask=layer)
        outline = ImageChops.subtract(
            layer.filter(ImageFilter.MaxFilter(VOID_BAND)), layer.filter(ImageFilter.MinFilter(VOID_BAND))
        )
        band = ImageChops.lighter(band, outline)
    mask.paste(SEGMENTATION_VOID, mask=band)
    indexed = Image.frombytes("P", mask.size, mask.tobytes())
    indexed.putpalette(voc_palette())
    return indexed


def _render(
    rng: np.random.Generator, first_class: str, classes: Sequence[str], longest_side: int
) -> tuple[Image.Image, list[SyntheticObject], Image.Image]:
    """(image, its objects, its segmentation mask); the mask draws nothing from ``rng``."""
    width, height = _image_size(rng, longest_side)
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    objects: list[SyntheticObject] = []
    drawn_shapes: list[tuple[str, int, tuple[int, int, int, int]]] = []
    taken: list[tuple[int, int, int, int]] = []
    for index in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        # The first object is a clear instance of a class chosen by the caller, so every class gets positives.
        name = first_class if index == 0 else str(rng.choice(list(classes)))
        difficult = index > 0 and rng.random() < DIFFICULT_PROBABILITY
        truncated = not difficult and rng.random() < TRUNCATED_PROBABILITY
        for _ in range(PLACEMENT_TRIES):
            drawn, visible = _place(rng, width, height, difficult, truncated)
            if not _overlaps(visible, taken):
                break
        else:
            continue
        shape, colour = class_style(name, classes)
        _draw(draw, shape, colour, drawn)
        drawn_shapes.append((shape, VOC_CLASSES.index(name) + 1, drawn))
        taken.append(visible)
        x0, y0, x1, y1 = visible
        objects.append(SyntheticObject(name, x0 + 1, y0 + 1, x1 + 1, y1 + 1, drawn != visible, difficult))
    return image, objects, _segmentation_mask(width, height, drawn_shapes)


def _annotation_xml(
    image_id: str, year: str, width: int, height: int, objects: list[SyntheticObject]
) -> ET.ElementTree:
    def child(parent: ET.Element, tag: str, text: str | int | None = None) -> ET.Element:
        element = ET.SubElement(parent, tag)
        if text is not None:
            element.text = str(text)
        return element

    root = ET.Element("annotation")
    child(root, "folder", f"VOC{year}")
    child(root, "filename", f"{image_id}.jpg")
    source = child(root, "source")
    child(source, "database", f"The VOC{year} Database")
    child(source, "annotation", f"PASCAL VOC{year}")
    child(source, "image", "synthetic")
    size = child(root, "size")
    child(size, "width", width)
    child(size, "height", height)
    child(size, "depth", 3)
    child(root, "segmented", 1)
    for obj in objects:
        element = child(root, "object")
        child(element, "name", obj.name)
        child(element, "pose", "Unspecified")
        child(element, "truncated", int(obj.truncated))
        child(element, "difficult", int(obj.difficult))
        bndbox = child(element, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            child(bndbox, tag, getattr(obj, tag))
    tree = ET.ElementTree(root)
    ET.indent(tree, space="\t")
    return tree


def _class_flag(name: str, objects: list[SyntheticObject]) -> int:
    """VOC per-class image-set value: 1 with a non-difficult instance, 0 with only difficult ones, else -1."""
    present = [obj for obj in objects if obj.name == name]
    if any(not obj.difficult for obj in present):
        return 1
    return 0 if present else -1


def _validate(
    num_train: int, num_val: int, num_test: int, classes: Sequence[str], image_size: int, year: str
) -> None:
    unknown = [name for name in classes if name not in VOC_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(
            f"classes must be distinct Pascal VOC class names, got {list(classes)} (unknown: {unknown})"
        )
    if year not in VOC_YEARS:
        raise ValueError(f"year must be one of {list(VOC_YEARS)}, got {year!r}")
    if year != "2007" and num_test != 0:
        raise ValueError(f"num_test must be 0 for VOC{year}, which has no test split, got {num_test}")
    counts = [("num_train", num_train), ("num_val", num_val)]
    for split, count in counts + ([("num_test", num_test)] if year == "2007" else []):
        if count < len(classes):
            raise ValueError(
                f"{split} must be at least len(classes)={len(classes)} so every class appears, got {count}"
            )
    if image_size < 48:
        raise ValueError(f"image_size must be at least 48 pixels, got {image_size}")


def make_tiny_voc(
    root: str | Path,
    num_train: int = 10,
    num_val: int = 10,
    num_test: int = 10,
    classes: Sequence[str] = DEFAULT_CLASSES,
    image_size: int = 128,
    seed: int = 0,
    year: str = "2007",
) -> Path:
    """Write a synthetic VOC<year> under ``root/VOCdevkit/VOC<year>`` and return ``root`` (what the readers take).

    ``image_size`` is each image's longer side; the shorter side varies per image, as in VOC. Image ids are
    VOC2007's ``000001`` or VOC2012's ``2012_000001``. Output is a function of the arguments only (same seed,
    same bytes).
    """
    _validate(num_train, num_val, num_test, classes, image_size, year)
    root = Path(root)
    voc_dir = voc_year_dir(root, year)
    if voc_dir.exists():
        raise FileExistsError(
            f"{voc_dir} already exists; make_tiny_voc writes a fresh dataset into an empty root"
        )
    image_dir, annotation_dir, mask_dir, sets_dir, segmentation_sets_dir = (
        voc_dir / "JPEGImages",
        voc_dir / "Annotations",
        voc_dir / "SegmentationClass",
        voc_dir / "ImageSets" / "Main",
        voc_dir / "ImageSets" / "Segmentation",
    )
    for directory in (image_dir, annotation_dir, mask_dir, sets_dir, segmentation_sets_dir):
        directory.mkdir(parents=True)

    rng = np.random.default_rng(seed)
    split_ids: dict[str, list[str]] = {}
    objects_by_id: dict[str, list[SyntheticObject]] = {}
    next_id = 1
    splits = [("train", num_train), ("val", num_val)] + ([("test", num_test)] if year == "2007" else [])
    for split, count in splits:
        split_ids[split] = []
        for index in range(count):
            image_id = f"{next_id:06d}" if year == "2007" else f"{year}_{next_id:06d}"
            next_id += 1
            image, objects, mask = _render(rng, classes[index % len(classes)], classes, image_size)
            image.save(image_dir / f"{image_id}.jpg", quality=92)
            mask.save(mask_dir / f"{image_id}.png")
            _annotation_xml(image_id, year, image.width, image.height, objects).write(
                annotation_dir / f"{image_id}.xml"
            )
            split_ids[split].append(image_id)
            objects_by_id[image_id] = objects
    split_ids["trainval"] = sorted(split_ids["train"] + split_ids["val"])

    for split, ids in split_ids.items():
        listing = "".join(f"{image_id}\n" for image_id in ids)
        (sets_dir / f"{split}.txt").write_text(listing)
        (segmentation_sets_dir / f"{split}.txt").write_text(listing)
        for name in classes:
            # VOC's own spacing: "000005 -1", "000007  1".
            lines = (f"{image_id} {_class_flag(name, objects_by_id[image_id]):2d}\n" for image_id in ids)
            (sets_dir / f"{name}_{split}.txt").write_text("".join(lines))
    return root


SBD_FOLDER = "benchmark_RELEASE"  # as SBD unpacks; what data.sbd_root points at


def _sbd_class_map(mask: Image.Image) -> np.ndarray:
    # SBD marks no void band: its pixels go to background, so SBD's and VOC's maps of one image differ, as they do.
    labels = np.array(mask, dtype=np.uint8)
    labels[labels == SEGMENTATION_VOID] = 0
    return labels


def _write_sbd_mat(path: Path, labels: np.ndarray) -> None:
    present = np.array(sorted(set(np.unique(labels).tolist()) - {0}), dtype=np.uint8).reshape(-1, 1)
    scipy.io.savemat(path, {"GTcls": {"Segmentation": labels, "CategoriesPresent": present}})


def make_tiny_sbd(
    root: str | Path,
    num_extra: int = 4,
    classes: Sequence[str] = DEFAULT_CLASSES,
    image_size: int = 128,
    seed: int = 0,
) -> Path:
    """Write a tiny SBD under ``root/benchmark_RELEASE`` over the tiny VOC2011 already in ``root``; return the
    SBD root (what ``data.sbd_root`` takes).

    Like the real one it annotates VOC2011 images and some more: VOC2011 segmentation train images at even
    positions go to SBD train, the others to SBD val; the first third of VOC2011 val (at least one) to SBD train
    (so seg11valid is the rest), and ``num_extra`` new images (ids ``2011_9xxxxx``) to SBD train.
    """
    root = Path(root)
    voc_dir = voc_year_dir(root, "2011")
    lists = voc_dir / "ImageSets" / "Segmentation"
    if not (lists / "train.txt").is_file():
        raise FileNotFoundError(
            f"{lists / 'train.txt'} is missing: write the tiny VOC2011 first (make_tiny_voc)"
        )
    sbd_root = root / SBD_FOLDER
    dataset = sbd_root / "dataset"
    if dataset.exists():
        raise FileExistsError(f"{dataset} already exists; make_tiny_sbd writes a fresh SBD")
    (dataset / "img").mkdir(parents=True)
    (dataset / "cls").mkdir()
    voc_train, voc_val = ((lists / f"{split}.txt").read_text().split() for split in ("train", "val"))
    sbd_train = voc_train[::2] + voc_val[: max(1, len(voc_val) // 3)]
    sbd_val = voc_train[1::2] + voc_val[max(1, len(voc_val) // 3) :]
    for image_id in voc_train + voc_val:
        (dataset / "img" / f"{image_id}.jpg").write_bytes(
            (voc_dir / "JPEGImages" / f"{image_id}.jpg").read_bytes()
        )
        with Image.open(voc_dir / "SegmentationClass" / f"{image_id}.png") as mask:
            _write_sbd_mat(dataset / "cls" / f"{image_id}.mat", _sbd_class_map(mask))
    rng = np.random.default_rng(seed + 9000)
    for index in range(num_extra):
        image_id = f"2011_9{index + 1:05d}"
        image, _, mask = _render(rng, classes[index % len(classes)], classes, image_size)
        image.save(dataset / "img" / f"{image_id}.jpg", quality=92)
        _write_sbd_mat(dataset / "cls" / f"{image_id}.mat", _sbd_class_map(mask))
        sbd_train.append(image_id)
    for split, ids in (("train", sbd_train), ("val", sbd_val)):
        (dataset / f"{split}.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    return sbd_root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write a tiny synthetic Pascal VOC2007 (or VOC2012) in the VOCdevkit layout."
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="root directory; VOCdevkit/VOC<year> is created in it"
    )
    parser.add_argument("--year", default="2007", choices=VOC_YEARS)
    parser.add_argument("--num-train", type=int, default=10)
    parser.add_argument("--num-val", type=int, default=10)
    parser.add_argument(
        "--num-test", type=int, default=None, help="test images (2007 only; default 10 for 2007, 0 for 2012)"
    )
    parser.add_argument(
        "--classes", default=",".join(DEFAULT_CLASSES), help="comma-separated VOC class names"
    )
    parser.add_argument("--image-size", type=int, default=128, help="longer image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    num_test = args.num_test if args.num_test is not None else (10 if args.year == "2007" else 0)
    root = make_tiny_voc(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        num_test=num_test,
        classes=tuple(name.strip() for name in args.classes.split(",")),
        image_size=args.image_size,
        seed=args.seed,
        year=args.year,
    )
    print(f"wrote {voc_year_dir(root, args.year)}")


if __name__ == "__main__":
    main()
