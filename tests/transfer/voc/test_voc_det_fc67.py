"""voc-det protocol faster-rcnn-fc67: Fast R-CNN's CaffeNet head (the pretrained fc6/fc7 on 6 x 6 RoI max pooling of
conv5) on the folded standard AlexNet, its RoI sampling, multi-scale training, optimizer, and the CLI end to end."""

import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn

from lit_colorization.color import ab_bins
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import write_checkpoint
from tests.helpers import bare_trainer, run_module
from tests.transfer.voc.test_voc_cls import TINY_CLASSES, tiny_data_overrides
from tests.transfer.voc.test_voc_det import assert_map_recomputes_from_the_saved_detections
from transfer.trunk import load_network
from transfer.voc.det_task import detection_protocol, protocol_optim
from transfer.voc.detection import (
    FastRCNNRoIHeads,
    LightnessRCNNTransform,
    SingleMapRoIPool,
    VOCDetectionModule,
    build_fast_rcnn_detector,
    conv_as_linear,
)
from transfer.voc.voc_config import VOC_DET, DetectorConfig

SMALL = DetectorConfig(
    min_size=64, max_size=96, train_sizes=[48, 64], train_max_size=128, anchor_sizes=[16, 32]
)


def _trained_geometry_network(seed: int = 0) -> nn.Module:
    """A width-0.125 AlexNet whose BatchNorm statistics are not the identity, so folding changes the weights."""
    torch.manual_seed(seed)
    network = create_model("alexnet", width=0.125).eval()
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return network


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "pre" / "checkpoints" / "last.ckpt"
    return write_checkpoint(path, _trained_geometry_network(), ab_bins(), None, {"run": "tiny-pretrain"})


def _standard_network(checkpoint: Path) -> nn.Module:
    network, _ = load_network(str(checkpoint), standard_geometry=True)
    return network


def test_fc6_as_a_linear_layer_computes_the_6x6_conv() -> None:
    conv = nn.Conv2d(32, 512, 6)
    linear = conv_as_linear(conv)
    assert (linear.in_features, linear.out_features) == (32 * 36, 512)
    pooled = torch.randn(5, 32, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(linear(pooled.flatten(1)), conv(pooled).flatten(1), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="ungrouped, undilated, unpadded"):
        conv_as_linear(nn.Conv2d(32, 64, 6, dilation=2, padding=5))


def test_roi_pool_maps_a_box_onto_its_conv5_cells_at_one_sixteenth() -> None:
    pool = SingleMapRoIPool()
    conv5 = torch.arange(2 * 20 * 20, dtype=torch.float32).reshape(1, 2, 20, 20)
    # x 32..112, y 48..128 pixels -> columns round(32/16)=2 .. round(112/16)=7, rows 3..8: one cell per bin.
    box = torch.tensor([[32.0, 48.0, 112.0, 128.0]])
    pooled = pool({"0": conv5}, [box], [(320, 320)])
    assert pooled.shape == (1, 2, 6, 6)
    assert torch.equal(pooled[0], conv5[0, :, 3:9, 2:8])
    # A box twice as wide: each bin takes the max of its two cells (the right one, as values grow along x).
    wide = pool({"0": conv5}, [torch.tensor([[0.0, 0.0, 176.0, 80.0]])], [(320, 320)])
    assert torch.equal(wide[0], conv5[0, :, 0:6, 1:12:2])


def test_the_checkpoints_folded_fc6_fc7_arrive_in_the_box_head(checkpoint: Path) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    state = {key.removeprefix("net."): value for key, value in state.items()}
    detector = build_fast_rcnn_detector(_standard_network(checkpoint), 3, SMALL)
    head = detector.roi_heads.box_head
    for layer, linear in (("fc6", head.fc6), ("fc7", head.fc7)):
        conv = "fc6.1" if layer == "fc6" else "fc7.0"  # fc6 opens with pool5; BatchNorm follows each conv
        norm = "fc6.2" if layer == "fc6" else "fc7.1"
        scale = torch.rsqrt(state[f"{norm}.running_var"] + 1e-5)
        expected_weight = (state[f"{conv}.weight"] * scale.view(-1, 1, 1, 1)).reshape(len(scale), -1)
        expected_bias = (state[f"{conv}.bias"] - state[f"{norm}.running_mean"]) * scale
        torch.testing.assert_close(linear.weight, expected_weight)
        torch.testing.assert_close(linear.bias, expected_bias)
    assert (
        head.fc6.in_features == 32 * 6 * 6 and head.fc7.out_features == 512
    )  # conv5 32 x 6 x 6 at width 1/8
    assert isinstance(detector.roi_heads, FastRCNNRoIHeads)
    predictor = detector.roi_heads.box_predictor
    assert (predictor.cls_score.out_features, predictor.bbox_pred.out_features) == (4, 16)
    assert predictor.cls_score.bias.abs().max() == 0 and predictor.bbox_pred.bias.abs().max() == 0
    assert predictor.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert predictor.bbox_pred.weight.std().item() == pytest.approx(0.001, rel=0.1)
    sampler = detector.roi_heads.fg_bg_sampler
    assert (sampler.batch_size_per_image, sampler.positive_fraction) == (64, 0.25)
    assert detector.roi_heads.nms_thresh == 0.3 and detector.roi_heads.proposal_matcher.high_threshold == 0.5


def test_head_dropout_trains_and_is_off_at_test(checkpoint: Path) -> None:
    head = build_fast_rcnn_detector(_standard_network(checkpoint), 3, SMALL).roi_heads.box_head
    pooled = torch.rand(4, 32, 6, 6, generator=torch.Generator().manual_seed(1))
    head.eval()
    expected = torch.relu(head.fc7(torch.relu(head.fc6(pooled.flatten(1)))))
    torch.testing.assert_close(head(pooled), expected)
    head.train()
    torch.manual_seed(0)
    dropped = head(pooled)
    assert 0.3 < (dropped == 0).float().mean().item() < 0.9  # both dropouts at 0.5 (and the ReLU's zeros)


def test_background_is_sampled_from_iou_01_to_05_only() -> None:
    heads = build_fast_rcnn_detector(_standard_network_fresh(), 3, SMALL).roi_heads
    truth = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    proposals = torch.tensor(
        [
            [0.0, 0.0, 100.0, 100.0],
            [0.0, 0.0, 100.0, 30.0],
            [0.0, 0.0, 30.0, 30.0],
            [200.0, 200.0, 220.0, 220.0],
        ]
    )  # IoU 1, 0.3, 0.09, 0
    _, labels = heads.assign_targets_to_proposals([proposals], [truth], [torch.tensor([2])])
    assert labels[0].tolist() == [2, 0, -1, -1]  # -1: never sampled
    _, empty = heads.assign_targets_to_proposals(
        [proposals], [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)]
    )
    assert empty[0].tolist() == [0, 0, 0, 0]  # an image without objects stays all background


