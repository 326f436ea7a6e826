"""Pascal VOC semantic segmentation: an FCN-32s-style network on a colorization trunk, and its mIoU.

The segmenter is the trunk up to ``head_layer`` (AlexNet: fc7, which the colorization AlexNet already computes
densely at stride 16; ResNet-50: res5; eccv16: conv7), a new 1x1 convolution to the classes (background
included) initialised to zero as FCN's score layer was, and a fixed bilinear upsampling to the input size
(FCN-32s learned its x32 deconvolution from a bilinear start; here it stays bilinear). ``train_from`` names the
first trainable layer, as in classification. Input: uint8 RGB batches are turned into ``L`` in [0, 100] inside
the module, as pretraining saw them.

Loss: per-pixel cross-entropy averaged over the pixels that are not void (VOC's 255: object borders and
unsure pixels). Score: VOC's mIoU: one confusion matrix over every scored pixel of the test set, IoU per class
``TP / (TP + FP + FN)``, averaged over the classes; a class absent from both the predictions and the ground
truth (possible only on a class subset or tiny data) has no IoU and is left out of the mean, as torchmetrics'
``MulticlassJaccardIndex(average="macro")`` does. Void pixels are never scored, whatever is predicted there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchvision import tv_tensors
from torchvision.transforms import v2

from lit_colorization.color import uint8_to_lab
from lit_colorization.models import ColorizationNet
from transfer.trunk import Trunk
from transfer.voc.classification import first_occurrences
from transfer.voc.dataset import SEGMENTATION_VOID
from transfer.voc.fine_tuning import fine_tuning_optimizer


class FCNSegmenter(nn.Module):
    """``L`` (B x 1 x H x W in [0, 100]) -> class scores (B x classes x H x W); the trunk before ``train_from``
    frozen."""

    def __init__(self, network: ColorizationNet, head_layer: str, train_from: str, num_classes: int) -> None:
        super().__init__()
        self.head_layer = head_layer
        self.trunk = Trunk(network, [head_layer], train_from=train_from)
        self.score = nn.Conv2d(self.trunk.channels[head_layer], num_classes, kernel_size=1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        self.frozen_layers, self.trainable_layers = self.trunk.frozen_layers, self.trunk.trainable_layers

    def forward(self, lightness: Tensor) -> Tensor:
        scores = self.score(self.trunk(lightness)[self.head_layer])
        return F.interpolate(scores, size=lightness.shape[-2:], mode="bilinear", align_corners=False)


def segmentation_train_transform(crop: int) -> v2.Compose:
    """(uint8 image, mask) -> random horizontal flip, random ``crop`` x ``crop`` crop; an image smaller than the
    crop is padded with black and its mask with void, so padding is never trained on."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: SEGMENTATION_VOID}
    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomCrop(crop, pad_if_needed=True, fill=fill)])


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """(classes x classes) int64 counts, rows the true class and columns the predicted one, over the pixels
    whose target is a class (``SEGMENTATION_VOID`` and any other label outside [0, classes) are skipped)."""
    if predictions.shape != targets.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape"
        )
    scored = (targets >= 0) & (targets < num_classes)
    pairs = targets[scored].long() * num_classes + predictions[scored].long()
    return torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_per_class(confusion: Tensor) -> list[float]:
    """IoU of each class from a confusion matrix; NaN for a class neither present nor predicted."""
    confusion = confusion.double()
    true_positives = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positives
    return [
        float("nan") if float(both) == 0 else float(hit / both)
        for hit, both in zip(true_positives, union, strict=True)
    ]


def mean_iou(per_class: list[float]) -> float:
    """The mean over the classes that have an IoU."""
    scored = [value for value in per_class if not math.isnan(value)]
    if not scored:
        raise ValueError("no class has an IoU: the test set has no scored pixel")
    return sum(scored) / len(scored)


@dataclass  # not frozen: torchmetrics rebuilds what compute() returns
class SegmentationResult:
    miou: float  # in [0, 1]
    per_class: list[float]  # background first; NaN for a class neither present nor predicted
    pixel_accuracy: float  # in [0, 1], over the scored pixels
    num_images: int


