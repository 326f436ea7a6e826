"""What the online evaluation reads from the colorizer while it trains: per-layer features and linear heads on them.

``FeatureTap`` keeps the outputs of the trunk stages from the forward passes the run makes anyway (training and
validation), detached, through forward hooks: the features cost no extra forward pass and no gradient reaches
the colorizer through them. Hooks are installed once, before the first forward pass, and never changed, which
is what ``torch.compile`` needs to trace them into the compiled network instead of recompiling.

``OnlineProbes`` are heads like the linear probe's (average-pooled to about 9,000 features, BatchNorm without
affine parameters, one linear layer; docs/reference.md section 6), trained with their own SGD on the training
batches' labels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lit_colorization.models.base import ColorizationNet

# The paper's linear probe reduces every layer to about 9,000 features (docs/reference.md section 6).
# round(sqrt(POOLED_DIMS / channels)) as the side of the pooled grid gives the side the probe uses for each layer
# of the full-width networks (alexnet conv1 96 channels -> 10, eccv16 conv2 128 -> 8, resnet50 res4 1024 -> 3,
# ...; transfer/probe/protocols.py, which this package does not import). Here it is always an average pool,
# self-contained; a narrow network's few channels get a larger grid, capped at the feature map's own size.
POOLED_DIMS = 9216


def pooled_side(channels: int, height: int, width: int) -> int:
    """Side of the square grid a ``channels x height x width`` feature map is average-pooled to."""
    side = max(1, round(math.sqrt(POOLED_DIMS / channels)))
    return min(side, height, width)


def pool(features: Tensor, side: int) -> Tensor:
    """(B, C, H, W) -> (B, C * side * side) fp32: the vector per image that heads and the kNN bank see."""
    # Pooled before the cast: under bf16 autocast only the small pooled tensor is copied to fp32 (the pooling
    # itself accumulates in fp32). A map already side x side is left as it is: PyTorch's CPU kernel takes
    # milliseconds even for that identity.
    if tuple(features.shape[-2:]) != (side, side):
        features = F.adaptive_avg_pool2d(features, side)
    return torch.flatten(features, 1).float()


class FeatureTap:
    """The latest output of each of ``layers``' stages in ``network``, detached, from whatever forward ran last."""

    def __init__(self, network: ColorizationNet, layers: Sequence[str]) -> None:
        stages = network.layer_modules()
        unknown = [layer for layer in layers if layer not in stages]
        if unknown:
            raise ValueError(f"{network.model_name} has no feature layer(s) {unknown}; valid: {list(stages)}")
        self.layers = list(layers)
        self._latest: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = [
            stages[layer].register_forward_hook(self._keeper(layer)) for layer in self.layers
        ]

    def _keeper(self, layer: str):
        def keep(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            self._latest[layer] = output.detach()

        return keep

    def clear(self) -> None:
        self._latest = {}

    def take(self) -> dict[str, Tensor]:
        """The features of the last forward pass, every layer's (empty if a layer did not run); then forgets them."""
        latest, self._latest = self._latest, {}
        return latest if len(latest) == len(self.layers) else {}

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def feature_shapes(network: ColorizationNet, layers: Sequence[str], crop_size: int) -> dict[str, torch.Size]:
    """(C, H, W) of each layer for a ``crop_size`` input: one forward of one blank image in eval mode, so that
    no BatchNorm statistic moves, with the network put back in the mode it was in."""
    was_training = network.training
    parameter = next(network.parameters())
    network.eval()
    try:
        with torch.no_grad():
            blank = torch.zeros(1, 1, crop_size, crop_size, device=parameter.device)
            return {layer: output.shape[1:] for layer, output in network.features(blank, layers).items()}
    finally:
        network.train(was_training)


class ProbeHead(nn.Module):
    def __init__(self, dims: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dims, affine=False)
        self.classifier = nn.Linear(dims, num_classes)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.classifier(self.norm(pooled))


class OnlineProbes(nn.Module):
    """One head per layer on the pooled features; ``update`` is one SGD step of all heads on one batch."""

    def __init__(
        self,
        shapes: dict[str, torch.Size],
        num_classes: int,
        lr: float,
        momentum: float,
        weight_decay: float,
    ) -> None:
        super().__init__()
        self.sides = {layer: pooled_side(*shape) for layer, shape in shapes.items()}
        self.heads = nn.ModuleDict(
            {
                layer: ProbeHead(shape[0] * self.sides[layer] ** 2, num_classes)
                for layer, shape in shapes.items()
            }
        )
        # Moving the heads to another device keeps their parameters (the same objects), so this stays valid.
        # One optimizer over every head, fused: its step is a few kernels for all heads, not a few per tensor.
        self.optimizer = torch.optim.SGD(
            self.heads.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay, fused=True
        )
        self.steps = 0  # SGD steps taken: heads that never trained are not evaluated

    @property
    def dims(self) -> dict[str, int]:
        return {layer: head.classifier.in_features for layer, head in self.heads.items()}

    def update(self, features: dict[str, Tensor], labels: Tensor) -> None:
        """One step of every head on a batch's features; the heads' gradients only, never the network's."""
        if labels.numel() < 2:  # BatchNorm needs two samples to normalise a batch
            return
        self.heads.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = sum(
                F.cross_entropy(head(pool(features[layer].detach(), self.sides[layer])), labels)
                for layer, head in self.heads.items()
            )
            loss.backward()
        self.optimizer.step()
        self.steps += 1

    @torch.no_grad()
    def correct(self, features: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        """Per layer, how many of the batch's images the head classifies right (a 0-d tensor, not synced)."""
        self.heads.eval()
        return {
            layer: (head(pool(features[layer], self.sides[layer])).argmax(dim=1) == labels).sum()
            for layer, head in self.heads.items()
        }