def _standard_network_fresh() -> nn.Module:
    network, _ = load_network("random", "alexnet", {"width": 0.125}, standard_geometry=True)
    return network


def test_multi_scale_training_draws_each_images_shorter_side_and_tests_at_one() -> None:
    transform = LightnessRCNNTransform(56, 100, train_sizes=(48, 64, 80), train_max_size=100)
    image = torch.rand(3, 100, 150, generator=torch.Generator().manual_seed(0))
    transform.train()
    torch.manual_seed(0)
    drawn = Counter(transform.resize(image)[0].shape[-2] for _ in range(60))
    # 80 would make the longer side 120 > 100: capped at 100 / 150 -> shorter side 66.
    assert set(drawn) == {48, 64, 66} and min(drawn.values()) >= 10
    transform.eval()
    assert transform.resize(image)[0].shape[-2:] == (56, 84)  # the test scale, whatever training drew
    assert "train sizes (48, 64, 80) at most 100, test 56 at most 100" in repr(transform)


def test_optimizer_groups_and_schedule_are_fast_rcnns(checkpoint: Path) -> None:
    config = VOC_DET.load("voc07", [])
    optim = protocol_optim(config, "faster-rcnn-fc67")
    assert (optim.bias_lr_mult, optim.bias_weight_decay) == (2.0, 0.0)
    detector = build_fast_rcnn_detector(_standard_network(checkpoint), 3, SMALL)
    setup = VOCDetectionModule(detector, optim).configure_optimizers()
    optimizer, schedule = setup["optimizer"], setup["lr_scheduler"]["scheduler"]
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert (groups["weights"]["lr"], groups["weights"]["weight_decay"]) == (1e-3, 5e-4)
    assert (groups["biases"]["lr"], groups["biases"]["weight_decay"]) == (2e-3, 0.0)
    assert optimizer.defaults["momentum"] == 0.9
    trained = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    conv1 = detector.backbone.trunk.network.conv1[0]
    conv2 = detector.backbone.trunk.network.conv2[1]
    assert id(conv1.weight) not in trained and id(conv2.weight) in trained and id(conv2.bias) in trained
    head = detector.roi_heads.box_head
    assert {id(head.fc6.weight), id(head.fc7.bias)} <= trained
    assert dict(schedule.milestones) == {50_000: 1, 100_000: 1} and schedule.gamma == 0.1
    # faster-rcnn-mlp keeps one rate and decay for biases; explicit keys win over the protocol's.
    assert (
        protocol_optim(config, "faster-rcnn-mlp").bias_lr_mult,
        protocol_optim(config, "faster-rcnn-mlp").bias_weight_decay,
    ) == (1.0, None)
    explicit = VOC_DET.load("voc07", ["optim.bias_lr_mult=1", "optim.bias_weight_decay=5e-4"])
    assert (
        protocol_optim(explicit, "faster-rcnn-fc67").bias_lr_mult,
        protocol_optim(explicit, "faster-rcnn-fc67").bias_weight_decay,
    ) == (1.0, 5e-4)


