"""ResNet-50 colorizer: timm's ResNet-50 trunk with a 1-channel stem and a 1x1 conv head to the ``ab`` bins.

The trunk is built with ``pretrained=False`` (weights are never downloaded) and split into the stages the
later self-supervision benchmarks (Goyal et al. 2019) probe: ``conv1`` (stem conv, BN, ReLU, before the max
pool), ``res2`` (max pool + layer1), ``res3`` .. ``res5`` (layer2 .. layer4).

``output_stride`` is 16 by default: only the last stage is dilated instead of strided, so res5 keeps
1/16 resolution (11 x 11 logits at 176). ``output_stride=8`` also dilates res4, which quadruples the cost
of res4/res5 for 1/8-resolution logits (the AlexNet target stride).

``dilated_res5`` (output stride 16 only): timm dilates res5's second and third 3x3 convs by 2 when it keeps the
grid; Goyal et al.'s ResNet-50 (fair_self_supervision_benchmark ``modeling/resnet_model_helper.py:53-58,83-121``:
``conv_bn`` has no dilation, and ``resnet_colorize_finetune_linear.py:256-259`` builds res5 at stride 1) does not.
``dilated_res5=False`` builds theirs, as the ``resnet50_imagenet`` preset does; the default stays timm's so that
checkpoints written before the option existed (which do not record it) load into the network they trained.

Feature shapes for a 176 x 176 input at output stride 16 (C x H x W): conv1 64 x 88 x 88, res2 256 x 44 x 44,
res3 512 x 22 x 22, res4 1024 x 11 x 11, res5 2048 x 11 x 11 (res4 and res5 at 22 x 22 for output stride 8).
"""

from __future__ import annotations

import timm
from torch import nn

from lit_colorization.models.base import DEFAULT_NUM_BINS, ColorizationNet
from lit_colorization.models.registry import register_model

FEATURE_LAYERS = ("conv1", "res2", "res3", "res4", "res5")
SUPPORTED_OUTPUT_STRIDES = (8, 16)
TRUNK_CHANNELS = 2048


@register_model("resnet50")
class ResNet50Colorizer(ColorizationNet):
    """ResNet-50 colorizer at output stride 16 (default) or 8; res5 dilated (timm's) or not (Goyal et al.'s)."""

    feature_layers = FEATURE_LAYERS

    def __init__(
        self, num_bins: int = DEFAULT_NUM_BINS, output_stride: int = 16, dilated_res5: bool = True
    ) -> None:
        if output_stride not in SUPPORTED_OUTPUT_STRIDES:
            raise ValueError(
                f"resnet50: output_stride must be one of {SUPPORTED_OUTPUT_STRIDES}, got {output_stride}"
            )
        if not dilated_res5 and output_stride != 16:
            raise ValueError(f"resnet50: dilated_res5=false needs output_stride 16, got {output_stride}")
        super().__init__({"num_bins": num_bins, "output_stride": output_stride, "dilated_res5": dilated_res5})
        self.output_stride = output_stride
        trunk = timm.create_model(
            "resnet50",
            pretrained=False,
            in_chans=1,
            num_classes=0,
            global_pool="",
            output_stride=output_stride,
        )
        # The timm model object is dropped after its modules are regrouped, so no parameter is registered twice.
        self.conv1 = nn.Sequential(trunk.conv1, trunk.bn1, trunk.act1)
        self.res2 = nn.Sequential(trunk.maxpool, trunk.layer1)
        self.res3 = trunk.layer2
        self.res4 = trunk.layer3
        self.res5 = trunk.layer4
        if not dilated_res5:
            _undilate_(self.res5)
        self.logits = nn.Conv2d(TRUNK_CHANNELS, num_bins, kernel_size=1)


def _undilate_(stage: nn.Module) -> None:
    """Every dilated conv of ``stage`` made plain, with the padding that keeps its output size (stride 1 here)."""
    for conv in stage.modules():
        if isinstance(conv, nn.Conv2d) and conv.dilation != (1, 1):
            conv.dilation = (1, 1)
            conv.padding = tuple(size // 2 for size in conv.kernel_size)
