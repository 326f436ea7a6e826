"""The synthetic VOC generator writes the real VOCdevkit layout (2007, and 2012 without a test split), and
annotations and segmentation masks that match the pixels."""

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import VOCDetection, VOCSegmentation

from transfer.voc.dataset import SEGMENTATION_VOID, VOC_CLASSES, voc_year_dir
from transfer.voc.synthetic import class_style, main, make_tiny_voc

CLASSES = ("aeroplane", "car", "cat", "dog", "person")
SPLITS = ("train", "val", "trainval", "test")


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_voc(
        tmp_path_factory.mktemp("voc"), num_train=12, num_val=6, num_test=12, classes=CLASSES, image_size=96
    )


def _split_ids(root: Path, split: str) -> list[str]:
    return (voc_year_dir(root) / "ImageSets" / "Main" / f"{split}.txt").read_text().split()


def _objects(root: Path, image_id: str) -> list[dict]:
    annotation = ET.parse(voc_year_dir(root) / "Annotations" / f"{image_id}.xml").getroot()
    return [
        {
            "name": obj.findtext("name"),
            "difficult": obj.findtext("difficult") == "1",
            "truncated": obj.findtext("truncated") == "1",
            "box": tuple(int(obj.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")),
        }
        for obj in annotation.iter("object")
    ]


def test_split_files_follow_voc2007(voc_root: Path) -> None:
    train, val, trainval, test = (_split_ids(voc_root, split) for split in SPLITS)
    assert (len(train), len(val), len(test)) == (12, 6, 12)
    assert trainval == sorted(train + val)
    assert not set(trainval) & set(test)
    assert all(len(image_id) == 6 and image_id.isdigit() for image_id in trainval + test)
    for image_id in trainval + test:
        assert (voc_year_dir(voc_root) / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert (voc_year_dir(voc_root) / "Annotations" / f"{image_id}.xml").is_file()


def test_per_class_files_encode_positive_negative_and_difficult_only(voc_root: Path) -> None:
    seen_flags = set()
    for split in SPLITS:
        ids = _split_ids(voc_root, split)
        for name in CLASSES:
            lines = (
                (voc_year_dir(voc_root) / "ImageSets" / "Main" / f"{name}_{split}.txt")
                .read_text()
                .splitlines()
            )
            assert [line.split()[0] for line in lines] == ids
            for line in lines:
                image_id, flag = line.split()
                present = [obj for obj in _objects(voc_root, image_id) if obj["name"] == name]
                expected = 1 if any(not o["difficult"] for o in present) else (0 if present else -1)
                assert int(flag) == expected
                # VOC's fixed-width format: "000005 -1" and "000007  1".
                assert line == f"{image_id} {expected:2d}"
                seen_flags.add(expected)
    assert seen_flags == {1, 0, -1}


def test_every_class_has_a_clear_positive_in_every_split(voc_root: Path) -> None:
    for split in SPLITS:
        clear = {
            o["name"]
            for i in _split_ids(voc_root, split)
            for o in _objects(voc_root, i)
            if not o["difficult"]
        }
        assert clear == set(CLASSES)


def test_annotations_match_the_images(voc_root: Path) -> None:
    counts = {"difficult": 0, "truncated": 0}
    for image_id in _split_ids(voc_root, "trainval") + _split_ids(voc_root, "test"):
        image = Image.open(voc_year_dir(voc_root) / "JPEGImages" / f"{image_id}.jpg")
        size = ET.parse(voc_year_dir(voc_root) / "Annotations" / f"{image_id}.xml").getroot().find("size")
        assert (image.width, image.height) == (int(size.findtext("width")), int(size.findtext("height")))
        assert max(image.size) == 96
        pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
        for obj in _objects(voc_root, image_id):
            xmin, ymin, xmax, ymax = obj["box"]
            assert 1 <= xmin < xmax <= image.width and 1 <= ymin < ymax <= image.height
            touches_border = xmin == 1 or ymin == 1 or xmax == image.width or ymax == image.height
            assert touches_border or not obj["truncated"]
            counts["difficult"] += obj["difficult"]
            counts["truncated"] += obj["truncated"]
            if not obj["truncated"]:
                # The centre of every (untruncated) shape is inside it; boxes are 1-based, pixels 0-based.
                centre = pixels[(ymin + ymax) // 2 - 1, (xmin + xmax) // 2 - 1]
                _, colour = class_style(obj["name"], CLASSES)
                assert np.abs(centre - np.array(colour)).max() < 40, (image_id, obj)
    assert counts["difficult"] > 0 and counts["truncated"] > 0


@pytest.mark.parametrize("split", SPLITS)
def test_torchvision_vocdetection_reads_it(voc_root: Path, split: str) -> None:
    dataset = VOCDetection(str(voc_root), year="2007", image_set=split, download=False)
    assert len(dataset) == len(_split_ids(voc_root, split))
    image, target = dataset[0]
    annotation = target["annotation"]
    assert annotation["filename"] == f"{_split_ids(voc_root, split)[0]}.jpg"
    assert image.size == (int(annotation["size"]["width"]), int(annotation["size"]["height"]))
    assert [obj["name"] for obj in annotation["object"]] == [
        obj["name"] for obj in _objects(voc_root, _split_ids(voc_root, split)[0])
    ]


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_output_is_a_function_of_the_seed(tmp_path: Path) -> None:
    kwargs = {"num_train": 2, "num_val": 2, "num_test": 2, "classes": ("dog", "cat"), "image_size": 64}
    first = make_tiny_voc(tmp_path / "a", seed=3, **kwargs)
    again = make_tiny_voc(tmp_path / "b", seed=3, **kwargs)
    other = make_tiny_voc(tmp_path / "c", seed=4, **kwargs)
    assert _digest(first) == _digest(again) != _digest(other)


def test_cli_writes_the_requested_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(
        [
            "--out",
            str(tmp_path),
            "--num-train",
            "5",
            "--num-val",
            "6",
            "--num-test",
            "7",
            "--image-size",
            "64",
        ]
    )
    main_dir = voc_year_dir(tmp_path) / "ImageSets" / "Main"
    assert [len((main_dir / f"{s}.txt").read_text().split()) for s in SPLITS] == [5, 6, 11, 7]
    assert max(Image.open(next((voc_year_dir(tmp_path) / "JPEGImages").glob("*.jpg"))).size) == 64
    assert "VOCdevkit/VOC2007" in capsys.readouterr().out


def test_main_classes_option(tmp_path: Path) -> None:
    main(
        [
            "--out",
            str(tmp_path),
            "--num-train",
            "2",
            "--num-val",
            "2",
            "--num-test",
            "2",
            "--classes",
            "bus,sheep",
        ]
    )
    main_dir = voc_year_dir(tmp_path) / "ImageSets" / "Main"
    assert sorted(p.name for p in main_dir.glob("*_train.txt")) == ["bus_train.txt", "sheep_train.txt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ("dog", "kitten")}, "kitten"),
        ({"classes": ("dog", "dog")}, "distinct"),
        ({"num_train": 1, "classes": ("dog", "cat")}, "num_train"),
        ({"image_size": 20}, "image_size"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_tiny_voc(tmp_path, **kwargs)


def test_refuses_to_write_over_an_existing_dataset(tmp_path: Path) -> None:
    make_tiny_voc(tmp_path, num_train=5, num_val=5, num_test=5, image_size=48)
    with pytest.raises(FileExistsError, match="VOC2007"):
        make_tiny_voc(tmp_path, num_train=5, num_val=5, num_test=5, image_size=48)


def _mask(root: Path, image_id: str, year: str = "2007") -> Image.Image:
    return Image.open(voc_year_dir(root, year) / "SegmentationClass" / f"{image_id}.png")


def test_segmentation_masks_are_voc_palette_pngs_that_match_the_objects(voc_root: Path) -> None:
    labels = {VOC_CLASSES.index(name) + 1 for name in CLASSES}
    for split in SPLITS:
        listed = (voc_year_dir(voc_root) / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        assert listed == _split_ids(voc_root, split)
    for image_id in _split_ids(voc_root, "trainval") + _split_ids(voc_root, "test"):
        mask = _mask(voc_root, image_id)
        image = Image.open(voc_year_dir(voc_root) / "JPEGImages" / f"{image_id}.jpg")
        assert mask.mode == "P" and mask.size == image.size
        palette = mask.getpalette()
        # VOC's colour map: background black, aeroplane (1) dark red, person (15) pink, void (255) cream.
        assert palette[0:3] == [0, 0, 0] and palette[3:6] == [128, 0, 0]
        assert palette[45:48] == [192, 128, 128] and palette[765:768] == [224, 224, 192]
        indices = np.asarray(mask)
        assert set(np.unique(indices)) <= {0, SEGMENTATION_VOID} | labels
        assert (indices == SEGMENTATION_VOID).any() and (indices == 0).any()
        for obj in _objects(voc_root, image_id):
            xmin, ymin, xmax, ymax = obj["box"]
            if not obj["truncated"]:
                # The centre of every whole shape carries its class label, difficult or not (VOC segments both).
                assert (
                    indices[(ymin + ymax) // 2 - 1, (xmin + xmax) // 2 - 1]
                    == VOC_CLASSES.index(obj["name"]) + 1
                )
        # Every labelled pixel lies inside a box of its class: erased box by box, only background and void remain.
        unexplained = indices.copy()
        for obj in _objects(voc_root, image_id):
            xmin, ymin, xmax, ymax = obj["box"]
            inside = unexplained[ymin - 1 : ymax, xmin - 1 : xmax]
            inside[inside == VOC_CLASSES.index(obj["name"]) + 1] = 0
        assert set(np.unique(unexplained)) <= {0, SEGMENTATION_VOID}


def test_voc2012_has_no_test_split_and_torchvision_reads_its_segmentation(tmp_path: Path) -> None:
    root = make_tiny_voc(
        tmp_path, num_train=3, num_val=2, num_test=0, classes=("cat", "dog"), image_size=48, year="2012"
    )
    year_dir = voc_year_dir(root, "2012")
    assert not (voc_year_dir(root, "2007")).exists()
    assert sorted(path.name for path in (year_dir / "ImageSets" / "Segmentation").iterdir()) == [
        "train.txt",
        "trainval.txt",
        "val.txt",
    ]
    train_ids = (year_dir / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert train_ids == ["2012_000001", "2012_000002", "2012_000003"]
    annotation = ET.parse(year_dir / "Annotations" / "2012_000001.xml").getroot()
    assert annotation.findtext("folder") == "VOC2012" and annotation.findtext("segmented") == "1"
    dataset = VOCSegmentation(str(root), year="2012", image_set="val", download=False)
    image, mask = dataset[1]
    assert len(dataset) == 2 and image.size == mask.size and mask.mode == "P"
    with pytest.raises(ValueError, match="num_test must be 0 for VOC2012"):
        make_tiny_voc(tmp_path / "again", num_test=2, year="2012")
    with pytest.raises(ValueError, match="year"):
        make_tiny_voc(tmp_path / "again", year="2010")
