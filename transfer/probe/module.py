"""Per-layer linear probes on a frozen trunk (docs/reference.md section 6), as a thin LightningModule.

Each probed layer's features are average-pooled to a fixed grid of about 9,000 dimensions, normalised by a
BatchNorm without affine parameters and classified by one linear layer. All heads train in one pass over the
data on one trunk: the trunk runs once per batch, up to the deepest probed layer. The heads are independent
(the loss is a sum of per-head losses and the trunk is frozen), so training them together gives each head
what a run of its own would give with the same seed and data order.
"""

from __future__ import annotations

import zlib
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lit_colorization.color import uint8_to_lab
from transfer.probe.config import ALL_LAYERS
from transfer.trunk import Trunk

# Side of the pooled grid per layer, so that channels x side x side is about 9,000 (C x side^2 = dims):
#   alexnet  conv1 96x10x10 = 9600, conv2 256x6x6 = 9216, conv3/conv4 384x5x5 = 9600, conv5 256x6x6 = 9216
#            (the paper's table); fc6/fc7 4096x2x2 = 16384 (closer to 9,000 than a 4096-d global vector).
#   resnet50 conv1 64x12x12 = 9216, res2 256x6x6 = 9216, res3 512x4x4 = 8192, res4 1024x3x3 = 9216,
#            res5 2048x2x2 = 8192 (Goyal et al. 2019).
#   eccv16   conv1 64x12x12 = 9216, conv2 128x8x8 = 8192, conv3 256x6x6 = 9216, conv4..conv7 512x4x4 = 8192,
#            conv8 256x6x6 = 9216 (this project's choice, in the same spirit).
POOLED_SIDE: dict[str, dict[str, int]] = {
    "alexnet": {"conv1": 10, "conv2": 6, "conv3": 5, "conv4": 5, "conv5": 6, "fc6": 2, "fc7": 2},
    "resnet50": {"conv1": 12, "res2": 6, "res3": 4, "res4": 3, "res5": 2},
    "eccv16": {
        "conv1": 12, "conv2": 8, "conv3": 6, "conv4": 4, "conv5": 4, "conv6": 4, "conv7": 4, "conv8": 6,
    },
}  # fmt: skip

# What layer=all probes: the layers the literature reports. AlexNet's fc6/fc7 only when named, since fc6
# alone costs several times the whole conv trunk.
STANDARD_LAYERS: dict[str, tuple[str, ...]] = {
    "alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5"),
    "resnet50": ("conv1", "res2", "res3", "res4", "res5"),
    "eccv16": ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8"),
}

MAX_TOP_K = 5
HEAD_INIT_STD = 0.01


def resolve_layers(spec: str, model_name: str) -> list[str]:
    """``"all"``, one layer or a comma-separated list -> the layers to probe, in the network's order."""
    if model_name not in POOLED_SIDE:
        raise ValueError(
            f"no linear-probe layer table for model {model_name!r}; known: {sorted(POOLED_SIDE)}"
        )
    known = list(POOLED_SIDE[model_name])
    if spec.strip() == ALL_LAYERS:
        return list(STANDARD_LAYERS[model_name])
    asked = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in asked if name not in known]
    if unknown or not asked:
        raise ValueError(
            f"config key 'layer': {model_name} has no probe layer(s) {unknown or spec!r}; "
            f"expected 'all' or names from {known}"
        )
    return [name for name in known if name in asked]


def pooled_side(model_name: str, layer: str) -> int:
    """Side of the grid ``layer`` of ``model_name`` is pooled to (see ``POOLED_SIDE``)."""
    side = POOLED_SIDE.get(model_name, {}).get(layer)
    if side is None:
        raise ValueError(f"no linear-probe pooling size for {model_name} layer {layer!r}; see POOLED_SIDE")
    return side


def top_k_for(num_classes: int) -> int:
    """The "top-5" metric's k: 5, or every class when there are fewer."""
    return min(MAX_TOP_K, num_classes)


