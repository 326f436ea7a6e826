"""Per-layer linear probes on a frozen trunk (docs/reference.md section 6.1), as a thin LightningModule.

Each probed layer's map is reduced as the protocol says (transfer/probe/protocols.py: a bilinear resize or a fixed
average pool to about 9,000 features), normalised per channel by a BatchNorm (affine or not, per protocol),
flattened and classified by one linear layer. All heads train in one pass over the data on one trunk: the trunk
runs once per batch, up to the deepest probed layer. The heads are independent (the loss is a sum of per-head
losses and the trunk is frozen), so training them together gives each head what a run of its own would give with
the same seed and data order.
"""

from __future__ import annotations

import zlib
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from lit_colorization.color import uint8_to_lab
from lit_colorization.data.encoded import DeviceCropper
from lit_colorization.store.checkpoint import CheckpointError, weights_checksum
from transfer.probe.probe_config import ALL_LAYERS
from transfer.probe.protocols import PROBE_LAYERS, LayerProbe, ProbeOptimizer, ProbeProtocol, ProbeSchedule
from transfer.trunk import Trunk

# What layer=all probes: the layers the literature reports. AlexNet's fc6/fc7 only when named: no protocol
# defines them, and fc6 alone costs several times the whole conv trunk.
STANDARD_LAYERS: dict[str, tuple[str, ...]] = {
    "alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5"),
    "resnet50": ("conv1", "res2", "res3", "res4", "res5"),
    "eccv16": ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8"),
}

MAX_TOP_K = 5
HEAD_INIT_STD = 0.01
TRUNK_PREFIX = "backbone."
TRUNK_CHECKSUM_KEY = "trunk_checksum"


def resolve_layers(spec: str, model_name: str) -> list[str]:
    """``"all"``, one layer or a comma-separated list -> the layers to probe, in the network's order."""
    if model_name not in PROBE_LAYERS:
        raise ValueError(
            f"no linear-probe layer table for model {model_name!r}; known: {sorted(PROBE_LAYERS)}"
        )
    known = list(PROBE_LAYERS[model_name])
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


def top_k_for(num_classes: int) -> int:
    """The "top-5" metric's k: 5, or every class when there are fewer."""
    return min(MAX_TOP_K, num_classes)


