"""The release's FCN-AlexNet (voc-seg ``protocol=release``), built on the BatchNorm-folded standard AlexNet.

docs/reference.md section 11.6 ([R] ``feature_learning_tests/segmentation/train_val.prototxt``): the standard
CaffeNet layers with conv1 **padded by 100**, fc6 a 6x6 convolution and fc7 1x1, each followed by dropout 0.5;
``score-fr`` 21@1x1 (no filler in the prototxt: Caffe's default constant 0, so weights and bias start at zero);
a **fixed** ``Deconvolution`` 21@63x63 stride 32, group 21 (both its blobs at ``lr_mult: 0``) holding the bilinear
kernel ``surgery.interp`` writes; and a ``Crop`` of that map to the input size at ``crop_offset``.

The colour branch (``colour_branch``, the release's choice): the prototxt's ``data_ab`` layer is a fixed 1x1
convolution from the two ``ab`` channels to **one** channel with both weights 0.69308239, i.e.
``0.69308239 * (a + b)``; ``conv1_ab`` (96@11x11 stride 4 pad 100, no filler: zero, learned with conv1's rates)
reads it and is summed into conv1 before the ReLU. The pretrained colorization weights have no ``conv1_ab``, so
the branch starts at zero and the network first sees only ``L``.

Crop offset: an output pixel ``j`` of ``score-fr`` is centred on input pixel ``32 j + 13`` (fc6's 6x6 window on
pool5, three 3x3 stride-2 pools, conv1 11x11 stride 4 padded by 100: ``4 (8 j + 27) - 95``), while the
deconvolution puts that pixel's kernel centre at ``32 j + 31``; so input pixel ``y`` is deconvolution pixel
``y + 18``: ``ALIGNED_CROP_OFFSET`` (``aligned_crop_offset`` computes it as Caffe's ``coord_map.crop`` does; FCN's
own ``voc-fcn-alexnet/train.prototxt`` has ``crop_param { axis: 2 offset: 18 }``). The release's prototxt gives
its ``Crop`` no ``crop_param``, and the release's Caffe then crops at offset 0 (``RELEASE_CROP_OFFSET``: its
``crop_layer.cpp`` starts every offset at 0 and ``CropParameter.offset`` has no default): its score at pixel ``y``
describes input pixel ``y - 18``, a map 18 pixels down and right of the image it labels. ``crop_offset`` (the
config key) picks either; 0 is the release's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_colorization.models.alexnet import PROBE_GEOMETRY, AlexNetColorizer
from lit_colorization.models.base import normalise_lightness

CONV1_PAD = 100
UPSAMPLE_KERNEL = 63
UPSAMPLE_STRIDE = 32
DROPOUT = 0.5
# The release's data_ab filler: weight_filler { type: 'constant' value: 0.69308239 }, num_output 1.
AB_SCALE = 0.69308239
# (kernel, stride, pad) of each spatial layer from the input to score-fr: conv1, pool1, conv2, pool2, conv3,
# conv4, conv5, pool5, fc6, fc7, score-fr.
FCN_ALEXNET_LAYERS = (
    (11, 4, CONV1_PAD),
    (3, 2, 0),
    (5, 1, 2),
    (3, 2, 0),
    (3, 1, 1),
    (3, 1, 1),
    (3, 1, 1),
    (3, 2, 0),
    (6, 1, 0),
    (1, 1, 0),
    (1, 1, 0),
)


def aligned_crop_offset(layers: tuple[tuple[int, int, int], ...] = FCN_ALEXNET_LAYERS) -> int:
    """The Crop offset that aligns the stride-32 deconvolution's output with the input, from Caffe's coordinate
    maps (``python/caffe/coord_map.py``): each layer maps ``x -> x / stride + (pad - (kernel - 1) / 2) / stride``,
    the deconvolution ``x -> 32 x + (63 - 1) / 2``."""
    scale, shift = 1.0, 0.0  # input coordinate -> score-fr coordinate: x * scale + shift
    for kernel, stride, pad in layers:
        scale, shift = scale / stride, shift / stride + (pad - (kernel - 1) / 2) / stride
    up_scale, up_shift = UPSAMPLE_STRIDE * scale, UPSAMPLE_STRIDE * shift + (UPSAMPLE_KERNEL - 1) / 2
    if up_scale != 1 or up_shift != round(up_shift) or up_shift < 0:
        raise ValueError(f"the layers do not map the input one to one onto the upsampled scores: {layers}")
    return int(up_shift)


ALIGNED_CROP_OFFSET = aligned_crop_offset()
RELEASE_CROP_OFFSET = 0


def bilinear_kernel(size: int) -> Tensor:
    """FCN's ``surgery.upsample_filt``: the size x size bilinear interpolation kernel (factor ``(size + 1) // 2``,
    centred on ``factor - 1`` for an odd size)."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    return (ramp[:, None] * ramp[None, :]).float()


