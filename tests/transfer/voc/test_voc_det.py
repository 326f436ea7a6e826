"""VOC detection: the L-channel transform, the colorization backbone's freezing, Faster R-CNN training and
inference, the test-set metric, and `python -m transfer.cli.voc_det` end to end."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import ConfigError
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import write_checkpoint
from lit_colorization.store.results import SCHEMA
from tests.helpers import bare_trainer, run_module
from tests.transfer.voc.devkit_reference import devkit_reference_ap
from tests.transfer.voc.test_voc_cls import TINY_CLASSES, tiny_data_overrides
from transfer.dashboard import dashboard_panels, keys_by_job_type
from transfer.voc.detection import (
    ColorizationBackbone,
    LightnessRCNNTransform,
    VOCDetectionMAP,
    VOCDetectionModule,
    build_detector,
    training_targets,
)
from transfer.voc.evaluation import detection_map
from transfer.voc.voc_config import VOC_DET, DetectorConfig, SGDConfig

SMALL = DetectorConfig(
    min_size=64,
    max_size=96,
    train_sizes=[64],
    train_max_size=96,
    anchor_sizes=[16, 32],
    representation_size=32,
)


def _network(seed: int = 0):
    torch.manual_seed(seed)
    return create_model("alexnet", width=0.125).eval()


def _image(height: int, width: int, seed: int) -> torch.Tensor:
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def _target(
    boxes: list[list[float]], labels: list[int], difficult: list[bool] | None = None
) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult or [False] * len(labels), dtype=torch.bool),
    }


def test_transform_feeds_the_network_cie_lightness_at_the_detection_scale() -> None:
    transform = LightnessRCNNTransform(min_size=64, max_size=200)
    image = _image(30, 45, seed=0)
    lightness = transform.normalize(image)
    expected = rgb2lab(image.permute(1, 2, 0).double().numpy())[..., 0]
    assert lightness.shape == (1, 30, 45)
    np.testing.assert_allclose(lightness[0].numpy(), expected, atol=1e-3)

    transform.eval()
    batch, targets = transform(
        [image, _image(40, 20, seed=1)], [_target([[3, 6, 15, 24]], [1]), _target([[0, 0, 10, 10]], [2])]
    )
    assert (
        batch.tensors.shape[1] == 1
        and batch.tensors.shape[-2] % 32 == 0
        and batch.tensors.shape[-1] % 32 == 0
    )
    assert batch.image_sizes == [(64, 96), (128, 64)]  # shorter side to 64: x64/30 and x64/20
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[3, 6, 15, 24]]) * (64 / 30))
    with pytest.raises(ValueError, match="float RGB"):
        transform.normalize(torch.zeros(1, 8, 8))


def test_backbone_freezing_and_batch_norm_always_in_eval_mode() -> None:
    frozen = ColorizationBackbone(_network(), "conv5", freeze=True)
    assert frozen.out_channels == 32  # conv5 at width 0.125
    assert not any(parameter.requires_grad for parameter in frozen.parameters())
    frozen.train()
    assert not any(module.training for module in frozen.trunk.modules())

    tuned = ColorizationBackbone(_network(), "conv5", freeze=False)
    tuned.train()
    norms = [module for module in tuned.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    convs = [module for module in tuned.modules() if isinstance(module, torch.nn.Conv2d)]
    assert len(norms) == len(convs) == 5
    assert all(not norm.training and not any(p.requires_grad for p in norm.parameters()) for norm in norms)
    assert all(conv.weight.requires_grad for conv in convs)
    features = tuned(torch.full((2, 1, 64, 48), 50.0))
    assert list(features) == ["0"] and features["0"].shape == (
        2,
        32,
        5,
        4,
    )  # conv5 at stride 16, ceil pooling


def test_detector_trains_on_l_and_predicts_boxes_in_input_coordinates() -> None:
    detector = build_detector(_network(), num_classes=3, detector=SMALL)
    images = [_image(50, 70, seed=2), _image(64, 40, seed=3)]
    targets = [_target([[5, 5, 30, 40]], [1]), _target([[10, 20, 35, 60], [1, 1, 9, 9]], [3, 2])]
    detector.train()
    losses = detector(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(value) for value in losses.values())
    detector.eval()
    with torch.no_grad():
        predictions = detector(images)
    assert len(predictions) == 2
    for image, prediction in zip(images, predictions, strict=True):
        boxes = prediction["boxes"]
        assert len(boxes) > 0 and set(prediction["labels"].tolist()) <= {1, 2, 3}
        assert bool((boxes[:, 2] <= image.shape[2]).all() and (boxes[:, 3] <= image.shape[1]).all())
        assert bool((boxes >= 0).all())


def test_training_targets_drop_difficult_objects() -> None:
    kept = training_targets(
        [_target([[0, 0, 5, 5], [1, 1, 8, 8], [2, 2, 4, 4]], [1, 2, 3], [False, True, False])]
    )
    assert kept[0]["labels"].tolist() == [1, 3]
    assert kept[0]["boxes"].tolist() == [[0, 0, 5, 5], [2, 2, 4, 4]]
    assert type(kept[0]["boxes"]) is torch.Tensor


@pytest.mark.parametrize("freeze", [True, False])
def test_training_moves_only_what_it_should(freeze: bool) -> None:
    detector = build_detector(
        _network(), num_classes=2, detector=DetectorConfig(**{**SMALL.__dict__, "freeze_backbone": freeze})
    )
    trunk_before = {key: value.clone() for key, value in detector.backbone.state_dict().items()}
    head_before = detector.roi_heads.box_predictor.cls_score.weight.detach().clone()
    images = [(_image(48, 48, seed) * 255).to(torch.uint8) for seed in range(4)]
    targets = [_target([[4 + i, 6, 30, 40 - i]], [1 + i % 2]) for i in range(4)]
    loader = torch.utils.data.DataLoader(
        list(zip(images, targets, strict=True)),
        batch_size=2,
        collate_fn=lambda batch: tuple(zip(*batch, strict=True)),
    )
    module = VOCDetectionModule(detector, SGDConfig(lr=0.01, milestones=[100]))
    trainer = bare_trainer(max_steps=2)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 2
    trunk_after = detector.backbone.state_dict()
    norms = {
        name for name, module in detector.backbone.named_modules() if isinstance(module, torch.nn.BatchNorm2d)
    }
    for key, value in trunk_after.items():
        if freeze or key.rsplit(".", 1)[0] in norms:  # BatchNorm weights and statistics never move
            assert torch.equal(value, trunk_before[key]), key
    if not freeze:
        assert not torch.equal(
            trunk_after["trunk.network.conv5.0.weight"], trunk_before["trunk.network.conv5.0.weight"]
        )
    assert not torch.equal(detector.roi_heads.box_predictor.cls_score.weight, head_before)


def test_metric_scores_perfect_detections_one_and_counts_repeated_images_once() -> None:
    truths = [
        _target([[0, 0, 10, 10], [20, 20, 40, 30]], [1, 2]),
        _target([[5, 5, 25, 25], [30, 0, 35, 5]], [1, 2], [False, True]),
    ]
    perfect = [
        {
            "boxes": truth["boxes"],
            "scores": torch.linspace(0.9, 0.5, len(truth["boxes"])),
            "labels": truth["labels"],
        }
        for truth in truths
    ]
    metric = VOCDetectionMAP()
    metric.update(torch.tensor([0, 1]), perfect, truths, rank=0)
    result = metric.compute()
    assert result.map == pytest.approx(1.0) and result.map_torchmetrics == pytest.approx(1.0)
    assert result.per_class == {1: pytest.approx(1.0), 2: pytest.approx(1.0)} and result.num_images == 2

    # Image 0 comes again from a second process (a padded DDP shard) with different boxes: only rank 0's count.
    wrong = [
        {
            "boxes": torch.tensor([[50.0, 50, 60, 60]]),
            "scores": torch.tensor([0.99]),
            "labels": torch.tensor([1]),
        }
    ]
    half = [
        perfect[0],
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    metric.reset()
    metric.update(torch.tensor([1]), [half[1]], [truths[1]], rank=0)
    metric.update(torch.tensor([0]), wrong, [truths[0]], rank=1)
    metric.update(torch.tensor([0]), [half[0]], [truths[0]], rank=0)
    result = metric.compute()
    expected_map, expected_per_class = detection_map(half, truths)
    assert result.num_images == 2
    assert result.map == pytest.approx(expected_map) and result.per_class == pytest.approx(expected_per_class)
    # Class 1: one of two positives found at precision 1 -> 11-point AP 6/11; class 2's second box is difficult.
    assert result.per_class == {1: pytest.approx(6 / 11), 2: pytest.approx(1.0)}


def test_config_presets_and_bad_values() -> None:
    default = VOC_DET.load(None, [])
    assert default.detector.min_size == 128 and default.data.batch_size == 2
    assert default.protocol is None and list(default.detector.train_sizes) == [128]  # null: fc67 for alexnet
    paper = VOC_DET.load("voc07", [])
    assert (paper.detector.min_size, paper.detector.max_size, paper.trainer.max_steps) == (600, 1000, 150_000)
    assert (
        list(paper.detector.train_sizes) == [480, 576, 688, 864, 1200]
        and paper.detector.train_max_size == 2000
    )
    assert list(paper.optim.milestones) == [50_000, 100_000] and paper.rescale is True
    mlp = VOC_DET.load("voc07_mlp", [])
    assert mlp.protocol == "faster-rcnn-mlp" and mlp.detector.representation_size == 1024
    assert (list(mlp.detector.train_sizes), mlp.detector.train_max_size) == ([600], 1000)  # as before fc67
    with pytest.raises(ConfigError, match="'protocol'"):
        VOC_DET.load(None, ["protocol=fast-rcnn"])
    with pytest.raises(ConfigError, match="'detector.train_max_size'"):
        VOC_DET.load(None, ["detector.train_sizes=[128,256]"])
    with pytest.raises(ConfigError, match="'optim.bias_lr_mult'"):
        VOC_DET.load(None, ["optim.bias_lr_mult=0"])
    with pytest.raises(ConfigError, match="'detector.max_size'"):
        VOC_DET.load(None, ["detector.max_size=64"])
    with pytest.raises(ConfigError, match="'data.train_years'"):
        VOC_DET.load(None, ["data.train_years=[2009]"])


def test_cli_trains_a_detector_on_the_tiny_voc_and_appends_a_row(tmp_path: Path) -> None:
    checkpoint = write_checkpoint(
        tmp_path / "pre.ckpt", _network(), ab_bins(), None, {"run": "tiny-pretrain"}
    )
    results = tmp_path / "results.jsonl"
    result = run_module(
        "transfer.cli.voc_det",
        f"ckpt={checkpoint}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results={results}",
        *tiny_data_overrides(tmp_path / "cache"),
        "protocol=faster-rcnn-mlp",
        "detector.min_size=64",
        "detector.max_size=96",
        "detector.train_sizes=[64]",
        "detector.train_max_size=96",
        "detector.anchor_sizes=[16,32]",
        "detector.representation_size=32",
        "detector.freeze_backbone=true",
        "trainer.max_steps=3",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "logger.kind=csv",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["task"] == "voc-det" and row["pretrain_run"] == "tiny-pretrain" and row["layer"] == "conv5"
    assert (row["protocol"], row["geometry"], row["ap_metric"]) == ("faster-rcnn-mlp", "training", "11pt")
    assert row["head"].endswith("MLP on conv5 (not the pretrained fc6/fc7)")
    assert row["freeze_backbone"] is True and row["steps"] == 3 and row["num_test_images"] == 6
    for key in ("map", "map_torchmetrics"):
        assert math.isfinite(row[key]) and 0.0 <= row[key] <= 100.0
    assert list(row["ap"]) == TINY_CLASSES and row["schema"] == SCHEMA  # mAP and AP in percent
    run_dir = tmp_path / "runs" / "voc-det-tiny-pretrain-conv5-frozen"
    assert json.loads((run_dir / "results.json").read_text()) == rows
    assert_map_recomputes_from_the_saved_detections(row, run_dir)
    metrics = (next((run_dir / "csv").glob("version_*")) / "metrics.csv").read_text()
    assert "voc/map" in metrics and "voc/loss_objectness" in metrics  # evaluated at step 2 and at the end
    # make dashboard's detection panels read keys this run logged
    assert keys_by_job_type(dashboard_panels())["voc-det"] <= set(metrics.splitlines()[0].split(","))


def assert_map_recomputes_from_the_saved_detections(row: dict, run_dir: Path) -> None:
    """The row's VOC07 APs by the devkit's transcription, and its torchmetrics mAP by torchmetrics' own
    MeanAveragePrecision (difficult boxes as COCO crowds), both from the boxes the run saved."""
    from torchmetrics.detection import MeanAveragePrecision

    saved = np.load(run_dir / "test_predictions.npz")
    predictions, truths = [], []
    for image in saved["index"]:
        mine, theirs = saved["pred_image"] == image, saved["true_image"] == image
        predictions.append(
            {name: torch.from_numpy(saved[f"pred_{name}"][mine]) for name in ("boxes", "scores", "labels")}
        )
        truths.append(
            {
                name: torch.from_numpy(saved[f"true_{name}"][theirs])
                for name in ("boxes", "labels", "difficult")
            }
        )
    assert len(truths) == row["num_test_images"]
    for position, name in enumerate(TINY_CLASSES, start=1):
        has_positive = any(((t["labels"] == position) & ~t["difficult"]).any() for t in truths)
        expected = 100.0 * devkit_reference_ap(predictions, truths, position)[0] if has_positive else None
        assert row["ap"][name] == (None if expected is None else pytest.approx(expected, abs=1e-3)), name
    # The COCO backend installed (the command needs one too): pycocotools or faster_coco_eval.
    backend = next(name for name in ("pycocotools", "faster_coco_eval") if importlib.util.find_spec(name))
    metric = MeanAveragePrecision(
        box_format="xyxy", iou_thresholds=[0.5], class_metrics=True, backend=backend
    )
    metric.update(
        [{**p, "labels": p["labels"].long()} for p in predictions],
        [
            {"boxes": t["boxes"], "labels": t["labels"].long(), "iscrowd": t["difficult"].long()}
            for t in truths
        ],
    )
    assert row["map_torchmetrics"] == pytest.approx(100.0 * float(metric.compute()["map"]), abs=1e-3)
