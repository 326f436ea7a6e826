"""AlexNet-style cross-channel encoder (the network behind every transfer result of Zhang et al. 2016).

Two geometries of one set of weights (docs/reference.md section 4):

``geometry="train"`` is the release's ``train_alexnet/train_val.prototxt``: conv1 96@11x11 stride 4 pad 5,
pool1 max 3x3 stride 2 pad 1, conv2 256@5x5 pad 2 group 2, pool2 max 3x3 stride 2 pad 1, conv3 384@3x3 pad 1,
conv4 384@3x3 pad 1 group 2, conv5 256@3x3 pad 1 group 2, pool5 max 3x3 stride 1 pad 1, fc6 4096@6x6
dilation 2 pad 5, fc7 4096@1x1 and ``logits`` (the paper's fc8) 313@1x1. Every conv has a bias and, up to
fc7, is followed by BatchNorm without affine parameters (Caffe's BatchNorm with no Scale layer) then ReLU.
fc8 sits at stride 16 and is resized bilinearly onto the stride-8 target grid (``target_grid``), so
``forward`` predicts the pixels ``x[..., ::8, ::8]`` of any input size. 58,127,353 parameters at width 1.

``geometry="probe"`` is the standard AlexNet the release probes (``to_probe_geometry``): BatchNorm folded into
the convs, conv1 unpadded, pool1, pool2 and pool5 max 3x3 stride 2 unpadded, fc6 an undilated 6x6 conv (on
pool5's stride-2 grid it applies the same taps as the dilated fc6 on the stride-1 one). Its logits (stride 32)
are not on a target grid: it is a feature extractor, not a colorizer.

The input is ``L - 50``, as the release's ``data_l`` layer feeds it (``input_scaling``; the other networks take
the PyTorch port's ``(L - 50) / 100``): with Adam and a BatchNorm after conv1, the input's scale sets conv1's
effective learning rate. Checkpoints record their scaling, and one trained on the old ``(L - 50) / 100`` is
refused with a one-line error (``OLD_SCALING_MESSAGE``). A difference from the release that is kept on purpose:
BatchNorm running statistics use PyTorch's momentum 0.1, where Caffe keeps a moving average with
fraction 0.999 normalised by its accumulated weight (eps 1e-5 in both). Only eval-mode statistics differ.

Pooling rounds sizes up as Caffe does (``ceil_mode``; both drop a last window that would start in the
padding). ``width`` multiplies every conv's channel count, fc6 and fc7 included (``scaled_channels``, then
rounded up to even so the two-group convs split evenly), for cheap CPU tests and demos; the logits keep
``num_bins`` channels. Width 1 is the paper network.

Each feature layer is the post-ReLU output of its conv; pool1, pool2 and pool5 open the conv2, conv3 and
fc6 stages. Shapes at width 1 (C x H x W; fc6 of the probe geometry needs an input of at least 199):

    | layer  | train, 180     | train, 227     | probe, 180    | probe, 227    |
    |--------|----------------|----------------|---------------|---------------|
    | conv1  | 96 x 45 x 45   | 96 x 57 x 57   | 96 x 43 x 43  | 96 x 55 x 55  |
    | conv2  | 256 x 23 x 23  | 256 x 29 x 29  | 256 x 21 x 21 | 256 x 27 x 27 |
    | conv3  | 384 x 12 x 12  | 384 x 15 x 15  | 384 x 10 x 10 | 384 x 13 x 13 |
    | conv4  | 384 x 12 x 12  | 384 x 15 x 15  | 384 x 10 x 10 | 384 x 13 x 13 |
    | conv5  | 256 x 12 x 12  | 256 x 15 x 15  | 256 x 10 x 10 | 256 x 13 x 13 |
    | fc6    | 4096 x 12 x 12 | 4096 x 15 x 15 | -             | 4096 x 1 x 1  |
    | fc7    | 4096 x 12 x 12 | 4096 x 15 x 15 | -             | 4096 x 1 x 1  |
    | fc8    | 313 x 12 x 12  | 313 x 15 x 15  | -             | 313 x 1 x 1   |
    | logits | 313 x 23 x 23  | 313 x 29 x 29  | -             | 313 x 1 x 1   |

(train: ``logits`` is fc8 resized to ``target_grid``; probe: ``logits`` is fc8 itself.)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_colorization.models.base import (
    CAFFE_SCALING,
    DEFAULT_NUM_BINS,
    PORT_SCALING,
    ColorizationNet,
    checked_width,
    kaiming_init_,
    scaled_channels,
)
from lit_colorization.models.registry import register_model

FEATURE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
FC_CHANNELS = 4096
GROUPS = 2  # conv2, conv4 and conv5 are split in two groups, as in the original two-GPU AlexNet
TRAIN_GEOMETRY = "train"
PROBE_GEOMETRY = "probe"
GEOMETRIES = (TRAIN_GEOMETRY, PROBE_GEOMETRY)
OLD_SCALING_MESSAGE = (
    f"AlexNet checkpoint trained on the input {PORT_SCALING} (or written before checkpoints recorded their input "
    f"scaling); this AlexNet takes the release's {CAFFE_SCALING} (docs/reference.md section 11.2): retrain it"
)
PRE_RELEASE_MESSAGE = (
    "checkpoint holds the pre-release AlexNet geometry (affine BatchNorm, bias-free ungrouped convs, "
    "stride-1 pool2); retrain with this version"
)


def _even_channels(channels: int, width: float) -> int:
    scaled = scaled_channels(channels, width)
    return scaled + scaled % GROUPS


def _conv(
    in_channels: int,
    channels: int,
    kernel_size: int,
    *,
    batch_norm: bool,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
        )
    ]
    if batch_norm:
        # Caffe's BatchNorm without a Scale layer: normalisation only. eps 1e-5 is Caffe's default too.
        layers.append(nn.BatchNorm2d(channels, affine=False))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _max_pool(stride: int, padding: int) -> nn.MaxPool2d:
    # Caffe rounds pooled sizes up, dropping a last window that would start in the padding: so does ceil_mode.
    return nn.MaxPool2d(kernel_size=3, stride=stride, padding=padding, ceil_mode=True)


@register_model("alexnet")
class AlexNetColorizer(ColorizationNet):
    """AlexNet colorizer in the release's training geometry (output stride 8), or its probe geometry."""

    feature_layers = FEATURE_LAYERS
    input_scaling = CAFFE_SCALING

    def __init__(
        self, num_bins: int = DEFAULT_NUM_BINS, width: float = 1.0, geometry: str = TRAIN_GEOMETRY
    ) -> None:
        width = checked_width(width, "alexnet")
        if geometry not in GEOMETRIES:
            raise ValueError(f"alexnet: geometry must be one of {GEOMETRIES}, got {geometry!r}")
        super().__init__({"num_bins": num_bins, "width": width, "geometry": geometry})
        self.geometry = geometry
        train = geometry == TRAIN_GEOMETRY
        self.output_stride = 8 if train else 32
        c96, c256, c384 = (_even_channels(channels, width) for channels in (96, 256, 384))
        fc = scaled_channels(FC_CHANNELS, width)
        pad = 1 if train else 0
        self.conv1 = nn.Sequential(*_conv(1, c96, 11, batch_norm=train, stride=4, padding=5 if train else 0))
        self.conv2 = nn.Sequential(
            _max_pool(stride=2, padding=pad), *_conv(c96, c256, 5, batch_norm=train, padding=2, groups=GROUPS)
        )
        self.conv3 = nn.Sequential(
            _max_pool(stride=2, padding=pad), *_conv(c256, c384, 3, batch_norm=train, padding=1)
        )
        self.conv4 = nn.Sequential(*_conv(c384, c384, 3, batch_norm=train, padding=1, groups=GROUPS))
        self.conv5 = nn.Sequential(*_conv(c384, c256, 3, batch_norm=train, padding=1, groups=GROUPS))
        # Training keeps pool5 at stride 1 and dilates fc6 by 2 instead: the same taps, densely.
        self.fc6 = nn.Sequential(
            _max_pool(stride=1 if train else 2, padding=pad),
            *_conv(c256, fc, 6, batch_norm=train, padding=5 if train else 0, dilation=2 if train else 1),
        )
        self.fc7 = nn.Sequential(*_conv(fc, fc, 1, batch_norm=train))
        self.logits = nn.Conv2d(fc, num_bins, kernel_size=1)
        for stage in self.layer_modules().values():
            kaiming_init_(stage)

    @property
    def input_multiple(self) -> int:
        return 1  # fc8 is resized onto the grid, so every input size works

    def target_grid(self, height: int, width: int) -> tuple[int, int]:
        if self.geometry == PROBE_GEOMETRY:
            raise ValueError(
                "alexnet: the probe geometry is a feature extractor whose logits sit on no target grid; "
                f"colorize with geometry={TRAIN_GEOMETRY!r}"
            )
        return super().target_grid(height, width)

    def forward(self, lightness: Tensor) -> Tensor:
        fc8 = super().forward(lightness)
        if self.geometry == PROBE_GEOMETRY:
            return fc8
        # The release's Resize layer maps the first and last samples of fc8 onto those of the target grid
        # (scale (out - 1) / (in - 1)), i.e. align_corners. fc8 sample j is centred on pixel 16 j and target k
        # on pixel 8 k, so this is exact when the grid has 2 * fc8 - 1 samples (180: 12 -> 23, 227: 15 -> 29);
        # at other sizes (176: 12 -> 22) it is off by a fraction of a sample, as in the release.
        grid = self.target_grid(lightness.shape[-2], lightness.shape[-1])
        return F.interpolate(fc8, size=grid, mode="bilinear", align_corners=True)


