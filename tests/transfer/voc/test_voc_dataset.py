"""VOC readers: targets agree with the VOC files, boxes follow the stated convention, bad layouts fail."""

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from transfer.voc.dataset import (
    VOC_CLASSES,
    VOCClassification,
    VOCDetectionDataset,
    collate_detection,
    voc_year_dir,
)
from transfer.voc.synthetic import make_tiny_voc

CLASSES = ("cat", "dog", "person", "car")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_voc(
        tmp_path_factory.mktemp("voc"), num_train=8, num_val=8, num_test=8, classes=CLASSES, image_size=72
    )


def _class_file_flags(root: Path, name: str, split: str) -> dict[str, int]:
    lines = (voc_year_dir(root) / "ImageSets" / "Main" / f"{name}_{split}.txt").read_text().splitlines()
    return {line.split()[0]: int(line.split()[1]) for line in lines}


def test_voc_classes_are_the_standard_twenty() -> None:
    assert len(VOC_CLASSES) == 20 == len(set(VOC_CLASSES))
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person" and VOC_CLASSES[-1] == "tvmonitor"
    assert list(VOC_CLASSES) == sorted(VOC_CLASSES)


@pytest.mark.parametrize("split", ["trainval", "test"])
def test_classification_targets_match_the_per_class_files(voc_root: Path, split: str) -> None:
    # Column order follows `classes`, not VOC's order.
    classes = ("person", "cat", "dog", "car")
    dataset = VOCClassification(voc_root, "2007", split, classes=classes)
    flags = {name: _class_file_flags(voc_root, name, split) for name in classes}
    assert len(dataset) == len(flags["cat"])
    difficult_only_seen = 0
    for index in range(len(dataset)):
        image, target, difficult_only = dataset[index]
        image_id = dataset.image_ids[index]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        assert target.dtype == torch.float32 and difficult_only.dtype == torch.bool
        assert target.tolist() == [float(flags[name][image_id] == 1) for name in classes]
        assert difficult_only.tolist() == [flags[name][image_id] == 0 for name in classes]
        difficult_only_seen += int(difficult_only.sum())
    # The fixture's seed yields difficult-only cases in both splits; without them this test would prove less.
    assert difficult_only_seen > 0


def test_classification_with_all_twenty_classes_is_zero_outside_the_generated_ones(voc_root: Path) -> None:
    dataset = VOCClassification(voc_root, "2007", "train")
    _, target, _ = dataset[0]
    assert target.shape == (20,)
    assert set(torch.nonzero(target).flatten().tolist()) <= {VOC_CLASSES.index(name) for name in CLASSES}
    assert target.sum() >= 1


def test_classification_transform_receives_the_uint8_image(voc_root: Path) -> None:
    dataset = VOCClassification(voc_root, "2007", "val", classes=CLASSES, transform=v2.Resize((32, 32)))
    image, _, _ = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8


@pytest.mark.parametrize("split", ["train", "test"])
def test_detection_targets_follow_the_annotations(voc_root: Path, split: str) -> None:
    dataset = VOCDetectionDataset(voc_root, "2007", split, classes=CLASSES)
    for index in range(len(dataset)):
        image, target = dataset[index]
        annotation = ET.parse(
            voc_year_dir(voc_root) / "Annotations" / f"{dataset.image_ids[index]}.xml"
        ).getroot()
        height, width = int(annotation.findtext("size/height")), int(annotation.findtext("size/width"))
        assert image.shape == (3, height, width) and image.dtype == torch.uint8
        objects = annotation.findall("object")
        # VOC's 1-based inclusive xmin..xmax becomes the pixel-edge interval [xmin - 1, xmax].
        expected_boxes = [
            [
                int(obj.findtext(f"bndbox/{key}")) - offset
                for key, offset in (("xmin", 1), ("ymin", 1), ("xmax", 0), ("ymax", 0))
            ]
            for obj in objects
        ]
        assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (len(objects), 4)
        assert target["boxes"].tolist() == expected_boxes
        assert target["labels"].dtype == torch.int64
        assert target["labels"].tolist() == [CLASSES.index(obj.findtext("name")) + 1 for obj in objects]
        assert target["difficult"].tolist() == [obj.findtext("difficult") == "1" for obj in objects]
        assert target["boxes"][:, 2].max() <= width and target["boxes"][:, 3].max() <= height


