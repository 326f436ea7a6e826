"""The linear-probe protocols as data: how each layer's map is reduced, which BatchNorm, which SGD and schedule.

Both named protocols (docs/reference.md section 6.1) probe AlexNet in the standard geometry at 227x227 (section
4.3: conv1 96x55x55, conv2 256x27x27, conv3 and conv4 384x13x13, conv5 256x13x13); each head is the layer's
reduced map, a BatchNorm per channel, then one linear layer.

``zhang16`` (the release's ``feature_learning_tests/linear``, the paper's table): each map bilinearly resized to
10/6/5/5/6 per side (9600/9216/9600/9600/9216 features), BatchNorm without affine parameters; SGD with plain
momentum 0.9, lr 0.01, weight decay 5e-4 on every parameter; 140k iterations of 256, lr x0.1 every 40k.

``goyal19`` (Goyal et al. 2019, VISSL's numbers): average pooling with fixed kernel/stride (AlexNet conv1 19/4,
conv2 12/3, conv3 and conv4 9/1, conv5 8/1; ResNet-50 conv1 10/10 pad 4, res2 16/8, res3 13/5, res4 8/3, res5
12/2), BatchNorm without affine parameters for AlexNet and with them for ResNet-50; SGD with Nesterov momentum
0.9, lr 0.01, weight decay 5e-4 (AlexNet) or 1e-4 (ResNet-50) and none on BatchNorm parameters or biases; lr
x0.1 at 40k, 80k and 120k of 140k iterations of 256.

A protocol is defined only for the layers it names: zhang16 for AlexNet conv1-conv5, goyal19 for those and for
ResNet-50 conv1 and res2-res5. Any other layer (AlexNet fc6 and fc7, every eccv16 layer, ResNet-50 under zhang16)
is average-pooled to this project's grid (``FALLBACK_SIDE``, about 9,000 features) and trained with the
protocol's BatchNorm rule (no affine parameters), optimiser and schedule; its rows are labelled
``<protocol>-like``, because no published table was measured that way.

What the ResNet-50 here gives goyal19: at its default output stride 16, res5 runs at stride 1 after res4, so at
224 res5 is 2048x14x14 and pools to 2x2 as the table has it. Goyal et al.'s res5 convs are not dilated
(docs/reference.md section 11.5); timm's are, unless the network was built with ``dilated_res5=false`` (the
``resnet50_imagenet`` preset): a dilated res5 is probed the same way and its rows say ``goyal19-like``. At output stride 8 res4 and res5
are twice as large and the pooled sizes are not the protocol's, so goyal19 refuses it. goyal19 crops ResNet-50 at
224 where this project's configs crop every network at 227: the pooled grids are the same at both sizes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from lit_colorization.data.data_config import SHORTER_SIDE, SQUASH
from lit_colorization.registry import Registry

STEP = "step"
EPOCH = "epoch"
SCHEDULE_UNITS = (STEP, EPOCH)
LIKE_SUFFIX = "-like"


class Reduction(ABC):
    """How a probed layer's C x H x W map becomes the C x h x w grid the head normalises and classifies."""

    @abstractmethod
    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) for an H x W map; a ValueError if the map is too small for this reduction."""

    @abstractmethod
    def module(self) -> nn.Module:
        """The reduction as a parameter-free module on B x C x H x W tensors."""

    @abstractmethod
    def describe(self) -> str:
        """A short label for results rows and logs."""


class BilinearResize(nn.Module):
    """Bilinear resize of a map to ``side x side``, first and last samples on the input's (Caffe's ``Resize``)."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, features: Tensor) -> Tensor:
        # The release's Resize layer maps the end samples onto each other, as in AlexNet's fc8 resize
        # (lit_colorization/models/alexnet.py); downsampling this way samples, it does not average.
        return F.interpolate(features, size=(self.side, self.side), mode="bilinear", align_corners=True)

    def extra_repr(self) -> str:
        return f"side={self.side}"


@dataclass(frozen=True)
class Resize(Reduction):
    side: int

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.side, self.side

    def module(self) -> nn.Module:
        return BilinearResize(self.side)

    def describe(self) -> str:
        return f"bilinear resize to {self.side}x{self.side}"


@dataclass(frozen=True)
class AveragePool(Reduction):
    kernel: int
    stride: int
    padding: int = 0

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if min(height, width) + 2 * self.padding < self.kernel:
            raise ValueError(
                f"a {self.kernel}x{self.kernel} average pool needs a map of at least "
                f"{self.kernel - 2 * self.padding} per side, got {height}x{width}"
            )
        return tuple(  # type: ignore[return-value]
            (size + 2 * self.padding - self.kernel) // self.stride + 1 for size in (height, width)
        )

    def module(self) -> nn.Module:
        # PyTorch's defaults (floor rounding, padding counted in the average), as VISSL's AvgPool2d ops run.
        return nn.AvgPool2d(self.kernel, self.stride, self.padding)

    def describe(self) -> str:
        pad = f" pad {self.padding}" if self.padding else ""
        return f"average pool {self.kernel}/{self.stride}{pad}"