class VOCSegmentationIoU(Metric):
    """Per-image confusion matrices keyed by dataset index (synced across processes), then VOC's mIoU.

    Keeping one matrix per image (classes^2 counts) rather than one running sum lets a padded DDP shard's
    repeated images count once.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("confusion", default=[], dist_reduce_fx="cat")

    def update(self, index: Tensor, predictions: Tensor, targets: Tensor) -> None:
        """``predictions`` and ``targets``: B x H x W class labels of the images ``index``."""
        matrices = [
            confusion_matrix(prediction, target, self.num_classes).flatten()
            for prediction, target in zip(predictions, targets, strict=True)
        ]
        self.index.append(index.long())
        self.confusion.append(torch.stack(matrices))

    def compute(self) -> SegmentationResult:
        keep = first_occurrences(dim_zero_cat(self.index))
        total = dim_zero_cat(self.confusion)[keep].sum(0).reshape(self.num_classes, self.num_classes).cpu()
        per_class = iou_per_class(total)
        accuracy = float(total.diagonal().sum()) / max(float(total.sum()), 1.0)
        return SegmentationResult(mean_iou(per_class), per_class, accuracy, int(keep.numel()))


def void_masked_cross_entropy(scores: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over the pixels that are not void; 0 (with a gradient) for an all-void batch."""
    total = F.cross_entropy(scores, targets, ignore_index=SEGMENTATION_VOID, reduction="sum")
    return total / (targets != SEGMENTATION_VOID).sum().clamp_min(1)


class VOCSegmentationModule(L.LightningModule):
    """Fine-tunes a segmenter (an ``FCNSegmenter``, or an ``FCNAlexNet``, whose ``wants_lab`` asks for the whole
    ``Lab`` image) with SGD (``optim``: lr, momentum, weight_decay, milestones in steps, gamma, and the biases' lr
    multiplier and weight decay); logs ``voc/train_loss`` and, after each evaluation, ``voc/miou`` (in [0, 1])."""

    def __init__(self, segmenter: nn.Module, num_classes: int, optim: Any) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.optim = optim
        self.test_iou = VOCSegmentationIoU(num_classes)
        self.last_result: SegmentationResult | None = None
        self.recorded: dict[str, np.ndarray] | None = None  # a dict: validation keeps each image's masks

    def inputs(self, images: Tensor) -> Tensor:
        """uint8 RGB -> what the segmenter reads: ``L`` in [0, 100], or all of ``Lab``."""
        lab = uint8_to_lab(images.as_subclass(Tensor))
        return lab if getattr(self.segmenter, "wants_lab", False) else lab[:, :1]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, masks = batch
        loss = void_masked_cross_entropy(self.segmenter(self.inputs(images)), masks.as_subclass(Tensor))
        self.log("voc/train_loss", loss, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, tuple[Tensor, Tensor]], batch_idx: int) -> None:
        index, (images, masks) = batch  # an ``Indexed`` dataset of whole images
        predictions = self.segmenter(self.inputs(images)).argmax(dim=1)
        self.test_iou.update(index, predictions, masks.as_subclass(Tensor))
        if self.recorded is not None:  # per image (sizes differ), once each: predicted and true class maps
            for image, predicted, truth in zip(
                index.tolist(), predictions, masks.as_subclass(Tensor), strict=True
            ):
                self.recorded.setdefault(f"predicted_{image}", predicted.to(torch.uint8).cpu().numpy())
                self.recorded.setdefault(f"truth_{image}", truth.to(torch.uint8).cpu().numpy())

    def start_recording(self) -> None:
        """From now on validation keeps what it scores (``recorded_arrays``)."""
        self.recorded = {}

    def recorded_arrays(self) -> dict[str, np.ndarray]:
        """This process's recorded test images: ``predicted_<index>`` and ``truth_<index>`` class maps."""
        return dict(self.recorded or {})

    def on_validation_epoch_end(self) -> None:
        self.last_result = self.test_iou.compute()
        self.test_iou.reset()
        self.log("voc/miou", self.last_result.miou)
        self.log("voc/pixel_accuracy", self.last_result.pixel_accuracy)

    def configure_optimizers(self) -> dict[str, Any]:
        return fine_tuning_optimizer(self.segmenter, self.optim)