class FCNAlexNet(nn.Module):
    """``Lab`` (B x 3 x H x W: L in [0, 100], ab as the colour conversion gives them) -> class scores
    (B x classes x H x W); every layer trains (the release fine-tunes them all)."""

    wants_lab = True  # VOCSegmentationModule feeds Lab, not L alone

    def __init__(
        self,
        network: AlexNetColorizer,
        num_classes: int,
        colour_branch: bool = True,
        crop_offset: int = RELEASE_CROP_OFFSET,
    ) -> None:
        super().__init__()
        if not isinstance(network, AlexNetColorizer) or network.geometry != PROBE_GEOMETRY:
            raise ValueError(
                "FCN-AlexNet is built on the standard (BatchNorm-folded) AlexNet; load it with "
                "standard_geometry=True"
            )
        network.logits = nn.Identity()  # the colorization fc8 is replaced by score-fr
        conv1 = network.conv1[0]
        conv1.padding = (CONV1_PAD, CONV1_PAD)
        self.network = network
        self.colour = None
        if colour_branch:
            self.colour = nn.Conv2d(
                1, conv1.out_channels, conv1.kernel_size, stride=conv1.stride, padding=CONV1_PAD
            )
            nn.init.zeros_(self.colour.weight)
            nn.init.zeros_(self.colour.bias)
        fc7 = next(module for module in network.fc7 if isinstance(module, nn.Conv2d))
        self.score = nn.Conv2d(fc7.out_channels, num_classes, kernel_size=1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        # A buffer, not a parameter: the release keeps it at lr_mult 0, so no optimizer ever sees it.
        kernel = bilinear_kernel(UPSAMPLE_KERNEL).expand(num_classes, 1, UPSAMPLE_KERNEL, UPSAMPLE_KERNEL)
        self.register_buffer("upsample", kernel.clone())
        self.num_classes = num_classes
        if crop_offset < 0:
            raise ValueError(f"crop_offset must be >= 0, got {crop_offset}")
        self.crop_offset = crop_offset
        self.trainable_layers = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
        self.train(
            True
        )  # the folded network comes in eval mode; Lightning keeps each submodule's mode as found

    def forward(self, lab: Tensor) -> Tensor:
        height, width = lab.shape[-2:]
        network = self.network
        conv1, relu1 = network.conv1[0], network.conv1[1]
        x = conv1(normalise_lightness(lab[:, :1], network.input_scaling))
        if self.colour is not None:
            x = x + self.colour(AB_SCALE * lab[:, 1:3].sum(dim=1, keepdim=True))
        x = relu1(x)
        for stage in (network.conv2, network.conv3, network.conv4, network.conv5):
            x = stage(x)
        x = F.dropout(network.fc6(x), DROPOUT, training=self.training)
        x = F.dropout(network.fc7(x), DROPOUT, training=self.training)
        scores = F.conv_transpose2d(
            self.score(x), self.upsample, stride=UPSAMPLE_STRIDE, groups=self.num_classes
        )
        offset = self.crop_offset
        if scores.shape[-2] < offset + height or scores.shape[-1] < offset + width:
            raise ValueError(
                f"FCN-AlexNet: a {height} x {width} input upsamples to {tuple(scores.shape[-2:])}, too small to "
                f"crop at offset {offset}"
            )
        return scores[..., offset : offset + height, offset : offset + width]
