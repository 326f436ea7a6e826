"""AlexNet-style cross-channel encoder (the network behind every transfer result of Zhang et al. 2016).

conv1 96@11x11 stride 4, pool1, conv2 256@5x5, pool2, conv3 384@3x3, conv4 384@3x3, conv5 256@3x3, pool5,
fc6 as a 6x6 conv with dilation 2 (4096), fc7 as a 1x1 conv (4096), and ``logits`` (the paper's fc8), a
1x1 conv to the ``ab`` bins. Every conv is followed by BatchNorm then ReLU; convs are ungrouped.

``width`` multiplies every conv's channel count, fc6 and fc7 included (``scaled_channels``: rounded half up,
at least 8), for cheap CPU tests and demos; the logits keep ``num_bins`` channels. Width 1 is the paper network.

Each feature layer is the post-ReLU output of its conv; pool1, pool2 and pool5 open the conv2, conv3 and
fc6 stages. Shapes for the 227 x 227 input of the linear-probe protocol at width 1 (C x H x W):

    | layer | shape           |
    |-------|-----------------|
    | conv1 | 96 x 57 x 57    |
    | conv2 | 256 x 29 x 29   |
    | conv3 | 384 x 29 x 29   |
    | conv4 | 384 x 29 x 29   |
    | conv5 | 256 x 29 x 29   |
    | fc6   | 4096 x 29 x 29  |
    | fc7   | 4096 x 29 x 29  |
    | logits| 313 x 29 x 29   |
"""

from __future__ import annotations

from torch import nn

from lit_colorization.models.base import (
    DEFAULT_NUM_BINS,
    ColorizationNet,
    checked_width,
    kaiming_init_,
    scaled_channels,
)
from lit_colorization.models.registry import register_model

FEATURE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
FC_CHANNELS = 4096


def _conv_bn_relu(
    in_channels: int, channels: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> list[nn.Module]:
    # The conv bias is redundant in front of BatchNorm.
    return [
        nn.Conv2d(
            in_channels, channels, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    ]


# Geometry: targets sit at stride 8, so the only downsampling is conv1 (stride 4, padding 5: exactly H/4 for H
# divisible by 4) and pool1 (stride 2, padding 1: exactly half of an even size); pool2 and pool5 keep stride 1
# with padding 1, and fc6's 6x6 dilation-2 kernel spans 11 pixels, so padding 5 keeps the size. Hence logits
# are exactly H/8 x W/8 for H, W divisible by 8.
@register_model("alexnet")
class AlexNetColorizer(ColorizationNet):
    """AlexNet-style colorizer at output stride 8."""

    feature_layers = FEATURE_LAYERS
    output_stride = 8

    def __init__(self, num_bins: int = DEFAULT_NUM_BINS, width: float = 1.0) -> None:
        width = checked_width(width, "alexnet")
        super().__init__({"num_bins": num_bins, "width": width})
        c96, c256, c384, fc = (scaled_channels(channels, width) for channels in (96, 256, 384, FC_CHANNELS))
        self.conv1 = nn.Sequential(*_conv_bn_relu(1, c96, kernel_size=11, stride=4, padding=5))
        self.conv2 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            *_conv_bn_relu(c96, c256, kernel_size=5, padding=2),
        )
        self.conv3 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            *_conv_bn_relu(c256, c384, kernel_size=3, padding=1),
        )
        self.conv4 = nn.Sequential(*_conv_bn_relu(c384, c384, kernel_size=3, padding=1))
        self.conv5 = nn.Sequential(*_conv_bn_relu(c384, c256, kernel_size=3, padding=1))
        self.fc6 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            *_conv_bn_relu(c256, fc, kernel_size=6, padding=5, dilation=2),
        )
        self.fc7 = nn.Sequential(*_conv_bn_relu(fc, fc, kernel_size=1))
        self.logits = nn.Conv2d(fc, num_bins, kernel_size=1)
        for stage in self.layer_modules().values():
            kaiming_init_(stage)