# The release initialises conv1..conv5 from data and the rest from the fillers of its train_val.prototxt: fc6 and
# fc7 Gaussian std 0.005 with bias 1, fc8 without a filler, i.e. zero (docs/reference.md section 11.1).
RELEASE_DATA_INIT_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_FILLER_STD = 0.005
FC_FILLER_BIAS = 1.0


@torch.no_grad()
def release_fillers_(
    network: AlexNetColorizer, generator: torch.Generator, layers: tuple[str, ...] = ("fc6", "fc7", "logits")
) -> None:
    """The release's fillers for ``layers``, in place: fc6 and fc7 weights N(0, 0.005^2) with bias 1, the
    logits (fc8) all zero."""
    for layer in layers:
        if layer == "logits":
            network.logits.weight.zero_()
            network.logits.bias.zero_()
            continue
        if layer not in ("fc6", "fc7"):
            raise ValueError(f"the release's prototxt has fillers for fc6, fc7 and the logits, not {layer!r}")
        conv = next(module for module in getattr(network, layer) if isinstance(module, nn.Conv2d))
        weights = torch.randn(conv.weight.shape, generator=generator) * FC_FILLER_STD
        conv.weight.copy_(weights.to(conv.weight.device, conv.weight.dtype))
        conv.bias.fill_(FC_FILLER_BIAS)


