"""VOC classification fine-tuning: 10-crop views and averaging, the masked loss, train_from freezing, the
test-set metric, the tiny-data cache, configs, and `python -m transfer.cli.voc_cls` end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import ConfigError
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import write_checkpoint
from lit_colorization.store.results import SCHEMA, ResultRow
from tests.helpers import bare_trainer, run_module
from tests.transfer.voc.devkit_reference import classification_ap_percent
from transfer.cli.voc_cls import main as voc_cls_main
from transfer.compare import build_sections
from transfer.dashboard import dashboard_panels, keys_by_job_type
from transfer.voc.classification import (
    VOCClassificationMAP,
    VOCClassificationModule,
    VOCClassifier,
    average_views,
    first_occurrences,
    masked_bce,
)
from transfer.voc.dataset import voc_year_dir
from transfer.voc.evaluation import classification_map
from transfer.voc.sources import (
    RepeatedViews,
    ScaleJitterCrop,
    ensure_tiny_voc,
    ten_crop_views,
    tiny_voc_folder,
    whole_image_transform,
)
from transfer.voc.voc_config import VOC_CLS, SGDConfig, TinyVOCConfig, cls_ap_metric

TINY_CLASSES = ["car", "cat", "dog"]


def tiny_data_overrides(cache_dir: Path) -> list[str]:
    return [
        f"data.tiny.cache_dir={cache_dir}",
        "data.tiny.num_train=6",
        "data.tiny.num_val=6",
        "data.tiny.num_test=6",
        "data.tiny.image_size=64",
        f"data.tiny.classes=[{','.join(TINY_CLASSES)}]",
        "data.num_workers=0",
    ]


@pytest.fixture(scope="module")
def alexnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    network = create_model("alexnet", width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "pre" / "checkpoints" / "last.ckpt"
    return write_checkpoint(path, network, ab_bins(), None, {"run": "tiny-pretrain"})


def test_ten_crop_views_are_the_corners_centre_and_their_mirror_images() -> None:
    image = torch.arange(3 * 7 * 9, dtype=torch.int32).reshape(3, 7, 9)
    views = ten_crop_views(image, 4)
    assert views.shape == (10, 3, 4, 4)
    corners = [image[:, :4, :4], image[:, :4, 5:], image[:, 3:, :4], image[:, 3:, 5:]]
    centre = image[:, 2:6, 2:6]  # top = round((7 - 4) / 2) = 2 (half to even), left = round(5 / 2) = 2
    for index, expected in enumerate([*corners, centre]):
        assert torch.equal(views[index], expected)
    mirrored = image.flip(-1)
    mirrored_expected = [mirrored[:, :4, :4], mirrored[:, :4, 5:], mirrored[:, 3:, :4], mirrored[:, 3:, 5:]]
    for index, expected in enumerate(mirrored_expected, start=5):
        assert torch.equal(views[index], expected)
    # The mirrored top-left view is the original top-right corner, flipped.
    assert torch.equal(views[5], image[:, :4, 5:].flip(-1))


def test_average_views_takes_the_mean_over_each_images_ten_views() -> None:
    logits = torch.randn(3 * 10, 4, generator=torch.Generator().manual_seed(0))
    averaged = average_views(logits, 10)
    assert averaged.shape == (3, 4)
    for image in range(3):
        expected = sum(logits[image * 10 + view] for view in range(10)) / 10
        torch.testing.assert_close(averaged[image], expected)
    with pytest.raises(ValueError, match="B \\* 10"):
        average_views(torch.zeros(25, 4), 10)


def test_masked_bce_is_the_mean_over_kept_entries_only() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    ignore = torch.tensor([[False, True, False], [False, False, True]])
    kept = [(0, 0), (0, 2), (1, 0), (1, 1)]
    expected = 0.0
    for row, column in kept:
        p = 1 / (1 + math.exp(-float(logits[row, column])))
        y = float(targets[row, column])
        expected -= y * math.log(p) + (1 - y) * math.log(1 - p)
    assert float(masked_bce(logits, targets, ignore)) == pytest.approx(expected / len(kept), rel=1e-6)


def test_first_occurrences_keeps_one_position_per_value() -> None:
    positions = first_occurrences(torch.tensor([5, 2, 5, 7, 2, 0]))
    assert positions.tolist() == [5, 1, 0, 3]


def test_classification_metric_matches_classification_map_and_drops_repeated_images() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(8, 3, generator=generator)
    targets = (torch.rand(8, 3, generator=generator) > 0.5).float()
    targets[0] = 1.0
    ignore = torch.zeros(8, 3, dtype=torch.bool)
    ignore[2, 1] = True
    metric = VOCClassificationMAP(ap_metric="11pt")
    metric.update(torch.arange(5), scores[:5], targets[:5], ignore[:5])
    # A padded DDP shard: images 0 and 1 come again (identical scores) after the last three.
    metric.update(
        torch.tensor([5, 6, 7, 0, 1]),
        torch.cat([scores[5:], scores[:2]]),
        torch.cat([targets[5:], targets[:2]]),
        torch.cat([ignore[5:], ignore[:2]]),
    )
    result = metric.compute()
    expected_map, expected_per_class = classification_map(scores, targets, ignore, ap_metric="11pt")
    assert result.num_images == 8
    assert result.map == pytest.approx(expected_map)
    assert result.per_class == pytest.approx(expected_per_class)


def _random_images(count: int, side: int, seed: int) -> torch.Tensor:
    return torch.randint(
        0, 256, (count, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def _stage_states(classifier: VOCClassifier, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    network_state = classifier.trunk.network.state_dict()
    return {key: value.clone() for key, value in network_state.items() if key.split(".")[0] in layers}


def test_train_from_fc6_leaves_the_earlier_layers_bit_identical_and_trains_the_rest() -> None:
    torch.manual_seed(0)
    network = create_model("alexnet", width=0.125).eval()
    classifier = VOCClassifier(network, "fc7", "fc6", num_classes=3)
    assert classifier.frozen_layers == ("conv1", "conv2", "conv3", "conv4", "conv5")
    assert classifier.trainable_layers == ("fc6", "fc7")
    frozen_before = _stage_states(classifier, classifier.frozen_layers)
    trainable_before = _stage_states(classifier, classifier.trainable_layers)
    head_before = classifier.head.weight.detach().clone()

    frozen_modes: list[bool] = []
    classifier.trunk.network.conv1[1].register_forward_pre_hook(
        lambda module, args: frozen_modes.append(module.training)
    )
    images = _random_images(8, 48, seed=0)
    targets = (torch.rand(8, 3, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    loader = DataLoader(TensorDataset(images, targets, torch.zeros(8, 3, dtype=torch.bool)), batch_size=4)
    module = VOCClassificationModule(classifier, SGDConfig(lr=0.1, milestones=[100]))
    trainer = bare_trainer(max_steps=4)
    trainer.fit(module, train_dataloaders=loader)

    assert trainer.global_step == 4 and frozen_modes and not any(frozen_modes)
    for key, value in _stage_states(
        classifier, classifier.frozen_layers
    ).items():  # weights and BN statistics
        assert torch.equal(value, frozen_before[key]), key
    frozen_stages = [getattr(classifier.trunk.network, name) for name in classifier.frozen_layers]
    assert not any(parameter.requires_grad for stage in frozen_stages for parameter in stage.parameters())
    trained = _stage_states(classifier, classifier.trainable_layers)
    for key in ("fc6.1.weight", "fc6.2.running_mean", "fc7.0.weight", "fc7.1.running_var"):
        assert not torch.equal(trained[key], trainable_before[key]), key
    assert not torch.equal(classifier.head.weight, head_before)


def test_train_from_conv1_trains_every_layer_and_bad_layers_are_refused() -> None:
    network = create_model("alexnet", width=0.125)
    classifier = VOCClassifier(network, "fc7", "conv1", num_classes=2)
    assert classifier.frozen_layers == () and len(classifier.trainable_layers) == 7
    assert classifier.head.in_features == 512  # fc7 at width 0.125: 4096 / 8
    logits = classifier(torch.full((2, 1, 40, 40), 50.0))
    assert logits.shape == (2, 2)
    with pytest.raises(ValueError, match="train_from.*up to 'conv5'"):
        VOCClassifier(create_model("alexnet", width=0.125), "conv5", "fc6", num_classes=2)


def test_tiny_voc_is_generated_once_per_setting_and_reused(tmp_path: Path) -> None:
    tiny = TinyVOCConfig(
        cache_dir=str(tmp_path), num_train=3, num_val=3, num_test=3, image_size=48, classes=["cat", "dog"]
    )
    root = ensure_tiny_voc(tiny)
    assert root == tiny_voc_folder(tiny)
    marker = voc_year_dir(root) / "ImageSets" / "Main" / "test.txt"
    stamp = marker.stat().st_mtime_ns
    assert ensure_tiny_voc(tiny) == root and marker.stat().st_mtime_ns == stamp
    other = TinyVOCConfig(**{**tiny.__dict__, "seed": 1})
    assert ensure_tiny_voc(other) != root
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith(".lock")) == sorted(
        [root.name, tiny_voc_folder(other).name]
    )


def test_configs_load_and_reject_bad_values() -> None:
    default = VOC_CLS.load(None, [])
    assert default.protocol == "kraehenbuehl16" and default.data.root is None and default.image.crop == 227
    assert cls_ap_metric(default) == "area"
    assert cls_ap_metric(VOC_CLS.load(None, ["protocol=svm"])) == "area-envelope"
    assert cls_ap_metric(VOC_CLS.load(None, ["protocol=finetune"])) == "11pt"
    # philkr/voc-classification's solver (docs/reference.md section 11.4).
    paper = VOC_CLS.load("voc07", [])
    assert (paper.protocol, paper.image.crop, paper.trainer.max_steps, paper.data.batch_size) == (
        "kraehenbuehl16", 227, 80_000, 16,
    )  # fmt: skip
    optim = paper.optim
    assert (optim.lr, optim.weight_decay, optim.gamma, optim.clip_gradients, optim.bias_lr_mult) == (
        1e-3, 1e-6, 0.5, 10.0, 2.0,
    )  # fmt: skip
    assert list(optim.milestones) == [10_000 * k for k in range(1, 8)]
    assert (paper.image.min_scale, paper.image.max_scale, paper.image.test_views) == (0.5, 2.0, 10)
    earlier = VOC_CLS.load("voc07_finetune", [])
    assert (earlier.protocol, earlier.optim.weight_decay, list(earlier.optim.milestones)) == (
        "finetune", 1e-4, [40_000, 60_000],
    )  # fmt: skip
    with pytest.raises(ConfigError, match="'ap_metric'"):
        VOC_CLS.load(None, ["ap_metric=voc07"])
    with pytest.raises(ConfigError, match="'image.min_scale'"):
        VOC_CLS.load(None, ["image.min_scale=3"])
    assert list(paper.svm.costs) == [0.01, 0.1, 1, 2, 5, 10, 15, 20, 50, 100, 1000]
    with pytest.raises(ConfigError, match="'protocol'"):
        VOC_CLS.load(None, ["protocol=linear"])
    with pytest.raises(ConfigError, match="'image.resize'"):
        VOC_CLS.load(None, ["image.crop=300"])
    with pytest.raises(ConfigError, match="unknown config key 'svm.cost'"):
        VOC_CLS.load(None, ["svm.cost=[1]"])
    with pytest.raises(ConfigError, match="'data.classes'"):
        VOC_CLS.load(None, ["data.classes=[cat,unicorn]"])


def _read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_cli_finetunes_and_runs_the_svm_protocol_on_the_tiny_voc(
    tmp_path: Path, alexnet_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.jsonl"
    common = [
        f"ckpt={alexnet_checkpoint}",
        f"runs_dir={tmp_path / 'runs'}",
        f"results={results}",
        *tiny_data_overrides(tmp_path / "cache"),
        "image.resize=48",
        "image.crop=40",
        "data.batch_size=4",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "logger.kind=csv",
    ]
    finetune = run_module(
        "transfer.cli.voc_cls",
        *common,
        "protocol=finetune",
        "train_from=fc6",
        "trainer.max_steps=3",
        "trainer.log_every_n_steps=1",
        "rescale=true",
    )
    assert finetune.returncode == 0, finetune.stderr[-3000:]
    assert "rescaled the pretrained trunk on 12 training images" in finetune.stderr
    # goyal19's pooling of conv5 (8/1) needs the maps of a standard-size crop.
    svm = run_module(
        "transfer.cli.voc_cls",
        *common,
        "protocol=svm",
        "svm.costs=[0.1,1,10]",
        "image.resize=256",
        "image.crop=227",
    )
    assert svm.returncode == 0, svm.stderr[-3000:]
    paper = run_module(
        "transfer.cli.voc_cls",
        *common,
        "image.resize=256",
        "image.crop=227",
        "image.test_views=2",
        "rescale=false",
        "train_from=fc6",
        "trainer.max_steps=2",
    )
    assert paper.returncode == 0, paper.stderr[-3000:]

    rows = _read_rows(results)
    assert [row["protocol"] for row in rows] == ["finetune", "svm", "kraehenbuehl16"]
    assert [(row["geometry"], row["ap_metric"]) for row in rows] == [
        ("training", "11pt"), ("standard", "area-envelope"), ("standard", "area"),
    ]  # fmt: skip
    assert rows[1]["image"] == "whole image resized to 227 x 227"
    assert (rows[2]["head"], rows[2]["test_views"], rows[2]["steps"]) == (
        "dropout 0.5 after fc6 and fc7, linear", 2, 2,
    )  # fmt: skip
    rows = rows[:2]
    for row in rows:
        assert (
            row["task"] == "voc-cls" and row["pretrain_run"] == "tiny-pretrain" and row["model"] == "alexnet"
        )
        assert row["schema"] == SCHEMA  # mAP and per-class AP in percent
        assert 0.0 <= row["map"] <= 100.0 and math.isfinite(row["map"])
        assert list(row["ap"]) == TINY_CLASSES
        present = [value for value in row["ap"].values() if value is not None]
        assert row["map"] == pytest.approx(np.mean(present), abs=1e-3)
        assert row["num_test_images"] == 6
    assert (
        rows[0]["train_from"] == "fc6"
        and rows[0]["trainable_layers"] == ["fc6", "fc7"]
        and rows[0]["steps"] == 3
    )
    assert [row["rescaled"] for row in rows] == [True, False]
    assert rows[1]["layer"] == "conv5" and rows[1]["feature_dim"] == 32 * 6 * 6
    # The standard AlexNet's conv5 at 227 (an eighth of the channels), average-pooled 8/1 as goyal19 does.
    assert (rows[1]["features"], rows[1]["feature_shape"], rows[1]["pooled_shape"]) == (
        "goyal19", [32, 13, 13], [32, 6, 6],
    )  # fmt: skip
    assert set(rows[1]["svm_cost"].values()) <= {0.1, 1.0, 10.0}

    # Each AP again from the test scores the run saved, by the rule the row names (the devkit's, or scikit-learn's).
    run_dirs = [tmp_path / "runs" / f"voc-cls-tiny-pretrain-{name}" for name in ("finetune-fc6", "svm-conv5")]
    for row, folder in zip(rows, run_dirs, strict=True):
        saved = np.load(folder / "test_predictions.npz")
        assert saved["scores"].shape == (6, len(TINY_CLASSES)) and list(saved["index"]) == list(range(6))
        recomputed = classification_ap_percent(
            saved["scores"], saved["targets"], saved["ignore"], ap_metric=row["ap_metric"]
        )
        assert list(row["ap"].values()) == [
            None if ap is None else pytest.approx(ap, abs=1e-3) for ap in recomputed
        ]
        assert row["map"] == pytest.approx(np.mean([ap for ap in recomputed if ap is not None]), abs=1e-3)
    run_dir = run_dirs[0]
    assert json.loads((run_dir / "results.json").read_text()) == [rows[0]]
    kraehenbuehl16 = run_dir.parent / "voc-cls-tiny-pretrain-kraehenbuehl16-fc6"
    assert (kraehenbuehl16 / "results.json").is_file()
    assert np.load(kraehenbuehl16 / "test_predictions.npz")["scores"].shape == (6, len(TINY_CLASSES))
    # make dashboard's classification panels read keys both protocols' runs logged
    for run in run_dir.parent.iterdir():
        header = (next((run / "csv").glob("version_*")) / "metrics.csv").read_text().splitlines()[0]
        assert keys_by_job_type(dashboard_panels())["voc-cls"] <= set(header.split(",")), run.name
    assert OmegaConf.load(run_dir / "config.yaml").train_from == "fc6"
    assert "mAP" in finetune.stdout

    with pytest.raises(SystemExit) as exit_info:  # in-process: the refusal comes before any work
        voc_cls_main([*common, "protocol=finetune", "train_from=fc6", "trainer.max_steps=1"])
    assert exit_info.value.code == 2 and "already finished" in capsys.readouterr().err
    assert len(_read_rows(results)) == 3


def test_compare_lists_voc_runs_beside_the_papers_numbers() -> None:
    base = {
        "pretrain_run": "mine",
        "model": "alexnet",
        "dataset": "VOC07 trainval -> VOC07 test",
        "ap_metric": "voc07",
    }
    rows = [
        ResultRow(1, {**base, "task": "voc-cls", "protocol": "finetune", "train_from": "fc6", "map": 0.583}),
        ResultRow(2, {**base, "task": "voc-cls", "protocol": "svm", "layer": "conv5", "map": 0.4}),
        ResultRow(3, {**base, "task": "voc-det", "detector": "faster-rcnn", "layer": "conv5", "map": 0.31}),
        ResultRow(4, {**base, "task": "voc-det"}),
    ]
    sections = {section.title: section for section in build_sections(rows)}
    classification = "\n".join(sections["Pascal VOC07 classification"].lines)
    detection = sections["Pascal VOC07 detection (IoU 0.5)"]
    assert "finetune from fc6" in classification and "58.3" in classification
    assert "svm on conv5" in classification and "40.0" in classification
    assert "61.5" in classification and "65.9" in classification
    assert "faster-rcnn on conv5" in "\n".join(detection.lines) and "31.0" in "\n".join(detection.lines)
    assert "46.9" in "\n".join(detection.lines)
    assert detection.problems == ["line 4: voc-det row without a numeric 'map', skipped"]


def test_scale_jitter_views_sample_a_scaled_square_inside_the_image() -> None:
    generator = torch.Generator().manual_seed(0)
    # A horizontal ramp: at scale 1 each view's rows step by exactly one grey level per pixel (either way when
    # mirrored), from wherever the view's left edge falls.
    ramp = torch.arange(240).to(torch.uint8).expand(3, 240, 240).clone()
    view = ScaleJitterCrop(227, 1.0, 1.0, generator)(ramp)
    steps = view[0, 0].float().diff()
    assert view.shape == (3, 227, 227) and view.dtype == torch.uint8
    assert abs(abs(float(steps.mean())) - 1) < 0.01 and float(steps.abs().max()) <= 2  # rounding to 8 bits
    # The scale is clipped to the image: a 128 x 100 image gives views of its full height, upsampled.
    small = torch.full((3, 100, 128), 200, dtype=torch.uint8)
    assert torch.equal(ScaleJitterCrop(227, 0.5, 2.0, generator)(small), torch.full((3, 227, 227), 200))
    # Scale 2 on a large image: a 454-pixel square, every view inside the image.
    large = torch.full((3, 1000, 900), 50, dtype=torch.uint8)
    assert torch.equal(ScaleJitterCrop(227, 2.0, 2.0, generator)(large), torch.full((3, 227, 227), 50))
    views = RepeatedViews(ScaleJitterCrop(227, 0.5, 2.0, generator), 3)(ramp)
    assert views.shape == (3, 3, 227, 227) and not torch.equal(views[0], views[1])


def test_scale_jitter_mirrors_about_half_the_views() -> None:
    generator = torch.Generator().manual_seed(3)
    ramp = torch.arange(240).to(torch.uint8).expand(3, 240, 240).clone()
    crop = ScaleJitterCrop(227, 1.0, 1.0, generator)
    directions = [float(crop(ramp)[0, 0].float().diff().mean()) for _ in range(40)]
    mirrored = sum(direction < 0 for direction in directions)
    assert 10 <= mirrored <= 30 and all(abs(abs(d) - 1) < 0.01 for d in directions)


def test_whole_image_transform_squashes_the_whole_image() -> None:
    image = torch.zeros(3, 300, 500, dtype=torch.uint8)
    image[:, :, 250:] = 255  # right half white: it stays the right half after squashing
    out = whole_image_transform(256, 227)(image)
    assert out.shape == (3, 227, 227)
    assert out[0, :, :100].max() == 0 and out[0, :, 130:].min() == 255


def test_masked_bce_per_image_sums_the_classes_and_averages_the_images() -> None:
    logits = torch.tensor([[0.0, 1.0, -2.0], [3.0, 0.5, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    ignore = torch.tensor([[False, False, True], [False, False, False]])
    each = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    kept = each[~ignore]
    assert masked_bce(logits, targets, ignore, per_image=True).item() == pytest.approx(kept.sum().item() / 2)
    assert masked_bce(logits, targets, ignore).item() == pytest.approx(kept.mean().item())


def test_the_three_ap_rules_differ_as_their_definitions_say() -> None:
    # One class, ranked: positive, negative, positive, negative, positive.
    scores = torch.tensor([[5.0], [4.0], [3.0], [2.0], [1.0]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [0.0], [1.0]])
    area, _ = classification_map(scores, targets, ap_metric="area")
    envelope, _ = classification_map(scores, targets, ap_metric="area-envelope")
    eleven, _ = classification_map(scores, targets, ap_metric="11pt")
    # sklearn: mean of the precisions at each positive (1, 2/3, 3/5); the envelope is the same here (precision
    # never rises after a positive); the 11-point rule reads 1 at recall <= 1/3, 2/3 up to 2/3, 3/5 above.
    assert area == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert envelope == pytest.approx(area)
    assert eleven == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 3 / 5) / 11)
    # Precision rising after the first positive (negative, negative, positive, positive) lifts the envelope:
    # sklearn (1/3 + 2/4) / 2, the envelope 2/4 at both recalls.
    scores = torch.tensor([[4.0], [3.0], [2.0], [1.0]])
    targets = torch.tensor([[0.0], [0.0], [1.0], [1.0]])
    area, _ = classification_map(scores, targets, ap_metric="area")
    envelope, _ = classification_map(scores, targets, ap_metric="area-envelope")
    assert area == pytest.approx((1 / 3 + 1 / 2) / 2) and envelope == pytest.approx(0.5)
    with pytest.raises(ValueError, match="ap_metric must be one of"):
        classification_map(scores, targets, ap_metric="voc07")