@dataclass(frozen=True)
class AdaptivePool(Reduction):
    side: int

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return self.side, self.side

    def module(self) -> nn.Module:
        return nn.AdaptiveAvgPool2d(self.side)

    def describe(self) -> str:
        return f"adaptive average pool to {self.side}x{self.side}"


# This project's grid for the layers no protocol defines: channels x side^2 about 9,000.
#   alexnet  fc6/fc7 4096x1x1 at 227 in the standard geometry: their global average, 4096 features.
#   resnet50 conv1 64x12x12 = 9216, res2 256x6x6 = 9216, res3 512x4x4 = 8192, res4 1024x3x3 = 9216,
#            res5 2048x2x2 = 8192 (goyal19's grids, reached by adaptive pooling: its zhang16-like reduction).
#   eccv16   conv1 64x12x12 = 9216, conv2 128x8x8 = 8192, conv3 256x6x6 = 9216, conv4..conv7 512x4x4 = 8192,
#            conv8 256x6x6 = 9216.
FALLBACK_SIDE: dict[str, dict[str, int]] = {
    "alexnet": {"fc6": 1, "fc7": 1},
    "resnet50": {"conv1": 12, "res2": 6, "res3": 4, "res4": 3, "res5": 2},
    "eccv16": {
        "conv1": 12, "conv2": 8, "conv3": 6, "conv4": 4, "conv5": 4, "conv6": 4, "conv7": 4, "conv8": 6,
    },
}  # fmt: skip

# The layers a probe may name per network, in forward order.
PROBE_LAYERS: dict[str, tuple[str, ...]] = {
    "alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"),
    "resnet50": ("conv1", "res2", "res3", "res4", "res5"),
    "eccv16": ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8"),
}


@dataclass(frozen=True)
class ProbeOptimizer:
    """SGD of the heads; ``lr`` is per ``reference_batch_size`` images and scales with the global batch."""

    lr: float
    reference_batch_size: int
    momentum: float
    nesterov: bool
    weight_decay: float
    decay_norm_and_bias: bool  # False: BatchNorm parameters and biases are not decayed
    gamma: float  # the lr is multiplied by this at each milestone
    bias_lr_mult: float = 1.0  # the classifiers' biases train at lr x this


@dataclass(frozen=True)
class ProbeSchedule:
    """The run's length and its lr milestones, counted in ``unit``s (optimizer steps or epochs)."""

    unit: str
    length: int
    milestones: tuple[int, ...]

    def scaled(self, unit: str, length: int) -> ProbeSchedule:
        """The same schedule over ``length`` ``unit``s: each milestone at the same fraction of the run.

        Rounded to the nearest unit; milestones that fall on 0 or on the end (or on one another) are dropped.
        140k steps with milestones at 40k/80k/120k become 28 epochs with milestones at 8/16/24.
        """
        moved = {math.floor(m * length / self.length + 0.5) for m in self.milestones}
        return ProbeSchedule(unit, length, tuple(sorted(m for m in moved if 0 < m < length)))


@dataclass(frozen=True)
class NetworkRecipe:
    """What a protocol defines for one network."""

    reductions: Mapping[str, Reduction]
    affine_norm: bool
    requires: Mapping[str, Any] = field(default_factory=dict)  # construction settings it assumes
    weight_decay: float | None = None  # None: the protocol's
    # Construction settings that change only some layers: a layer built otherwise keeps the protocol's reduction
    # but its rows say "<protocol>-like".
    layer_requires: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerProbe:
    """How one layer is probed: its reduction, its BatchNorm and the label its results carry."""

    layer: str
    label: str  # the protocol's name, or "<name>-like" for a layer it does not define
    reduction: Reduction
    affine_norm: bool


@dataclass(frozen=True)
class ProbeProtocol:
    name: str
    optimizer: ProbeOptimizer
    schedule: ProbeSchedule
    networks: Mapping[str, NetworkRecipe]
    resize_mode: str  # how its images reach the resize side before the crop (data.resize_mode's values)

    def check_network(self, model_name: str, hparams: Mapping[str, Any]) -> None:
        """A ValueError if ``model_name`` is built other than this protocol assumes (e.g. a training geometry)."""
        recipe = self.networks.get(model_name)
        for key, expected in (recipe.requires if recipe else {}).items():
            if hparams.get(key) != expected:
                raise ValueError(
                    f"protocol {self.name!r} probes {model_name} with {key}={expected!r}, "
                    f"this network has {key}={hparams.get(key)!r}"
                )

    def layer_probe(
        self, model_name: str, layer: str, hparams: Mapping[str, Any] | None = None
    ) -> LayerProbe:
        """How ``layer`` of ``model_name`` (built with ``hparams``) is probed, and the label its rows carry."""
        recipe = self.networks.get(model_name)
        if recipe is not None and layer in recipe.reductions:
            settings = hparams or {}
            built_as_assumed = all(
                settings.get(key) == expected
                for key, expected in recipe.layer_requires.get(layer, {}).items()
            )
            label = self.name if built_as_assumed else self.name + LIKE_SUFFIX
            return LayerProbe(layer, label, recipe.reductions[layer], recipe.affine_norm)
        side = FALLBACK_SIDE.get(model_name, {}).get(layer)
        if side is None:
            raise ValueError(f"no linear-probe reduction for {model_name} layer {layer!r}")
        return LayerProbe(layer, self.name + LIKE_SUFFIX, AdaptivePool(side), affine_norm=False)

    def optimizer_for(self, model_name: str) -> ProbeOptimizer:
        recipe = self.networks.get(model_name)
        if recipe is None or recipe.weight_decay is None:
            return self.optimizer
        return replace(self.optimizer, weight_decay=recipe.weight_decay)