def head_generator(seed: int, layer: str) -> torch.Generator:
    """A generator per (seed, layer): a head starts the same whether it trains alone or beside others."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{layer}".encode()))


class ProbeHead(nn.Module):
    """Reduce (``probe.reduction``), BatchNorm per channel (affine or not), flatten, linear classifier.

    ``feature_shape`` is the layer's (C, H, W) at the run's input size; ``pooled_shape`` (C, h, w) and
    ``feature_dim`` (C h w) what the classifier sees.
    """

    def __init__(
        self,
        feature_shape: tuple[int, int, int],
        probe: LayerProbe,
        num_classes: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        channels, height, width = feature_shape
        self.feature_shape = feature_shape
        self.pooled_shape = (channels, *probe.reduction.output_size(height, width))
        self.feature_dim = channels * self.pooled_shape[1] * self.pooled_shape[2]
        self.reduce = probe.reduction.module()
        self.norm = nn.BatchNorm2d(channels, affine=probe.affine_norm)
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=HEAD_INIT_STD, generator=generator)
        nn.init.zeros_(self.classifier.bias)

    def pooled(self, features: Tensor) -> Tensor:
        """The reduced map (B x C x h x w) the head normalises."""
        return self.reduce(features)

    def forward(self, features: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.norm(self.pooled(features)), 1))


def build_heads(
    backbone: Trunk, protocol: ProbeProtocol, input_size: int, num_classes: int, seed: int
) -> tuple[dict[str, LayerProbe], nn.ModuleDict]:
    """One ``ProbeHead`` per output of ``backbone`` for ``input_size`` x ``input_size`` inputs, as ``protocol`` says.

    A ValueError names the layer, its map and the crop when the protocol cannot reduce it (a fixed kernel larger
    than the map), or when the network is not built as the protocol assumes.
    """
    network = backbone.network
    hparams = network.hparams_for_checkpoint()
    protocol.check_network(network.model_name, hparams)
    shapes = backbone.feature_shapes(input_size, input_size)
    probes, heads = {}, nn.ModuleDict()
    for layer in backbone.outputs:
        probe = protocol.layer_probe(network.model_name, layer, hparams)
        try:
            heads[layer] = ProbeHead(shapes[layer], probe, num_classes, head_generator(seed, layer))
        except ValueError as error:
            shape = " x ".join(map(str, shapes[layer]))
            raise ValueError(
                f"protocol {protocol.name}: {network.model_name} {layer} is {shape} at data.crop_size="
                f"{input_size}, too small for its {probe.reduction.describe()} ({error}); set data.crop_size=227, "
                "the protocols' size"
            ) from None
        probes[layer] = probe
    return probes, heads


class LinearProbeModule(L.LightningModule):
    """Trains one ``ProbeHead`` per layer of ``backbone`` with SGD; logs ``probe/<layer>/top1`` and ``top5`` (%).

    The heads follow ``protocol`` for ``input_size`` x ``input_size`` crops (``build_heads``); ``optimizer`` (lr
    per ``reference_batch_size`` images) and ``schedule`` are the resolved settings (the protocol's, with the
    config's overrides). ``batch_size`` is the per-device batch.
    """

    def __init__(
        self,
        backbone: Trunk,
        num_classes: int,
        protocol: ProbeProtocol,
        input_size: int,
        optimizer: ProbeOptimizer,
        schedule: ProbeSchedule,
        batch_size: int,
        seed: int = 0,
        device_cropper: DeviceCropper | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a linear probe needs at least 2 classes, the data has {num_classes}")
        self.backbone = backbone
        self.layer_probes, self.heads = build_heads(backbone, protocol, input_size, num_classes, seed)
        self.optimizer_settings = optimizer
        self.schedule = schedule
        self.batch_size = batch_size
        self.top_k = top_k_for(num_classes)
        # data.decode=gpu: batches hold JPEG bytes, decoded and cropped on the device as pretraining's are.
        self.device_cropper = device_cropper
        self._trunk_checksum: str | None = None
        self.val_top1 = nn.ModuleDict(
            {layer: MulticlassAccuracy(num_classes, top_k=1, average="micro") for layer in self.heads}
        )
        self.val_top5 = nn.ModuleDict(
            {
                layer: MulticlassAccuracy(num_classes, top_k=self.top_k, average="micro")
                for layer in self.heads
            }
        )
        self._val_labels: list[Tensor] = []
        self._val_ranked: dict[str, list[Tensor]] = {layer: [] for layer in self.heads}

    @property
    def feature_dims(self) -> dict[str, int]:
        return {layer: head.feature_dim for layer, head in self.heads.items()}

    @property
    def trunk_checksum(self) -> str:
        """The frozen trunk's ``weights_checksum``, computed once (at the first checkpoint written or read)."""
        if self._trunk_checksum is None:
            self._trunk_checksum = weights_checksum(self.backbone.network)
        return self._trunk_checksum

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The frozen trunk is the pretraining checkpoint's: last.ckpt keeps the heads and the trunk's checksum.
        checkpoint["state_dict"] = {
            key: value for key, value in checkpoint["state_dict"].items() if not key.startswith(TRUNK_PREFIX)
        }
        checkpoint[TRUNK_CHECKSUM_KEY] = self.trunk_checksum

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(TRUNK_CHECKSUM_KEY)
        if saved != self.trunk_checksum:
            raise CheckpointError(
                f"probe checkpoint: its trunk had weights checksum {str(saved)[:12]}, this run's trunk has "
                f"{self.trunk_checksum[:12]}; resume with the run's own ckpt or start another run (RUN=)"
            )
        trunk = {TRUNK_PREFIX + key: value for key, value in self.backbone.state_dict().items()}
        checkpoint["state_dict"] = {**checkpoint["state_dict"], **trunk}

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        if self.device_cropper is not None and "jpeg" in batch:
            # Decoded straight to the device: the JPEG bytes stay on the CPU for the decoder.
            batch = self.device_cropper(batch, self.device)
        return batch

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

    def on_validation_epoch_start(self) -> None:
        self._val_labels = []
        self._val_ranked = {layer: [] for layer in self.heads}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        labels = batch["label"]
        if labels.numel() == 0:
            return
        features = self.backbone(batch["lightness"])
        self._val_labels.append(labels.cpu())
        for layer, head in self.heads.items():
            logits = head(features[layer])
            self.val_top1[layer].update(logits, labels)
            self.val_top5[layer].update(logits, labels)
            self._val_ranked[layer].append(logits.topk(self.top_k, dim=1).indices.cpu())

    def validation_predictions(self) -> dict[str, np.ndarray]:
        """This process's last validation: ``labels`` (N,) and, per layer, the ``top_k`` classes its head ranked
        first (N, top_k), best first; what ``probe/<layer>/top1`` and ``top5`` count, so they can be recounted."""
        if not self._val_labels:
            return {}
        predictions = {"labels": torch.cat(self._val_labels).numpy()}
        for layer, ranked in self._val_ranked.items():
            predictions[layer] = torch.cat(ranked).numpy()
        return predictions

    def on_validation_epoch_end(self) -> None:
        for layer in self.heads:
            for name, metrics in (("top1", self.val_top1), ("top5", self.val_top5)):
                self.log(f"probe/{layer}/{name}", 100.0 * metrics[layer].compute())
                metrics[layer].reset()

    def scaled_lr(self) -> float:
        """The lr for this run's global batch: ``lr`` per ``reference_batch_size`` images."""
        world_size = self.trainer.world_size if self._trainer is not None else 1
        settings = self.optimizer_settings
        return settings.lr * self.batch_size * world_size / settings.reference_batch_size

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The heads' parameters: the classifier weights decayed; its biases at lr x ``bias_lr_mult``; biases and
        BatchNorm parameters decayed only with ``decay_norm_and_bias``."""
        settings = self.optimizer_settings
        lr = self.scaled_lr()
        other_decay = settings.weight_decay if settings.decay_norm_and_bias else 0.0
        weights = [head.classifier.weight for head in self.heads.values()]
        biases = [head.classifier.bias for head in self.heads.values()]
        norms = [parameter for head in self.heads.values() for parameter in head.norm.parameters()]
        groups = [
            {"name": "weights", "params": weights, "lr": lr, "weight_decay": settings.weight_decay},
            {
                "name": "biases",
                "params": biases,
                "lr": lr * settings.bias_lr_mult,
                "weight_decay": other_decay,
            },
            {"name": "norms", "params": norms, "lr": lr, "weight_decay": other_decay},
        ]
        return [group for group in groups if group["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        settings = self.optimizer_settings
        optimizer = torch.optim.SGD(
            self.parameter_groups(),
            lr=self.scaled_lr(),
            momentum=settings.momentum,
            nesterov=settings.nesterov,
        )
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(self.schedule.milestones), gamma=settings.gamma
        )
        interval = self.schedule.unit  # Lightning's intervals are the schedule's units: "step" or "epoch"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": interval}}