def test_detection_keeps_only_requested_classes(voc_root: Path) -> None:
    dataset = VOCDetectionDataset(voc_root, "2007", "trainval", classes=("dog",))
    everything = VOCDetectionDataset(voc_root, "2007", "trainval", classes=CLASSES)
    dog_label = CLASSES.index("dog") + 1
    for index in range(len(dataset)):
        _, target = dataset[index]
        _, full = everything[index]
        assert target["labels"].tolist() == [1] * int((full["labels"] == dog_label).sum())
        assert torch.equal(target["boxes"], full["boxes"][full["labels"] == dog_label])


def test_detection_boxes_move_with_v2_transforms(voc_root: Path) -> None:
    plain = VOCDetectionDataset(voc_root, "2007", "test", classes=CLASSES)
    flipped = VOCDetectionDataset(
        voc_root, "2007", "test", classes=CLASSES, transforms=v2.RandomHorizontalFlip(p=1.0)
    )
    image, target = plain[0]
    flipped_image, flipped_target = flipped[0]
    width = image.shape[-1]
    assert torch.equal(flipped_image, image.flip(-1))
    boxes = target["boxes"]
    expected = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    assert torch.equal(flipped_target["boxes"], expected)
    assert torch.equal(flipped_target["labels"], target["labels"])


def test_collate_detection_keeps_variable_sizes_as_lists(voc_root: Path) -> None:
    dataset = VOCDetectionDataset(voc_root, "2007", "test", classes=CLASSES)
    images, targets = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_detection)))
    assert len(images) == len(targets) == 4
    for index, (image, target) in enumerate(zip(images, targets, strict=True)):
        assert torch.equal(image, dataset[index][0])
        assert torch.equal(target["boxes"], dataset[index][1]["boxes"])
    assert len({tuple(image.shape) for image in images}) > 1


def test_missing_vocdevkit_names_the_path_and_the_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        VOCDetectionDataset(tmp_path, "2007", "test")
    message = str(error.value)
    assert "\n" not in message
    assert str(voc_year_dir(tmp_path)) in message
    assert "JPEGImages" in message and "Annotations" in message and "ImageSets/Main/test.txt" in message


def test_missing_split_file_and_missing_image_are_reported(voc_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(voc_root, copy)
    (voc_year_dir(copy) / "ImageSets" / "Main" / "val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val.txt"):
        VOCClassification(copy, "2007", "val")
    first_test_id = (voc_year_dir(copy) / "ImageSets" / "Main" / "test.txt").read_text().split()[0]
    (voc_year_dir(copy) / "JPEGImages" / f"{first_test_id}.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=f"{first_test_id}.jpg"):
        VOCDetectionDataset(copy, "2007", "test")


def test_unknown_class_in_an_annotation_is_reported(voc_root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(voc_root, copy)
    image_id = (voc_year_dir(copy) / "ImageSets" / "Main" / "train.txt").read_text().split()[0]
    xml_path = voc_year_dir(copy) / "Annotations" / f"{image_id}.xml"
    tree = ET.parse(xml_path)
    tree.getroot().find("object/name").text = "kitten"
    tree.write(xml_path)
    with pytest.raises(ValueError, match=f"{image_id}.xml.*kitten"):
        VOCDetectionDataset(copy, "2007", "train")[0]


@pytest.mark.parametrize(
    ("year", "image_set", "classes", "message"),
    [
        ("2010", "train", VOC_CLASSES, "year"),
        ("2012", "test", VOC_CLASSES, "image_set"),
        ("2007", "minival", VOC_CLASSES, "image_set"),
        ("2007", "train", ("dog", "kitten"), "kitten"),
    ],
)
def test_bad_arguments_are_rejected(
    voc_root: Path, year: str, image_set: str, classes: tuple, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        VOCClassification(voc_root, year, image_set, classes=classes)


def test_a_truncated_jpeg_is_one_line_naming_the_file(voc_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "voc"
    shutil.copytree(voc_root, root)
    dataset = VOCClassification(root, "2007", "test", classes=CLASSES)
    image = voc_year_dir(root) / "JPEGImages" / f"{dataset.image_ids[0]}.jpg"
    image.write_bytes(image.read_bytes()[:300])
    with pytest.raises(ValueError) as raised:
        dataset[0]
    assert str(raised.value).startswith(f"{image}: unreadable image (") and "truncated" in str(raised.value)
    assert "\n" not in str(raised.value) and ".cpp" not in str(raised.value)
    detection = VOCDetectionDataset(root, "2007", "test", classes=CLASSES)
    with pytest.raises(ValueError, match=f"^{image}: unreadable image"):
        detection[0]
