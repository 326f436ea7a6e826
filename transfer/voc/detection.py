"""Pascal VOC detection: torchvision's Faster R-CNN on a colorization trunk, as a thin LightningModule.

The backbone is the trunk up to ``backbone_layer`` (AlexNet conv5, stride 16; ResNet-50 res4, stride 16; eccv16
conv5), one feature map, no FPN, with an RPN on it. Its BatchNorm layers always keep their pretrained statistics
and affine parameters (detection batches of 2 images are too small to estimate them); ``freeze_backbone`` freezes
the convolutions too. Two box heads (``protocol``, docs/voc_protocols.md):

- ``faster-rcnn-fc67`` (``build_fast_rcnn_detector``): Fast R-CNN's CaffeNet head on the BatchNorm-folded standard
  AlexNet: 6 x 6 RoI max pooling of conv5 at scale 1/16, the pretrained fc6 (its 6 x 6 conv as a linear layer)
  and fc7, each with ReLU and dropout 0.5, new ``cls_score`` N(0, 0.01^2) and ``bbox_pred`` N(0, 0.001^2);
  64 RoIs per image, 25% foreground at IoU >= 0.5, background in [0.1, 0.5); NMS 0.3; conv1 frozen
  (docs/reference.md section 11.7).
- ``faster-rcnn-mlp`` (``build_detector``): a new two-layer MLP on 7 x 7 RoIAlign features of the training
  geometry (whose fc6 is a dilated conv that does not fit a 7 x 7 RoI); fc6/fc7 do not transfer.

Input: torchvision's detectors take RGB in [0, 1]; ``LightnessRCNNTransform`` turns each image into ``L`` in
[0, 100] before resizing, instead of the ImageNet mean/std normalisation. Training ignores difficult objects
(Fast R-CNN's default); evaluation scores them as VOC does (neither positive nor negative).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, RoIPool, box_iou

from lit_colorization.color import rgb_to_lab
from lit_colorization.models import ColorizationNet
from lit_colorization.models.alexnet import PROBE_GEOMETRY, AlexNetColorizer
from transfer.trunk import Trunk
from transfer.voc.evaluation import detection_map, torchmetrics_detection_map
from transfer.voc.fine_tuning import fine_tuning_optimizer

DEFAULT_BACKBONE_LAYER = {"alexnet": "conv5", "resnet50": "res4", "eccv16": "conv5"}
FEATURE_MAP = "0"
ROI_SAMPLING_RATIO = 2

# Fast R-CNN's CaffeNet (docs/reference.md section 11.7): models/CaffeNet/train.prototxt and lib/fast_rcnn/config.py.
FC67_PROTOCOL = "faster-rcnn-fc67"
MLP_PROTOCOL = "faster-rcnn-mlp"
FAST_RCNN_LAYER = "conv5"  # roi_pool5 reads relu5's output
ROI_POOL_SIZE = 6  # pooled_w / pooled_h, fc6's kernel
CONV5_STRIDE = 16  # spatial_scale 0.0625
FAST_RCNN_DROPOUT = 0.5  # drop6, drop7
ROIS_PER_IMAGE = 64  # TRAIN.BATCH_SIZE 128 RoIs over TRAIN.IMS_PER_BATCH 2 images
FOREGROUND_FRACTION = 0.25
FOREGROUND_IOU = 0.5  # foreground at IoU >= 0.5, background below
BACKGROUND_IOU_LOW = 0.1  # background at IoU in [0.1, 0.5): proposals below 0.1 are not sampled
TEST_NMS = 0.3
CLS_SCORE_STD = 0.01  # cls_score's Gaussian filler, bias 0
BBOX_PRED_STD = 0.001  # bbox_pred's Gaussian filler, bias 0
FAST_RCNN_TRAIN_FROM = "conv2"  # conv1 has lr_mult 0


def default_backbone_layer(network: ColorizationNet) -> str:
    if network.model_name not in DEFAULT_BACKBONE_LAYER:
        raise ValueError(
            f"no default detection layer for model {network.model_name!r}; set detector.backbone_layer"
        )
    return DEFAULT_BACKBONE_LAYER[network.model_name]


class LightnessRCNNTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform with the normalisation replaced: RGB in [0, 1] -> ``L`` in [0, 100].

    Resizing, batching (padding with ``L`` = 0) and mapping boxes back to the input size are torchvision's.
    """

    def __init__(
        self,
        min_size: int,
        max_size: int,
        train_sizes: Sequence[int] | None = None,
        train_max_size: int | None = None,
    ) -> None:
        super().__init__(min_size, max_size, image_mean=[], image_std=[])
        # torchvision trains on its min_size tuple and tests at its last entry, under one max_size; Fast R-CNN
        # trains at its own scales and longer-side limit and tests at another (train_sizes None: the test's).
        self.test_sizes, self.test_max_size = (int(min_size),), int(max_size)
        self.train_sizes = tuple(int(size) for size in train_sizes) if train_sizes else self.test_sizes
        self.train_max_size = int(train_max_size) if train_max_size is not None else self.test_max_size

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """torchvision's resize at this mode's scales: in training each image's shorter side is drawn uniformly
        from ``train_sizes`` (Fast R-CNN draws per image too, lib/roi_data_layer/minibatch.py lines 20-21)."""
        if self.training:
            self.min_size, self.max_size = self.train_sizes, self.train_max_size
        else:
            self.min_size, self.max_size = self.test_sizes, self.test_max_size
        return super().resize(image, target)

    def normalize(self, image: Tensor) -> Tensor:
        if not image.is_floating_point() or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"detector input must be float RGB images (3 x H x W) in [0, 1], got {image.dtype} "
                f"{tuple(image.shape)}"
            )
        return rgb_to_lab(image[None])[0, :1]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(RGB -> L in [0, 100], train sizes {self.train_sizes} at most "
            f"{self.train_max_size}, test {self.test_sizes[0]} at most {self.test_max_size})"
        )