ITERATIONS = ProbeSchedule(STEP, 140_000, (40_000, 80_000, 120_000))
ALEXNET_STANDARD = {"geometry": "probe"}  # lit_colorization/models/alexnet.py: the standard geometry

ZHANG16 = ProbeProtocol(
    name="zhang16",
    resize_mode=SQUASH,  # the release's ImageNet LMDB, 256 x 256 (docs/reference.md section 6.1)
    optimizer=ProbeOptimizer(
        lr=0.01,
        reference_batch_size=256,
        momentum=0.9,
        nesterov=False,
        weight_decay=5e-4,
        # The release's classifiers: "lr_mult: 2, decay_mult: 0" on every bias (docs/reference.md section 11.2);
        # its BatchNorms have no parameters.
        decay_norm_and_bias=False,
        gamma=0.1,
        bias_lr_mult=2.0,
    ),
    schedule=ITERATIONS,
    networks={
        "alexnet": NetworkRecipe(
            reductions={
                "conv1": Resize(10),
                "conv2": Resize(6),
                "conv3": Resize(5),
                "conv4": Resize(5),
                "conv5": Resize(6),
            },  # fmt: skip
            affine_norm=False,
            requires=ALEXNET_STANDARD,
        )
    },
)

GOYAL19 = ProbeProtocol(
    name="goyal19",
    resize_mode=SHORTER_SIDE,  # fair_ssb's "scale" transform to 256 (docs/reference.md section 6.1)
    optimizer=ProbeOptimizer(
        lr=0.01,
        reference_batch_size=256,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        decay_norm_and_bias=False,
        gamma=0.1,
    ),
    schedule=ITERATIONS,
    networks={
        "alexnet": NetworkRecipe(
            reductions={
                "conv1": AveragePool(19, 4),
                "conv2": AveragePool(12, 3),
                "conv3": AveragePool(9, 1),
                "conv4": AveragePool(9, 1),
                "conv5": AveragePool(8, 1),
            },  # fmt: skip
            affine_norm=False,
            requires=ALEXNET_STANDARD,
        ),
        "resnet50": NetworkRecipe(
            reductions={
                "conv1": AveragePool(10, 10, 4),
                "res2": AveragePool(16, 8),
                "res3": AveragePool(13, 5),
                "res4": AveragePool(8, 3),
                "res5": AveragePool(12, 2),
            },  # fmt: skip
            affine_norm=True,
            requires={"output_stride": 16},  # res5 at stride 1 after res4
            layer_requires={"res5": {"dilated_res5": False}},  # fair_ssb's res5 is not dilated
            weight_decay=1e-4,
        ),
    },
)

PROTOCOLS: Registry[ProbeProtocol] = Registry("linear-probe protocol")
PROTOCOLS.register(ZHANG16.name, ZHANG16)
PROTOCOLS.register(GOYAL19.name, GOYAL19)


def get_protocol(name: str) -> ProbeProtocol:
    """The protocol registered as ``name``; an unknown name is an error listing the known ones."""
    return PROTOCOLS.get(name)


def resolve_optimizer(protocol: ProbeOptimizer, overrides: Mapping[str, Any]) -> ProbeOptimizer:
    """``protocol``'s settings with every key ``overrides`` sets (not None) replaced."""
    return replace(protocol, **{key: value for key, value in overrides.items() if value is not None})


def resolve_schedule(
    protocol: ProbeSchedule, unit: str | None, length: int | None, milestones: Sequence[int] | None
) -> ProbeSchedule:
    """The protocol's schedule with what the config sets: a unit, a length, milestones (None: the protocol's).

    A length alone (or a unit with its length) keeps the protocol's milestones at the same fractions of the
    run (``ProbeSchedule.scaled``); explicit milestones are taken as they are. A unit other than the
    protocol's needs a length in that unit (a ValueError naming the key otherwise).
    """
    unit = unit or protocol.unit
    if length is None:
        if unit != protocol.unit:
            raise ValueError(
                f"config key 'schedule.length': expected a number of {unit}s with schedule.unit={unit} "
                f"(the protocol's schedule is {protocol.length} {protocol.unit}s), got None"
            )
        length = protocol.length
    schedule = (
        protocol.scaled(unit, length) if (unit, length) != (protocol.unit, protocol.length) else protocol
    )
    return schedule if milestones is None else replace(schedule, milestones=tuple(milestones))
