"""Pascal VOC multi-label classification by fine-tuning a colorization trunk (the paper's Table 4 protocol).

The classifier is the trunk up to ``head_layer`` (AlexNet: fc7, dropping the colorization fc8), then global
average pooling and a new linear layer to the classes. ``train_from`` names the first trainable layer: the
stages before it keep their weights and stay in eval mode (BatchNorm statistics frozen) whatever Lightning
asks, those from it on train. ``train_from=fc6`` on AlexNet trains fc6, fc7 and the head; ``conv1`` all layers.

Loss: binary cross-entropy with logits; entries of classes present only as difficult objects (VOC's "0"
label) are left out of the loss as they are of the evaluation. Test: 10 crops per image (4 corners and the
centre, and their mirror images); the logits of the 10 views are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_colorization.color import uint8_to_lab
from lit_colorization.models import ColorizationNet
from transfer.trunk import Trunk
from transfer.voc.evaluation import classification_map
from transfer.voc.fine_tuning import fine_tuning_optimizer

# The layer under the new head: the deepest layer of the trunk proper (eccv16's conv8 is its upsampling decoder).
DEFAULT_HEAD_LAYER = {"alexnet": "fc7", "resnet50": "res5", "eccv16": "conv7"}
HEAD_INIT_STD = 0.01


def default_head_layer(network: ColorizationNet) -> str:
    return DEFAULT_HEAD_LAYER.get(network.model_name, network.feature_layers[-1])


class VOCClassifier(nn.Module):
    """``L`` (B x 1 x H x W in [0, 100]) -> class logits (B x C); the trunk's stages before ``train_from`` frozen.

    ``dropout`` > 0 drops that fraction of the outputs of ``dropout_layers`` (scaling the rest) while the
    classifier trains, whether or not those layers do, as Caffe's Dropout layers act in the TRAIN phase;
    ``head_bias`` is the new layer's initial bias (philkr/voc-classification: 0.1).
    """

    def __init__(
        self,
        network: ColorizationNet,
        head_layer: str,
        train_from: str,
        num_classes: int,
        dropout: float = 0.0,
        dropout_layers: tuple[str, ...] = (),
        head_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.head_layer = head_layer
        self.trunk = Trunk(network, [head_layer], train_from=train_from)
        self.head = nn.Linear(self.trunk.channels[head_layer], num_classes)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.constant_(self.head.bias, head_bias)
        self.frozen_layers, self.trainable_layers = self.trunk.frozen_layers, self.trunk.trainable_layers
        self.dropout = dropout
        for layer in dropout_layers:
            getattr(network, layer).register_forward_hook(self._drop)

    def _drop(self, _module: nn.Module, _args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        return F.dropout(output, self.dropout, training=self.training)

    def forward(self, lightness: Tensor) -> Tensor:
        return self.head(self.trunk(lightness)[self.head_layer].mean(dim=(2, 3)))


def average_views(logits: Tensor, num_views: int) -> Tensor:
    """(B * V, C) logits of V consecutive views per image -> (B, C), their mean."""
    if logits.ndim != 2 or logits.shape[0] % num_views:
        raise ValueError(f"expected (B * {num_views}, C) logits, got shape {tuple(logits.shape)}")
    return logits.view(-1, num_views, logits.shape[1]).mean(dim=1)


def masked_bce(logits: Tensor, targets: Tensor, ignore: Tensor, per_image: bool = False) -> Tensor:
    """Binary cross-entropy with logits over the entries not ``ignore``d: their mean, or with ``per_image`` their
    sum over the classes averaged over the images (philkr/voc-classification's SigmoidCrossEntropyLoss)."""
    keep = (~ignore).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, targets, weight=keep, reduction="sum")
    return losses / (logits.shape[0] if per_image else keep.sum().clamp_min(1.0))