def test_protocol_defaults_by_network_and_refuses_fc67_without_its_fc_layers() -> None:
    config = VOC_DET.load(None, [])
    alexnet = _standard_network_fresh()
    assert detection_protocol(config, alexnet) == "faster-rcnn-fc67"
    eccv16 = create_model("eccv16", width=0.125)
    assert detection_protocol(config, eccv16) == "faster-rcnn-mlp"
    with pytest.raises(ValueError, match="config key 'protocol': faster-rcnn-fc67 needs the AlexNet"):
        detection_protocol(VOC_DET.load(None, ["protocol=faster-rcnn-fc67"]), eccv16)
    with pytest.raises(ValueError, match="config key 'detector.backbone_layer'"):
        detection_protocol(VOC_DET.load(None, ["detector.backbone_layer=conv4"]), alexnet)
    training_geometry = create_model("alexnet", width=0.125)
    with pytest.raises(ValueError, match="standard geometry"):
        build_fast_rcnn_detector(training_geometry, 3, SMALL)


def test_cli_runs_fc67_on_the_tiny_voc_and_its_map_recomputes(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    result = run_module(
        "transfer.cli.voc_det",
        "ckpt=random",
        "model=alexnet",
        "model_kwargs.width=0.125",
        f"runs_dir={tmp_path / 'runs'}",
        f"results={results}",
        *tiny_data_overrides(tmp_path / "cache"),
        "detector.min_size=64",
        "detector.max_size=96",
        "detector.train_sizes=[48,64,80]",
        "detector.train_max_size=128",
        "detector.anchor_sizes=[16,32]",
        "trainer.max_steps=3",
        "trainer.accelerator=cpu",
        "trainer.progress_bar=false",
        "logger.kind=csv",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "faster-rcnn-fc67: Faster R-CNN, fc6-fc7 head on conv5" in result.stdout
    (row,) = [json.loads(line) for line in results.read_text().splitlines()]
    assert (row["protocol"], row["detector"], row["head"]) == ("faster-rcnn-fc67", "faster-rcnn", "fc6-fc7")
    assert (row["geometry"], row["ap_metric"], row["layer"], row["train_from"]) == (
        "standard",
        "11pt",
        "conv5",
        "conv2",
    )
    assert (
        row["proposals"].startswith("rpn")
        and row["train_sizes"] == [48, 64, 80]
        and row["bias_lr_mult"] == 2.0
    )
    assert row["steps"] == 3 and row["num_test_images"] == 6 and list(row["ap"]) == TINY_CLASSES
    assert math.isfinite(row["map"]) and 0.0 <= row["map"] <= 100.0
    run_dir = tmp_path / "runs" / "voc-det-random-alexnet-fc67-conv5"
    assert_map_recomputes_from_the_saved_detections(row, run_dir)


def test_two_training_steps_move_fc6_and_conv2_but_not_conv1(checkpoint: Path) -> None:
    detector = build_fast_rcnn_detector(_standard_network(checkpoint), 2, SMALL)
    network = detector.backbone.trunk.network
    before = {
        "conv1": network.conv1[0].weight.detach().clone(),
        "conv2": network.conv2[1].weight.detach().clone(),
        "fc6": detector.roi_heads.box_head.fc6.weight.detach().clone(),
    }
    images = [
        (torch.rand(3, 56, 56, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)
        for seed in range(4)
    ]
    targets = [
        {
            "boxes": torch.tensor([[4.0 + i, 6.0, 40.0, 44.0 - i]]),
            "labels": torch.tensor([1 + i % 2]),
            "difficult": torch.tensor([False]),
        }
        for i in range(4)
    ]
    loader = torch.utils.data.DataLoader(
        list(zip(images, targets, strict=True)),
        batch_size=2,
        collate_fn=lambda batch: tuple(zip(*batch, strict=True)),
    )
    module = VOCDetectionModule(
        detector, protocol_optim(VOC_DET.load(None, ["optim.lr=0.01"]), "faster-rcnn-fc67")
    )
    trainer = bare_trainer(max_steps=2)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 2
    assert torch.equal(network.conv1[0].weight, before["conv1"])  # Fast R-CNN's conv1: lr_mult 0
    assert not torch.equal(network.conv2[1].weight, before["conv2"])
    assert not torch.equal(detector.roi_heads.box_head.fc6.weight, before["fc6"])