class ColorizationBackbone(nn.Module):
    """``L`` batch -> {"0": features of ``layer``}, with ``out_channels`` as torchvision's detectors require."""

    def __init__(
        self, network: ColorizationNet, layer: str, freeze: bool, train_from: str | None = None
    ) -> None:
        super().__init__()
        self.layer = layer
        train_from = None if freeze else (train_from or network.feature_layers[0])
        self.trunk = Trunk(network, [layer], train_from=train_from, freeze_batch_norm=True)
        self.out_channels = self.trunk.channels[layer]

    def forward(self, lightness: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict([(FEATURE_MAP, self.trunk(lightness)[self.layer])])


def build_detector(network: ColorizationNet, num_classes: int, detector: Any) -> FasterRCNN:
    """Faster R-CNN for ``num_classes`` object classes (plus background) on ``network``'s trunk.

    ``detector`` is a ``DetectorConfig``: backbone_layer (None: the network's default), freeze_backbone,
    min_size, max_size, anchor_sizes, aspect_ratios, roi_output_size, representation_size, score_threshold,
    detections_per_image.
    """
    layer = detector.backbone_layer or default_backbone_layer(network)
    backbone = ColorizationBackbone(network, layer, detector.freeze_backbone)
    anchors = AnchorGenerator(
        sizes=(tuple(int(size) for size in detector.anchor_sizes),),
        aspect_ratios=(tuple(float(ratio) for ratio in detector.aspect_ratios),),
    )
    roi_pool = MultiScaleRoIAlign([FEATURE_MAP], detector.roi_output_size, ROI_SAMPLING_RATIO)
    head = TwoMLPHead(backbone.out_channels * detector.roi_output_size**2, detector.representation_size)
    model = FasterRCNN(
        backbone,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=head,
        box_predictor=FastRCNNPredictor(detector.representation_size, num_classes + 1),
        box_score_thresh=detector.score_threshold,
        box_detections_per_img=detector.detections_per_image,
        min_size=detector.min_size,
        max_size=detector.max_size,
    )
    model.transform = LightnessRCNNTransform(
        detector.min_size, detector.max_size, detector.train_sizes, detector.train_max_size
    )
    return model


def conv_as_linear(conv: nn.Conv2d) -> nn.Linear:
    """The linear layer that computes ``conv`` on an input of exactly its kernel's size, flattened (C, H, W):
    the release's ``nobn_fc`` model holds fc6 and fc7 so (``InnerProduct``), for Fast R-CNN."""
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.padding not in ((0, 0), "valid"):
        raise ValueError(
            f"only an ungrouped, undilated, unpadded conv is a linear layer on its kernel's window, got {conv}"
        )
    linear = nn.Linear(conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1], conv.out_channels)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(conv.out_channels, -1))
        linear.bias.copy_(conv.bias)
    return linear.to(conv.weight.device)


def stage_conv(network: ColorizationNet, layer: str) -> nn.Conv2d:
    """The convolution of ``network``'s stage ``layer``."""
    return next(module for module in getattr(network, layer).modules() if isinstance(module, nn.Conv2d))