def first_occurrences(index: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct value of ``index``, in ascending value order."""
    order = torch.argsort(index, stable=True)
    ordered = index[order]
    is_first = torch.ones_like(ordered, dtype=torch.bool)
    is_first[1:] = ordered[1:] != ordered[:-1]
    return order[is_first]


@dataclass  # not frozen: torchmetrics rebuilds what compute() returns
class ClassificationResult:
    map: float  # in [0, 1]
    per_class: list[float]  # NaN for a class without a positive test image
    num_images: int


class VOCClassificationMAP(Metric):
    """Collects test scores keyed by dataset index (synced across processes), then ``classification_map``."""

    full_state_update = False

    def __init__(self, ap_metric: str) -> None:
        super().__init__()
        self.ap_metric = ap_metric
        for name in ("index", "scores", "targets", "ignore"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, index: Tensor, scores: Tensor, targets: Tensor, ignore: Tensor) -> None:
        self.index.append(index.long())
        self.scores.append(scores.detach().float())
        self.targets.append(targets.float())
        self.ignore.append(ignore.bool())

    def compute(self) -> ClassificationResult:
        index = dim_zero_cat(self.index)
        keep = first_occurrences(index)  # a padded DDP shard repeats images; each counts once
        scores, targets, ignore = (
            dim_zero_cat(state)[keep] for state in (self.scores, self.targets, self.ignore)
        )
        mean_ap, per_class = classification_map(scores, targets, ignore.bool(), ap_metric=self.ap_metric)
        return ClassificationResult(mean_ap, per_class, int(keep.numel()))


class VOCClassificationModule(L.LightningModule):
    """Fine-tunes a ``VOCClassifier`` with SGD (``optim``: lr, momentum, weight_decay, milestones in steps,
    gamma); logs ``voc/train_loss`` and, after each evaluation, ``voc/map`` (in [0, 1])."""

    def __init__(
        self, classifier: VOCClassifier, optim: Any, ap_metric: str = "area", loss_per_image: bool = False
    ) -> None:
        super().__init__()
        self.classifier = classifier
        self.optim = optim
        self.loss_per_image = loss_per_image
        self.test_map = VOCClassificationMAP(ap_metric)
        self.last_result: ClassificationResult | None = None
        self.recorded: list[tuple[Tensor, ...]] | None = None  # a list: validation keeps what it scores

    @staticmethod
    def lightness(images: Tensor) -> Tensor:
        # Colour conversion on the device, as in pretraining: the network sees L in [0, 100].
        return uint8_to_lab(images)[:, :1]

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets, ignore = batch
        loss = masked_bce(self.classifier(self.lightness(images)), targets, ignore, self.loss_per_image)
        self.log("voc/train_loss", loss, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: tuple[Tensor, tuple[Tensor, Tensor, Tensor]], batch_idx: int) -> None:
        index, (views, targets, ignore) = batch  # an ``Indexed`` dataset of 10-view images
        logits = self.classifier(self.lightness(views.flatten(0, 1)))
        scores = average_views(logits, views.shape[1])
        self.test_map.update(index, scores, targets, ignore)
        if self.recorded is not None:
            self.recorded.append(tuple(t.detach().cpu() for t in (index, scores, targets, ignore)))

    def start_recording(self) -> None:
        """From now on validation keeps what it scores (``recorded_arrays``)."""
        self.recorded = []

    def recorded_arrays(self) -> dict[str, np.ndarray]:
        """This process's recorded test images in dataset order, once each: ``index``, ``scores`` (the 10-view
        averages), ``targets`` and ``ignore`` (N x classes), what ``voc/map`` is computed from."""
        index, scores, targets, ignore = (torch.cat(column) for column in zip(*self.recorded, strict=True))
        keep = first_occurrences(index)
        order = torch.argsort(index[keep])
        picked = {"index": index, "scores": scores, "targets": targets, "ignore": ignore}
        return {name: value[keep][order].numpy() for name, value in picked.items()}

    def on_validation_epoch_end(self) -> None:
        self.last_result = self.test_map.compute()
        self.test_map.reset()
        self.log("voc/map", self.last_result.map)

    def configure_optimizers(self) -> dict[str, Any]:
        return fine_tuning_optimizer(self.classifier, self.optim)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Caffe's clip_gradients: every gradient scaled by max_norm / global L2 norm when that norm exceeds it.
        max_norm = getattr(self.optim, "clip_gradients", None)
        if max_norm is not None:
            trainable = [p for p in self.classifier.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(trainable, max_norm)
