"""ImageNet-style folder trees: classes, recursion, extensions, determinism and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lit_colorization.data import ImageFolderDataset, SkipUnreadableCollate
from lit_colorization.data.crops import center_crop
from lit_colorization.data.listing import FLAT_CLASS_NAME, list_images

CROP = 16


def save_colour(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (24, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image.save(path, format="PNG" if path.suffix.lower() == ".png" else None)


# Files created in a shuffled order; label = class folder, colour encodes the class for checking crops.
CLASS_TREE = {
    "zebra/b.JPG": 2,
    "ant/nested/deeper/x.webp": 0,
    "ant/a.jpeg": 0,
    "moth/one.PNG": 1,
    "ant/nested/c.tif": 0,
    "zebra/sub/a.bmp": 2,
    "moth/two.TIFF": 1,
    "ant/z.png": 0,
}
CLASS_COLOURS = {0: (200, 30, 30), 1: (30, 200, 30), 2: (30, 30, 200)}


def make_class_tree(root: Path) -> None:
    for relative, label in CLASS_TREE.items():
        save_colour(root / "train" / relative, CLASS_COLOURS[label])
    (root / "train" / "ant" / "readme.txt").write_text("not an image")
    (root / "train" / "moth" / ".hidden.png").write_bytes(b"")
    (root / "train" / "empty_class_folder").mkdir()
    (root / "train" / "ant" / "nested" / "labels.json").write_text("{}")


def test_class_folders_give_sorted_labels_recursively(tmp_path: Path) -> None:
    make_class_tree(tmp_path)
    dataset = ImageFolderDataset(tmp_path, "train", crop_size=CROP, train=False)
    assert dataset.classes == ["ant", "moth", "zebra"]
    listed = {
        os.path.relpath(dataset.path(i), tmp_path / "train"): int(dataset.labels[i])
        for i in range(len(dataset))
    }
    assert listed == {relative.replace("/", os.sep): label for relative, label in CLASS_TREE.items()}
    for index in range(len(dataset)):
        rgb, label = dataset[index]
        assert label == int(dataset.labels[index])
        assert rgb.shape == (3, CROP, CROP) and rgb.dtype == torch.uint8
        # Lossy formats (jpeg, webp) move flat colours by a few levels at most.
        assert (rgb.to(torch.int64) - torch.tensor(CLASS_COLOURS[label])[:, None, None]).abs().max() <= 4


def test_listing_is_sorted_component_by_component_and_repeatable(tmp_path: Path) -> None:
    make_class_tree(tmp_path)
    first = ImageFolderDataset(tmp_path, "train", crop_size=CROP)
    second = ImageFolderDataset(tmp_path, "train", crop_size=CROP)
    paths = [first.path(i) for i in range(len(first))]
    assert paths == [second.path(i) for i in range(len(second))]
    relative = [os.path.relpath(path, tmp_path / "train") for path in paths]
    assert relative == sorted(relative, key=lambda path: path.split(os.sep))


def test_list_images_filters_extensions_case_insensitively(tmp_path: Path) -> None:
    for name in [
        "a.JPG",
        "b.jpeg",
        "c.Png",
        "d.bmp",
        "e.tif",
        "f.TIFF",
        "g.webp",
        "h.gif",
        "i.txt",
        "j.jpg.bak",
    ]:
        (tmp_path / name).write_bytes(b"")
    assert list_images(str(tmp_path)) == ["a.JPG", "b.jpeg", "c.Png", "d.bmp", "e.tif", "f.TIFF", "g.webp"]


def test_tree_without_class_folders_has_one_class_and_label_zero(tmp_path: Path) -> None:
    for index in range(5):
        save_colour(tmp_path / "val" / f"img_{index}.png", (10 * index, 50, 90))
    dataset = ImageFolderDataset(tmp_path, "val", crop_size=CROP, train=False)
    assert dataset.classes == [FLAT_CLASS_NAME] and len(dataset) == 5
    assert dataset.labels.tolist() == [0] * 5 and [dataset[i][1] for i in range(5)] == [0] * 5


def test_training_crops_depend_on_seed_epoch_and_index_and_validation_is_centred(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    (tmp_path / "train").mkdir()
    Image.fromarray(image).save(tmp_path / "train" / "noise.png")
    train = ImageFolderDataset(tmp_path, "train", crop_size=CROP, seed=3)
    crops = {epoch: [] for epoch in range(2)}
    for epoch in crops:
        train.set_epoch(epoch)
        crops[epoch] = [train[0][0] for _ in range(2)]
    assert torch.equal(crops[0][0], crops[0][1]) and torch.equal(crops[1][0], crops[1][1])
    assert not torch.equal(crops[0][0], crops[1][0])
    other_seed = ImageFolderDataset(tmp_path, "train", crop_size=CROP, seed=4)
    other_seed.set_epoch(1)
    assert not torch.equal(other_seed[0][0], crops[1][0])
    val = ImageFolderDataset(tmp_path, "train", crop_size=CROP, train=False)
    np.testing.assert_array_equal(val[0][0].permute(1, 2, 0).numpy(), center_crop(image, CROP))


def test_missing_root_split_or_images_give_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data root .*nowhere") as raised:
        ImageFolderDataset(tmp_path / "nowhere", "train", crop_size=CROP)
    assert "\n" not in str(raised.value)
    with pytest.raises(FileNotFoundError, match=r"split directory .*val does not exist"):
        ImageFolderDataset(tmp_path, "val", crop_size=CROP)
    (tmp_path / "train" / "cls").mkdir(parents=True)
    (tmp_path / "train" / "cls" / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no image files .* found under .*train"):
        ImageFolderDataset(tmp_path, "train", crop_size=CROP)


def test_top_level_images_next_to_class_folders_are_refused(tmp_path: Path) -> None:
    save_colour(tmp_path / "train" / "loose.jpg", (1, 2, 3))
    save_colour(tmp_path / "train" / "cat" / "a.jpg", (1, 2, 3))
    with pytest.raises(
        ValueError, match=r"both image files \(e.g. loose.jpg\) and class sub-folders \(e.g. cat\)"
    ):
        ImageFolderDataset(tmp_path, "train", crop_size=CROP)


def test_dataloader_with_two_workers_yields_batch_dicts(tmp_path: Path) -> None:
    make_class_tree(tmp_path)
    dataset = ImageFolderDataset(tmp_path, "train", crop_size=CROP)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=SkipUnreadableCollate(CROP))
    batches = list(loader)
    assert [len(batch["rgb"]) for batch in batches] == [3, 3, 2]
    assert torch.cat([batch["label"] for batch in batches]).tolist() == dataset.labels.tolist()
    for batch in batches:
        assert set(batch) == {"rgb", "label", "skipped"} and batch["skipped"].item() == 0
        assert batch["rgb"].dtype == torch.uint8 and batch["rgb"].shape[1:] == (3, CROP, CROP)
    # Workers produce the same crops as the main process: nothing depends on per-process random state.
    assert torch.equal(batches[0]["rgb"], torch.stack([dataset[i][0] for i in range(3)]))