class PretrainedFCHead(nn.Module):
    """6 x 6 RoI features -> fc7: the pretrained fc6 (as a linear layer) and fc7, each followed by ReLU and
    dropout 0.5, as Fast R-CNN's CaffeNet (fc6, relu6, drop6, fc7, relu7, drop7)."""

    def __init__(self, fc6: nn.Conv2d, fc7: nn.Conv2d, dropout: float = FAST_RCNN_DROPOUT) -> None:
        super().__init__()
        self.fc6 = conv_as_linear(fc6)
        self.fc7 = conv_as_linear(fc7)
        self.dropout = nn.Dropout(dropout)
        self.out_channels = self.fc7.out_features

    def forward(self, pooled: Tensor) -> Tensor:
        hidden = self.dropout(torch.relu(self.fc6(pooled.flatten(1))))
        return self.dropout(torch.relu(self.fc7(hidden)))


class SingleMapRoIPool(nn.Module):
    """Fast R-CNN's ROIPooling (max over each bin) on the backbone's one map, called as torchvision's
    ``RoIHeads`` calls its ``box_roi_pool``: (features, proposals in input pixels, image sizes)."""

    def __init__(self, output_size: int = ROI_POOL_SIZE, stride: int = CONV5_STRIDE) -> None:
        super().__init__()
        self.pool = RoIPool(output_size, 1.0 / stride)

    def forward(
        self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        return self.pool(features[FEATURE_MAP], proposals)


class FastRCNNRoIHeads(RoIHeads):
    """torchvision's RoI heads with Fast R-CNN's background range: a proposal whose best IoU with an object is
    below ``BACKGROUND_IOU_LOW`` is not sampled (torchvision takes [0, 0.5) as background). An image without
    objects keeps torchvision's all-background labels (Fast R-CNN drops such images from training)."""

    def assign_targets_to_proposals(
        self, proposals: list[Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        matched, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        for proposals_in_image, boxes, labels_in_image in zip(proposals, gt_boxes, labels, strict=True):
            if boxes.numel():
                best = box_iou(boxes, proposals_in_image).max(dim=0).values
                labels_in_image[(labels_in_image == 0) & (best < BACKGROUND_IOU_LOW)] = -1
        return matched, labels


def fast_rcnn_predictor(in_features: int, num_classes: int) -> FastRCNNPredictor:
    """``cls_score`` (classes + background) and ``bbox_pred`` (4 per class and background) with Fast R-CNN's
    fillers."""
    predictor = FastRCNNPredictor(in_features, num_classes + 1)
    with torch.no_grad():
        for layer, std in ((predictor.cls_score, CLS_SCORE_STD), (predictor.bbox_pred, BBOX_PRED_STD)):
            layer.weight.normal_(0.0, std)
            layer.bias.zero_()
    return predictor


def build_fast_rcnn_detector(network: ColorizationNet, num_classes: int, detector: Any) -> FasterRCNN:
    """``faster-rcnn-fc67``: Faster R-CNN whose box head is Fast R-CNN's CaffeNet head on ``network``, an AlexNet
    in the standard (probe) geometry: RoI max pooling 6 x 6 of conv5 at scale 1/16, the pretrained fc6/fc7 with
    dropout, Fast R-CNN's RoI sampling and NMS, conv1 frozen. ``detector`` is a ``DetectorConfig``."""
    if not isinstance(network, AlexNetColorizer) or network.geometry != PROBE_GEOMETRY:
        raise ValueError(
            f"config key 'protocol': {FC67_PROTOCOL} needs an AlexNet in the standard geometry (fc6/fc7 as 6x6 "
            f"and 1x1 convs), got {network.model_name!r}; use protocol={MLP_PROTOCOL}"
        )
    # The head copies fc6/fc7 first: the trunk replaces the stages after conv5 by identities.
    head = PretrainedFCHead(stage_conv(network, "fc6"), stage_conv(network, "fc7"))
    backbone = ColorizationBackbone(
        network, FAST_RCNN_LAYER, detector.freeze_backbone, train_from=FAST_RCNN_TRAIN_FROM
    )
    anchors = AnchorGenerator(
        sizes=(tuple(int(size) for size in detector.anchor_sizes),),
        aspect_ratios=(tuple(float(ratio) for ratio in detector.aspect_ratios),),
    )
    predictor = fast_rcnn_predictor(head.out_channels, num_classes)
    # FasterRCNN accepts only RoIAlign as box_roi_pool: its RoI heads are replaced by Fast R-CNN's below.
    model = FasterRCNN(backbone, rpn_anchor_generator=anchors, box_head=head, box_predictor=predictor)
    model.roi_heads = FastRCNNRoIHeads(
        SingleMapRoIPool(),
        head,
        predictor,
        fg_iou_thresh=FOREGROUND_IOU,
        bg_iou_thresh=FOREGROUND_IOU,
        batch_size_per_image=ROIS_PER_IMAGE,
        positive_fraction=FOREGROUND_FRACTION,
        bbox_reg_weights=None,
        score_thresh=detector.score_threshold,
        nms_thresh=TEST_NMS,
        detections_per_img=detector.detections_per_image,
    )
    model.transform = LightnessRCNNTransform(
        detector.min_size, detector.max_size, detector.train_sizes, detector.train_max_size
    )
    return model


def collate_indexed_detection(
    batch: Sequence[tuple[int, tuple[Tensor, dict[str, Tensor]]]],
) -> tuple[Tensor, list[Tensor], list[dict[str, Tensor]]]:
    """``Indexed`` detection samples -> (indices, images, targets)."""
    return (
        torch.tensor([index for index, _ in batch], dtype=torch.long),
        [image for _, (image, _) in batch],
        [target for _, (_, target) in batch],
    )


def training_targets(targets: Sequence[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """Plain-tensor boxes and labels without the difficult objects (images left with none train as negatives)."""
    kept = []
    for target in targets:
        easy = ~target["difficult"].bool()
        kept.append({"boxes": target["boxes"].as_subclass(Tensor)[easy], "labels": target["labels"][easy]})
    return kept


def as_float_images(images: Sequence[Tensor]) -> list[Tensor]:
    return [image.float() / 255.0 for image in images]


@dataclass  # not frozen: torchmetrics rebuilds what compute() returns
class DetectionResult:
    map: float  # VOC07 11-point mAP at IoU 0.5 (the paper's metric), in [0, 1]
    per_class: dict[int, float]  # label id (1-based) -> AP
    map_torchmetrics: float  # torchmetrics' COCO-style 101-point AP at IoU 0.5
    per_class_torchmetrics: dict[int, float]
    num_images: int


class VOCDetectionMAP(Metric):
    """Collects detections and ground truth per image (synced across processes), then both mAPs.

    Each entry records the process that produced it: a padded DDP shard repeats a few images on another
    process, and only the copy from the lowest-ranked process that saw an image is scored.
    """

    full_state_update = False
    FIELDS = (
        "seen_image", "seen_rank",
        "pred_boxes", "pred_scores", "pred_labels", "pred_image", "pred_rank",
        "true_boxes", "true_labels", "true_difficult", "true_image", "true_rank",
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        for name in self.FIELDS:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        index: Tensor,
        predictions: Sequence[dict[str, Tensor]],
        targets: Sequence[dict[str, Tensor]],
        rank: int,
    ) -> None:
        device = index.device
        self.seen_image.append(index.long())
        self.seen_rank.append(torch.full_like(index, rank, dtype=torch.long))
        for image, prediction, target in zip(index.tolist(), predictions, targets, strict=True):
            count, true_count = len(prediction["boxes"]), len(target["boxes"])
            self.pred_boxes.append(prediction["boxes"].detach().float().reshape(-1, 4))
            self.pred_scores.append(prediction["scores"].detach().float())
            self.pred_labels.append(prediction["labels"].long())
            self.pred_image.append(torch.full((count,), image, dtype=torch.long, device=device))
            self.pred_rank.append(torch.full((count,), rank, dtype=torch.long, device=device))
            self.true_boxes.append(target["boxes"].as_subclass(Tensor).float().reshape(-1, 4))
            self.true_labels.append(target["labels"].long())
            self.true_difficult.append(target["difficult"].bool())
            self.true_image.append(torch.full((true_count,), image, dtype=torch.long, device=device))
            self.true_rank.append(torch.full((true_count,), rank, dtype=torch.long, device=device))

    def compute(self) -> DetectionResult:
        state = {name: dim_zero_cat(getattr(self, name)).cpu() for name in self.FIELDS}
        images = torch.unique(state["seen_image"])
        scoring_rank = torch.full((int(images.max()) + 1,), torch.iinfo(torch.long).max, dtype=torch.long)
        scoring_rank.scatter_reduce_(0, state["seen_image"], state["seen_rank"], reduce="amin")
        predictions = _per_image(state, "pred", ("boxes", "scores", "labels"), images, scoring_rank)
        truths = _per_image(state, "true", ("boxes", "labels", "difficult"), images, scoring_rank)
        mean_ap, per_class = detection_map(predictions, truths, iou_threshold=0.5, use_07_metric=True)
        tm_map, tm_per_class = torchmetrics_detection_map(predictions, truths, iou_threshold=0.5)
        return DetectionResult(mean_ap, per_class, tm_map, tm_per_class, int(images.numel()))


def _per_image(
    state: dict[str, Tensor], prefix: str, fields: tuple[str, ...], images: Tensor, scoring_rank: Tensor
) -> list[dict[str, Tensor]]:
    """Entries of ``prefix`` from each image's scoring process, grouped into one dict per image of ``images``."""
    image, rank = state[f"{prefix}_image"], state[f"{prefix}_rank"]
    keep = rank == scoring_rank[image]
    order = torch.argsort(image[keep], stable=True)
    counts = torch.bincount(image[keep], minlength=len(scoring_rank))[images].tolist()
    columns = {name: torch.split(state[f"{prefix}_{name}"][keep][order], counts) for name in fields}
    return [{name: columns[name][position] for name in fields} for position in range(len(images))]


class VOCDetectionModule(L.LightningModule):
    """Trains a torchvision detector with SGD (``optim``: lr, momentum, weight_decay, milestones in steps, gamma).

    Logs the detector's losses (``voc/loss_*``) and, after each evaluation, ``voc/map`` (VOC07 11-point) and
    ``voc/map_torchmetrics``.
    """

    def __init__(self, detector: FasterRCNN, optim: Any) -> None:
        super().__init__()
        self.detector = detector
        self.optim = optim
        self.test_map = VOCDetectionMAP()
        self.last_result: DetectionResult | None = None
        self.recorded: list[tuple[int, dict[str, Tensor], dict[str, Tensor]]] | None = None  # a list: kept

    def training_step(self, batch: tuple[list[Tensor], list[dict[str, Tensor]]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.detector(as_float_images(images), training_targets(targets))
        total = torch.stack(list(losses.values())).sum()
        for name, value in losses.items():
            self.log(f"voc/{name}", value, batch_size=len(images))
        self.log("voc/train_loss", total, batch_size=len(images))
        return total

    def validation_step(
        self, batch: tuple[Tensor, list[Tensor], list[dict[str, Tensor]]], batch_idx: int
    ) -> None:
        index, images, targets = batch
        detections = self.detector(as_float_images(images))
        self.test_map.update(index, detections, targets, self.global_rank)
        if self.recorded is not None:
            for image, prediction, target in zip(index.tolist(), detections, targets, strict=True):
                self.recorded.append((image, prediction, target))

    def start_recording(self) -> None:
        """From now on validation keeps what it scores (``recorded_arrays``)."""
        self.recorded = []

    def recorded_arrays(self) -> dict[str, np.ndarray]:
        """This process's recorded test images, once each, as flat arrays: ``pred_boxes`` (M x 4, x1 y1 x2 y2 in
        image pixels), ``pred_scores``, ``pred_labels`` and ``pred_image`` (the dataset index of each box); the
        same ``true_*`` for the ground truth with ``true_difficult``; ``index``: the images."""
        first = {}
        for image, prediction, target in self.recorded:
            first.setdefault(image, (prediction, target))
        columns: dict[str, list[np.ndarray]] = {}
        for image, (prediction, target) in sorted(first.items()):
            entries = {
                "pred_boxes": prediction["boxes"].reshape(-1, 4),
                "pred_scores": prediction["scores"],
                "pred_labels": prediction["labels"],
                "true_boxes": target["boxes"].as_subclass(Tensor).reshape(-1, 4),
                "true_labels": target["labels"],
                "true_difficult": target["difficult"],
            }
            for name, value in entries.items():
                columns.setdefault(name, []).append(value.detach().cpu().numpy())
            columns.setdefault("pred_image", []).append(np.full(len(prediction["boxes"]), image))
            columns.setdefault("true_image", []).append(np.full(len(target["boxes"]), image))
        arrays = {name: np.concatenate(values) for name, values in columns.items()}
        return {"index": np.array(sorted(first)), **arrays}

    def on_validation_epoch_end(self) -> None:
        self.last_result = self.test_map.compute()
        self.test_map.reset()
        self.log("voc/map", self.last_result.map)
        self.log("voc/map_torchmetrics", self.last_result.map_torchmetrics)

    def configure_optimizers(self) -> dict[str, Any]:
        return fine_tuning_optimizer(self.detector, self.optim)
