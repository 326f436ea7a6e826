"""The VGG-style colorization network of Zhang, Isola, Efros (ECCV 2016), 32,236,011 parameters.

Blocks ``conv1`` .. ``conv7`` are 3x3 convolutions with a ReLU after each and BatchNorm at the block's end
(conv1-3 end with a stride-2 conv, conv5-6 are dilated by 2); ``conv8`` is a 4x4 stride-2 transposed conv
and two convs without BatchNorm. ``logits`` is the 1x1 conv to the 313 ``ab`` bins, at 1/4 of the input size.
``decode`` is the bias-free 1x1 conv 313 -> 2 whose weights are the bin centres: applied to a (tempered)
softmax of the logits it gives the expected ``ab``. It is stored with the network, so a checkpoint carries
its bins, but it is never trained (``requires_grad`` is off) and ``forward`` stops at the logits; annealed-mean
decoding itself lives in ``lit_colorization.color``. With any other ``num_bins`` (e.g. 2 for a direct ``ab``
regression head) there are no bins to hold and ``decode`` is None.

``width`` multiplies every conv's channel count (``scaled_channels``: rounded half up, at least 8) for cheap
CPU tests and demos; the logits keep ``num_bins`` channels and ``decode`` stays 313 -> 2. Compute and parameters
shrink roughly as ``width**2`` (width 0.125: 60x fewer FLOPs, the unscaled head to 313 bins being the rest);
width 1 is the exact paper network.

Feature layers and their shapes for a 176 x 176 input at width 1 (C x H x W):

    | layer | shape         | layer | shape         |
    |-------|---------------|-------|---------------|
    | conv1 | 64 x 88 x 88  | conv5 | 512 x 22 x 22 |
    | conv2 | 128 x 44 x 44 | conv6 | 512 x 22 x 22 |
    | conv3 | 256 x 22 x 22 | conv7 | 512 x 22 x 22 |
    | conv4 | 512 x 22 x 22 | conv8 | 256 x 44 x 44 |
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lit_colorization.models.base import (
    DEFAULT_NUM_BINS,
    ColorizationNet,
    checked_width,
    kaiming_init_,
    scaled_channels,
)
from lit_colorization.models.registry import register_model

FEATURE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8")


def _conv_block(
    in_channels: int, channels: int, num_convs: int, last_stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """``num_convs`` 3x3 convs each followed by a ReLU, then BatchNorm (the authors' module order)."""
    layers: list[nn.Module] = []
    for index in range(num_convs):
        stride = last_stride if index == num_convs - 1 else 1
        layers.append(
            nn.Conv2d(
                in_channels if index == 0 else channels,
                channels,
                kernel_size=3,
                stride=stride,
                padding=dilation,
                dilation=dilation,
            )
        )
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.BatchNorm2d(channels))
    return nn.Sequential(*layers)


