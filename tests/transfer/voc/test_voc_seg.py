"""VOC segmentation: the mask reader, the mIoU (hand-built cases, against torchmetrics), the void-masked loss, the
FCN head and its freezing, the configs, and `python -m transfer.cli.voc_seg` end to end on the tiny VOC2012."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex
from torchvision import tv_tensors

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import ConfigError
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import write_checkpoint
from lit_colorization.store.results import SCHEMA, ResultRow
from tests.helpers import iou_from_saved_predictions, run_module
from transfer.compare import build_sections
from transfer.dashboard import dashboard_panels, keys_by_job_type
from transfer.voc.dataset import SEGMENTATION_VOID, VOC_CLASSES, VOCSegmentationDataset, voc_year_dir
from transfer.voc.segmentation import (
    FCNSegmenter,
    VOCSegmentationIoU,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    segmentation_train_transform,
    void_masked_cross_entropy,
)
from transfer.voc.synthetic import make_tiny_voc
from transfer.voc.voc_config import VOC_SEG, resolve_seg_protocol

CLASSES = ("cat", "dog", "person")
VOID = SEGMENTATION_VOID


@pytest.fixture(scope="module")
def voc2012(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_voc(
        tmp_path_factory.mktemp("voc"),
        num_train=6,
        num_val=3,
        num_test=0,
        classes=CLASSES,
        image_size=48,
        year="2012",
    )


def _miou(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    return mean_iou(iou_per_class(confusion_matrix(predictions, targets, num_classes)))


def _torchmetrics_miou(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int) -> float:
    metric = MulticlassJaccardIndex(num_classes=num_classes, ignore_index=VOID, average="macro")
    return float(metric(predictions, targets))


# A 4 x 4 image: background on the top half, class 1 bottom left, class 2 bottom right.
TARGET = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 2, 2], [1, 1, 2, 2]])


def test_perfect_prediction_scores_100() -> None:
    assert _miou(TARGET, TARGET, 3) == 1.0 == _torchmetrics_miou(TARGET, TARGET, 3)


def test_one_class_predicted_as_another_by_hand() -> None:
    swapped = TARGET.clone()
    swapped[TARGET == 1] = 2  # every class-1 pixel called class 2
    # background: 8 / 8; class 1: no hit, 4 missed -> 0 / 4; class 2: 4 hits, 4 false -> 4 / 8.
    assert iou_per_class(confusion_matrix(swapped, TARGET, 3)) == [1.0, 0.0, 0.5]
    assert _miou(swapped, TARGET, 3) == pytest.approx(0.5)
    assert _torchmetrics_miou(swapped, TARGET, 3) == pytest.approx(0.5)


def test_void_pixels_are_never_scored_whatever_is_predicted() -> None:
    target = torch.full((6, 6), VOID)
    target[1:5, 1:5] = TARGET  # the 4 x 4 image inside a void border
    for seed in range(3):
        predictions = torch.randint(0, 3, (6, 6), generator=torch.Generator().manual_seed(seed))
        predictions[1:5, 1:5] = TARGET
        assert confusion_matrix(predictions, target, 3).sum() == 16
        assert _miou(predictions, target, 3) == 1.0 == _torchmetrics_miou(predictions, target, 3)


def test_a_class_neither_present_nor_predicted_is_left_out_as_torchmetrics_does() -> None:
    swapped = TARGET.clone()
    swapped[TARGET == 1] = 2
    per_class = iou_per_class(confusion_matrix(swapped, TARGET, 4))
    assert per_class[:3] == [1.0, 0.0, 0.5] and math.isnan(per_class[3])
    assert _miou(swapped, TARGET, 4) == pytest.approx(0.5) == _torchmetrics_miou(swapped, TARGET, 4)
    wrong = swapped.clone()
    wrong[0, 0] = 3  # predicted but absent: IoU 0, and it counts
    assert _miou(wrong, TARGET, 4) == pytest.approx((7 / 8 + 0 + 0.5 + 0) / 4)
    assert _torchmetrics_miou(wrong, TARGET, 4) == pytest.approx((7 / 8 + 0 + 0.5 + 0) / 4)
    with pytest.raises(ValueError, match="no scored pixel"):
        _miou(TARGET, torch.full_like(TARGET, VOID), 3)


def test_metric_sums_images_and_counts_a_repeated_image_once() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 4, (3, 10, 12), generator=generator)
    targets[:, 0] = VOID
    predictions = torch.randint(0, 4, (3, 10, 12), generator=generator)
    metric = VOCSegmentationIoU(4)
    metric.update(torch.tensor([0, 1]), predictions[:2], targets[:2])
    metric.update(
        torch.tensor([2, 0]), predictions[[2, 0]], targets[[2, 0]]
    )  # image 0 again (a padded shard)
    result = metric.compute()
    expected = _torchmetrics_miou(predictions, targets, 4)
    assert result.num_images == 3 and result.miou == pytest.approx(expected)
    scored = targets != VOID
    assert result.pixel_accuracy == pytest.approx(float((predictions == targets)[scored].float().mean()))


def test_loss_is_the_mean_over_non_void_pixels() -> None:
    scores = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0), requires_grad=True)
    targets = torch.randint(0, 3, (2, 4, 5), generator=torch.Generator().manual_seed(1))
    targets[0, :2] = VOID
    kept = targets != VOID
    expected = torch.nn.functional.cross_entropy(scores.permute(0, 2, 3, 1)[kept], targets[kept])
    assert void_masked_cross_entropy(scores, targets).item() == pytest.approx(expected.item())
    all_void = void_masked_cross_entropy(scores, torch.full_like(targets, VOID))
    all_void.backward()
    assert all_void.item() == 0.0 and scores.grad is not None


def _network(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("alexnet", width=0.125)


def test_fcn_scores_every_input_pixel_and_freezes_the_layers_before_train_from() -> None:
    segmenter = FCNSegmenter(_network(), "fc7", "conv5", num_classes=4)
    assert segmenter.frozen_layers == ("conv1", "conv2", "conv3", "conv4")
    assert segmenter.trainable_layers == ("conv5", "fc6", "fc7")
    lightness = torch.rand(2, 1, 50, 70) * 100
    scores = segmenter(lightness)
    assert scores.shape == (2, 4, 50, 70)
    assert torch.count_nonzero(scores) == 0  # the zero-initialised score layer, as FCN's
    segmenter.score.weight.data.normal_()
    segmenter(lightness).square().mean().backward()
    assert all(p.grad is None for p in segmenter.trunk.network.conv4.parameters())
    assert all(p.grad is not None for p in segmenter.trunk.network.conv5.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="train_from"):
        FCNSegmenter(_network(), "conv3", "conv5", num_classes=4)


def test_reader_maps_voc_labels_to_the_class_list_and_keeps_void(voc2012: Path) -> None:
    full = VOCSegmentationDataset(voc2012, "2012", "train", classes=CLASSES)
    subset = VOCSegmentationDataset(voc2012, "2012", "train", classes=("person", "cat"))
    assert len(full) == 6 and full.image_ids[0] == "2012_000001"
    for index in range(len(full)):
        image, mask = full[index]
        assert isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
        assert image.dtype == torch.uint8 and mask.dtype == torch.int64 and mask.shape == image.shape[-2:]
        png = voc_year_dir(voc2012, "2012") / "SegmentationClass" / f"{full.image_ids[index]}.png"
        raw = torch.from_numpy(np.array(Image.open(png))).long()
        expected = torch.full_like(raw, VOID)
        expected[raw == 0] = 0
        for position, name in enumerate(CLASSES, start=1):
            expected[raw == VOC_CLASSES.index(name) + 1] = position
        assert torch.equal(mask, expected)
        # With "dog" left out, its pixels become void (neither background nor a studied class).
        _, reduced = subset[index]
        remapped = torch.tensor([0, 2, VOID, 1])[mask.clamp(max=3)]  # CLASSES position -> subset label
        remapped[mask == VOID] = VOID
        assert torch.equal(reduced, remapped)


def test_reader_refuses_colour_masks_unknown_indices_and_missing_files(voc2012: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(voc2012, root)
    masks = voc_year_dir(root, "2012") / "SegmentationClass"
    Image.open(masks / "2012_000001.png").convert("RGB").save(masks / "2012_000001.png")
    with pytest.raises(ValueError, match="2012_000001.png: expected a palette PNG"):
        VOCSegmentationDataset(root, "2012", "train", classes=CLASSES)[0]
    strange = np.asarray(Image.open(masks / "2012_000002.png")).copy()
    strange[0, 0] = 42
    Image.fromarray(strange).save(masks / "2012_000002.png")
    with pytest.raises(ValueError, match=r"class indices \[42\] are not VOC labels"):
        VOCSegmentationDataset(root, "2012", "train", classes=CLASSES)[1]
    (masks / "2012_000002.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="2012_000002.png: not a readable PNG"):
        VOCSegmentationDataset(root, "2012", "train", classes=CLASSES)[1]
    (masks / "2012_000003.png").unlink()
    with pytest.raises(FileNotFoundError, match="2012_000003.png"):
        VOCSegmentationDataset(root, "2012", "train", classes=CLASSES)
    with pytest.raises(FileNotFoundError, match="ImageSets/Segmentation/train.txt"):
        VOCSegmentationDataset(tmp_path / "nothing", "2012", "train")


def test_training_crops_pad_the_image_black_and_the_mask_void() -> None:
    image = tv_tensors.Image(torch.full((3, 20, 30), 200, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(20, 30, dtype=torch.int64))
    cropped_image, cropped_mask = segmentation_train_transform(32)(image, mask)
    assert cropped_image.shape == (3, 32, 32) and cropped_mask.shape == (32, 32)
    padded = cropped_mask == VOID
    assert padded.sum() == 32 * 32 - 20 * 30 and (cropped_image[:, padded] == 0).all()
    assert (cropped_mask[~padded] == 1).all() and (cropped_image[:, ~padded] == 200).all()


def test_configs_load_and_reject_bad_values() -> None:
    default = VOC_SEG.load(None, [])
    assert default.protocol is None and default.data.year is None and default.data.batch_size is None
    project = resolve_seg_protocol(default, "resnet50")
    assert project.protocol == "project-fcn"
    assert (project.data.year, project.data.train_set, project.data.test_set) == ("2012", "train", "val")
    assert (project.data.batch_size, project.optim.bias_lr_mult, project.optim.bias_weight_decay) == (
        20,
        1.0,
        None,
    )
    assert project.data.tiny.num_test == 0 and project.image.crop == 96
    paper = VOC_SEG.load("voc12", [])
    assert paper.protocol == "project-fcn" and paper.rescale and paper.image.crop == 320
    assert paper.trainer.max_steps == 30_000 and paper.optim.iter_size == 1 and paper.data.batch_size == 16
    for override, key in [
        ("data.test_set=train", "'data.test_set'"),
        ("data.test_set=trainval", "'data.test_set'"),
        ("data.test_set=test", "'data.test_set'"),
        ("data.tiny.num_test=5", "'data.tiny.num_test'"),
        ("data.year=2010", "'data.year'"),
        ("protocol=fcn8s", "'protocol'"),
        ("optim.iter_size=0", "'optim.iter_size'"),
        ("image.crop=0", "'image.crop'"),
        ("data.classes=[cat,unicorn]", "'data.classes'"),
    ]:
        with pytest.raises(ConfigError, match=key):
            VOC_SEG.load(None, [override])
    assert (
        VOC_SEG.load(None, ["data.year=2007", "data.tiny.num_test=4", "data.test_set=test"]).data.year
        == "2007"
    )


def test_cli_trains_and_scores_on_the_tiny_voc2012(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = write_checkpoint(
        tmp_path / "pre" / "checkpoints" / "last.ckpt",
        create_model("alexnet", width=0.125),
        ab_bins(),
        None,
        {"run": "tiny-pretrain"},
    )
    results = tmp_path / "results.jsonl"
    run = run_module(
        "transfer.cli.voc_seg",
        f"ckpt={ckpt}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results={results}",
        f"data.tiny.cache_dir={tmp_path / 'cache'}",
        "data.tiny.num_train=4",
        "data.tiny.num_val=3",
        "data.tiny.image_size=48",
        f"data.tiny.classes=[{','.join(CLASSES)}]",
        "data.num_workers=0",
        "data.batch_size=2",
        "protocol=project-fcn",
        "optim.iter_size=1",
        "image.crop=40",
        "train_from=fc6",
        "rescale=true",
        "trainer.max_steps=2",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "logger.kind=csv",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    [row] = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["task"] == "voc-seg" and row["schema"] == SCHEMA and row["pretrain_run"] == "tiny-pretrain"
    assert row["layer"] == "fc7" and row["trainable_layers"] == ["fc6", "fc7"] and row["steps"] == 2
    assert (row["protocol"], row["geometry"], row["ap_metric"]) == ("project-fcn", "training", None)
    assert row["num_test_images"] == 3 and row["dataset"] == "tiny-voc12 segmentation train -> val"
    assert row["rescaled"] and "rescaled the pretrained trunk on 4 training images" in run.stderr
    assert list(row["iou"]) == ["background", *CLASSES]
    scored = [value for value in row["iou"].values() if value is not None]
    assert row["miou"] == pytest.approx(np.mean(scored), abs=1e-3) and 0 <= row["miou"] <= 100
    run_dir = tmp_path / "runs" / "voc-seg-tiny-pretrain-fcn-fc7-fc6"
    assert json.loads((run_dir / "results.json").read_text()) == [row]
    # The IoUs again from the class maps the run saved: one confusion matrix by numpy, void (255) left out.
    saved = np.load(run_dir / "test_predictions.npz")
    assert len([name for name in saved.files if name.startswith("truth_")]) == 3
    iou = iou_from_saved_predictions(run_dir, len(row["iou"]))
    assert list(row["iou"].values()) == [None if v is None else pytest.approx(v, abs=1e-3) for v in iou]
    assert row["miou"] == pytest.approx(np.mean([v for v in iou if v is not None]), abs=1e-3)
    assert "mIoU" in run.stdout
    # make dashboard's segmentation panel reads keys this run logged
    header = (next((run_dir / "csv").glob("version_*")) / "metrics.csv").read_text().splitlines()[0]
    assert keys_by_job_type(dashboard_panels())["voc-seg"] <= set(header.split(","))

    sections = {section.title: section for section in build_sections([ResultRow(1, row)])}
    text = "\n".join(sections["Pascal VOC segmentation"].lines)
    assert f"{row['miou']:.1f}" in text and "fcn on fc7, from fc6" in text and "35.6" in text
