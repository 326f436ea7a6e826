"""The release's rescaling crops (transfer/voc/rescale.py): ImageNet crops as its data layer gave them, and the
key that asks for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import ConfigError
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import write_checkpoint
from tests.transfer.voc.test_voc_cls import tiny_data_overrides
from transfer.cli.voc_cls import main as voc_cls_main
from transfer.voc.rescale import RESCALE_CROPS, imagenet_rescale_crops
from transfer.voc.voc_config import VOC_CLS, VOC_DET

IMAGES = 2 * RESCALE_CROPS


def coded_imagenet(folder: Path, count: int = IMAGES) -> Path:
    """``count`` PNGs in class folders: green codes the image's index, the left half red 0 and the right 255."""
    for index in range(count):
        pixels = np.zeros((30, 40, 3), np.uint8)
        pixels[..., 1] = index % 250
        pixels[:, 20:, 0] = 255
        path = folder / f"n{index // 100:04d}" / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return folder


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return coded_imagenet(tmp_path_factory.mktemp("imagenet") / "train")


def test_imagenet_crops_are_every_other_image_squashed_cropped_and_mirrored_half_the_time(
    imagenet: Path,
) -> None:
    crops = imagenet_rescale_crops(imagenet, torch.Generator().manual_seed(0))
    assert crops.shape == (RESCALE_CROPS, 3, 227, 227) and crops.dtype == torch.uint8
    # 1,600 images sorted by name: the 800 taken are evenly spread, every other one.
    assert crops[:, 1, 100, 100].tolist() == [(2 * index) % 250 for index in range(RESCALE_CROPS)]
    # Squashed to 256 x 256, the red edge sits at column 128: a 227 crop always holds both halves.
    mirrored = crops[:, 0, 113, 0] > 128
    assert torch.equal(mirrored, crops[:, 0, 113, -1] < 128)
    assert 0.4 < mirrored.float().mean() < 0.6
    again = imagenet_rescale_crops(imagenet, torch.Generator().manual_seed(0))
    assert torch.equal(crops, again)


def test_a_folder_with_too_few_images_is_one_line_naming_the_key(tmp_path: Path) -> None:
    folder = coded_imagenet(tmp_path / "few", count=12)
    with pytest.raises(
        ValueError, match=r"^config key 'rescale_images': .*few holds 12 images, .* takes 800"
    ):
        imagenet_rescale_crops(folder, torch.Generator())


def test_rescale_images_is_a_folder_for_the_protocols_that_rescale_as_the_release(tmp_path: Path) -> None:
    folder = tmp_path / "imagenet"
    folder.mkdir()
    assert VOC_CLS.load(None, [f"rescale_images={folder}"]).rescale_images == str(folder)
    assert VOC_DET.load("voc07", [f"rescale_images={folder}", f"data.root={tmp_path}"]).rescale_images
    with pytest.raises(ConfigError, match="rescale_images.*null or a folder of ImageNet training images"):
        VOC_CLS.load(None, [f"rescale_images={tmp_path / 'missing'}"])
    with pytest.raises(ConfigError, match="rescale_images.*null unless protocol is one of"):
        VOC_CLS.load(None, [f"rescale_images={folder}", "protocol=finetune"])
    with pytest.raises(ConfigError, match="rescale_images.*null when rescale=false"):
        VOC_CLS.load(None, [f"rescale_images={folder}", "rescale=false"])


@pytest.mark.slow  # the between-layer step on 800 crops of 227: about a minute on two cores
def test_cli_kraehenbuehl16_rescales_on_imagenet_crops_and_its_row_says_so(
    imagenet: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    ckpt = write_checkpoint(
        tmp_path / "pre" / "checkpoints" / "last.ckpt", create_model("alexnet", width=0.125), ab_bins(), None,
        {"run": "tiny-pretrain"},
    )  # fmt: skip
    results = tmp_path / "results.jsonl"
    voc_cls_main(
        [
            f"ckpt={ckpt}",
            *tiny_data_overrides(tmp_path / "voc"),
            f"rescale_images={imagenet}",
            "train_from=fc6",
            "trainer.max_steps=1",
            "image.test_views=1",
            "data.batch_size=4",
            f"runs_dir={tmp_path / 'runs'}",
            f"results={results}",
            "logger.kind=csv",
        ]
    )
    [row] = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["protocol"] == "kraehenbuehl16"
    assert row["rescale_method"] == (
        "between-layer, 800 crops of 227 of ImageNet training images, fresh 1000-way top"
    )
    assert row["rescale_images"] == str(imagenet)