def is_pre_release_state_dict(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether ``state_dict`` is of the AlexNet this project had before the release geometry.

    Every current layout has a conv1 bias; the old one had none (its conv1 fed an affine BatchNorm).
    """
    return "conv1.0.weight" in state_dict and "conv1.0.bias" not in state_dict


@torch.no_grad()
def to_probe_geometry(network: AlexNetColorizer) -> AlexNetColorizer:
    """The same weights in the probe geometry, each BatchNorm folded into the conv before it.

    With ``s = 1 / sqrt(running_var + eps)``, conv then BatchNorm is the conv with weights ``w * s`` and bias
    ``(b - running_mean) * s``: exact for the network's eval mode (its running statistics), whatever mode
    it is in. The result is on the network's device, in its training mode, and shares no storage with it.
    (The release folds with ``1 / sqrt(running_var)``, leaving out Caffe's eps; the difference is negligible.)
    """
    if not isinstance(network, AlexNetColorizer) or network.geometry != TRAIN_GEOMETRY:
        raise ValueError(f"to_probe_geometry expects an alexnet in the {TRAIN_GEOMETRY!r} geometry")
    folded: dict[str, Tensor] = {}
    for name, stage in network.layer_modules().items():
        for index, module in enumerate(stage):
            if isinstance(module, nn.Conv2d):
                norm = stage[index + 1]  # in the training geometry every conv feeds its BatchNorm
                scale = torch.rsqrt(norm.running_var + norm.eps)
                # The probe geometry drops only the BatchNorms, so each conv keeps its index.
                folded[f"{name}.{index}.weight"] = module.weight * scale.view(-1, 1, 1, 1)
                folded[f"{name}.{index}.bias"] = (module.bias - norm.running_mean) * scale
    folded["logits.weight"] = network.logits.weight.clone()
    folded["logits.bias"] = network.logits.bias.clone()
    hparams = {**network.hparams_for_checkpoint(), "geometry": PROBE_GEOMETRY}
    # Built without storage: every parameter is replaced by its folded tensor.
    with torch.device("meta"):
        probe = AlexNetColorizer(**hparams)
    probe.load_state_dict(folded, strict=True, assign=True)
    return probe.train(network.training)