def _upsampling_block(in_channels: int, channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, channels, kernel_size=4, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


# docs/reference.md section 1: for a = -90, -80, ..., 100 the in-gamut b run from b_min to b_max in steps of 10.
_B_MIN = (50, 20, 0, -20, -30, -40, -50, -50, -60, -70, -80, -80, -90, -100, -100, -110, -110, -110, -110, -90)  # fmt: skip
_B_MAX = (90, 90, 90, 90, 100, 100, 100, 100, 100, 100, 90, 90, 90, 90, 80, 80, 80, 70, 70, 0)


def _ab_bins_from_reference_table() -> Tensor:
    centres = [
        (a, b)
        for a, b_min, b_max in zip(range(-90, 101, 10), _B_MIN, _B_MAX, strict=True)
        for b in range(b_min, b_max + 1, 10)
    ]
    return torch.tensor(centres, dtype=torch.float32)


def _canonical_ab_bins() -> Tensor:
    """The 313 (a, b) bin centres, (313, 2), preferring the colour package's single source of truth."""
    try:
        from lit_colorization.color import ab_bins
    except ImportError:
        return _ab_bins_from_reference_table()
    return torch.as_tensor(ab_bins(), dtype=torch.float32)


@register_model("eccv16")
class Eccv16Colorizer(ColorizationNet):
    """VGG-style colorizer; it holds the bin-centre ``decode`` layer when ``num_bins`` is the canonical 313."""

    feature_layers = FEATURE_LAYERS
    output_stride = 4

    def __init__(self, num_bins: int = DEFAULT_NUM_BINS, width: float = 1.0) -> None:
        width = checked_width(width, "eccv16")
        super().__init__({"num_bins": num_bins, "width": width})
        c64, c128, c256, c512 = (scaled_channels(channels, width) for channels in (64, 128, 256, 512))
        self.conv1 = _conv_block(1, c64, num_convs=2, last_stride=2)
        self.conv2 = _conv_block(c64, c128, num_convs=2, last_stride=2)
        self.conv3 = _conv_block(c128, c256, num_convs=3, last_stride=2)
        self.conv4 = _conv_block(c256, c512, num_convs=3)
        self.conv5 = _conv_block(c512, c512, num_convs=3, dilation=2)
        self.conv6 = _conv_block(c512, c512, num_convs=3, dilation=2)
        self.conv7 = _conv_block(c512, c512, num_convs=3)
        self.conv8 = _upsampling_block(c512, c256)
        self.logits = nn.Conv2d(c256, num_bins, kernel_size=1)
        for stage in self.layer_modules().values():
            kaiming_init_(stage)
        self.decode = _bin_centre_decoder(_canonical_ab_bins()) if num_bins == DEFAULT_NUM_BINS else None

    @property
    def input_multiple(self) -> int:
        # conv3 sits at stride 8 and conv8's transposed conv doubles it exactly: the logits are
        # 2 * ceil(H / 8) tall, which is ceil(H / 4) only for H a multiple of 8 (180: 46 rows, 45 targets).
        return 2 * self.output_stride


def _bin_centre_decoder(bins: Tensor) -> nn.Conv2d:
    """Frozen bias-free 1x1 conv whose output is the probability-weighted mean of the (a, b) bin centres."""
    decoder = nn.Conv2d(bins.shape[0], 2, kernel_size=1, bias=False)
    with torch.no_grad():
        decoder.weight.copy_(bins.t().reshape(2, bins.shape[0], 1, 1))
    decoder.weight.requires_grad_(False)
    return decoder


# The release's port keeps ab divided by 110 (docs/reference.md section 1): its ``model_out`` weights are the bin
# centres / 110 and its output is scaled back by 110. ``decode`` holds the centres in ab units, so the conversion
# folds that factor into the weights; the release's output is unchanged.
OFFICIAL_AB_NORM = 110.0

# Official prefix -> ours; model8.6 (the 1x1 conv to 313) is our separate logits head, so it precedes model8.
_OFFICIAL_PREFIXES = (
    ("model8.6.", "logits."),
    ("model_out.", "decode."),
    *((f"model{block}.", f"conv{block}.") for block in range(1, 9)),
)


def _rename_prefix(key: str, pairs: tuple[tuple[str, str], ...]) -> str | None:
    for source, target in pairs:
        if key.startswith(source):
            return target + key[len(source) :]
    return None


def _expected_shapes() -> dict[str, torch.Size]:
    with torch.device("meta"):
        reference = Eccv16Colorizer()
    return {key: value.shape for key, value in reference.state_dict().items()}


def convert_official_eccv16_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename the authors' released PyTorch state dict (``model1.0.weight`` ... ``model_out.weight``) to ours.

    ``model_out`` becomes ``decode`` times ``OFFICIAL_AB_NORM``, so ``decode`` maps a distribution over the bins
    straight to ab, as ours does. The result loads into ``create_model("eccv16")`` with ``strict=True``. BatchNorm ``num_batches_tracked``
    counters, absent from older dicts, are filled with 0. Missing or unexpected keys (named in the official
    layout), shape mismatches and values that are not tensors raise one ValueError listing all of them.
    """
    expected = _expected_shapes()
    inverse = tuple((ours, official) for official, ours in _OFFICIAL_PREFIXES)
    converted: dict[str, Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    not_tensors: list[str] = []
    for key, value in state_dict.items():
        ours = _rename_prefix(key, _OFFICIAL_PREFIXES)
        if not isinstance(value, Tensor):
            not_tensors.append(f"{key} ({type(value).__name__})")
        elif ours not in expected:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(expected[ours]):
            mismatched.append(f"{key}: got {tuple(value.shape)}, expected {tuple(expected[ours])}")
        else:
            converted[ours] = value * OFFICIAL_AB_NORM if key.startswith("model_out.") else value
    missing = [
        official
        for key in expected
        if (official := _rename_prefix(key, inverse)) not in state_dict
        and not key.endswith(".num_batches_tracked")
    ]
    for key in expected:
        if key.endswith(".num_batches_tracked") and key not in converted:
            converted[key] = torch.tensor(0, dtype=torch.long)
    problems = [
        f"{label}: {items}"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
            ("values that are not tensors", not_tensors),
        )
        if items
    ]
    if problems:
        raise ValueError(
            "official eccv16 state dict does not match the eccv16 layout; " + "; ".join(problems)
        )
    return converted