def head_generator(seed: int, layer: str) -> torch.Generator:
    """A generator per (seed, layer): a head starts the same whether it trains alone or beside others."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{layer}".encode()))


class ProbeHead(nn.Module):
    """Average-pool to ``side x side``, flatten, BatchNorm without affine parameters, linear classifier."""

    def __init__(self, channels: int, side: int, num_classes: int, generator: torch.Generator) -> None:
        super().__init__()
        self.feature_dim = channels * side * side
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.norm = nn.BatchNorm1d(self.feature_dim, affine=False)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=HEAD_INIT_STD, generator=generator)
        nn.init.zeros_(self.classifier.bias)

    def pooled(self, features: Tensor) -> Tensor:
        """The ``feature_dim``-long vector per image that the classifier sees (before normalisation)."""
        return torch.flatten(self.pool(features), 1)

    def forward(self, features: Tensor) -> Tensor:
        return self.classifier(self.norm(self.pooled(features)))


class LinearProbeModule(L.LightningModule):
    """Trains one ``ProbeHead`` per layer of ``backbone`` with SGD; logs ``probe/<layer>/top1`` and ``top5`` (%).

    ``optim`` carries lr (per ``reference_batch_size`` images), reference_batch_size, momentum, nesterov,
    weight_decay, milestones (epochs) and gamma; ``batch_size`` is the per-device batch.
    """

    def __init__(self, backbone: Trunk, num_classes: int, optim: Any, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a linear probe needs at least 2 classes, the data has {num_classes}")
        self.backbone = backbone
        self.heads = nn.ModuleDict(
            {
                layer: ProbeHead(
                    backbone.channels[layer],
                    pooled_side(backbone.network.model_name, layer),
                    num_classes,
                    head_generator(seed, layer),
                )
                for layer in backbone.outputs
            }
        )
        self.optim = optim
        self.batch_size = batch_size
        self.top_k = top_k_for(num_classes)
        self.val_top1 = nn.ModuleDict(
            {layer: MulticlassAccuracy(num_classes, top_k=1, average="micro") for layer in self.heads}
        )
        self.val_top5 = nn.ModuleDict(
            {
                layer: MulticlassAccuracy(num_classes, top_k=self.top_k, average="micro")
                for layer in self.heads
            }
        )

    @property
    def feature_dims(self) -> dict[str, int]:
        return {layer: head.feature_dim for layer, head in self.heads.items()}

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        # Colour conversion on the device, as in pretraining: the network sees L in [0, 100].
        batch["lightness"] = uint8_to_lab(batch["rgb"])[:, :1]
        return batch

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        labels = batch["label"]
        if labels.numel() == 0:  # every file of the batch was unreadable
            return None
        features = self.backbone(batch["lightness"])
        total = labels.new_zeros((), dtype=torch.float32)
        for layer, head in self.heads.items():
            loss = F.cross_entropy(head(features[layer]), labels)
            self.log(f"probe/{layer}/train_loss", loss, batch_size=labels.numel())
            total = total + loss
        return total

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        labels = batch["label"]
        if labels.numel() == 0:
            return
        features = self.backbone(batch["lightness"])
        for layer, head in self.heads.items():
            logits = head(features[layer])
            self.val_top1[layer].update(logits, labels)
            self.val_top5[layer].update(logits, labels)

    def on_validation_epoch_end(self) -> None:
        for layer in self.heads:
            for name, metrics in (("top1", self.val_top1), ("top5", self.val_top5)):
                self.log(f"probe/{layer}/{name}", 100.0 * metrics[layer].compute())
                metrics[layer].reset()

    def scaled_lr(self) -> float:
        """The lr for this run's global batch: ``optim.lr`` per ``optim.reference_batch_size`` images."""
        world_size = self.trainer.world_size if self._trainer is not None else 1
        return self.optim.lr * self.batch_size * world_size / self.optim.reference_batch_size

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.SGD(
            self.heads.parameters(),
            lr=self.scaled_lr(),
            momentum=self.optim.momentum,
            nesterov=self.optim.nesterov,
            weight_decay=self.optim.weight_decay,
        )
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(self.optim.milestones), gamma=self.optim.gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
