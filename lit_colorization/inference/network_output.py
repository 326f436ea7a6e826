"""From network output to full-resolution ab: the decoding shared by validation, ``colorize`` and evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_colorization.color import annealed_mean
from lit_colorization.color.decode import regression_ab
from lit_colorization.models import ColorizationNet


def output_to_ab(output: Tensor, bins: Tensor, temperature: float, regression: bool) -> Tensor:
    """ab at the network's output resolution: the annealed mean of the bins, or the regression output itself."""
    if regression:
        return regression_ab(output)
    return annealed_mean(output.float(), bins, temperature)


def upsample_ab(ab: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def predict_full_resolution_ab(
    network: ColorizationNet,
    lightness: Tensor,
    bins: Tensor,
    temperature: float,
    regression: bool,
    input_size: int | None,
) -> Tensor:
    """Predict ab for full-resolution ``lightness`` (B x 1 x H x W, L in [0, 100]).

    The network sees ``lightness`` resized to ``input_size`` squared (None: as it is, cropped down to a multiple
    of ``network.input_multiple``); the prediction is upsampled back to H x W, to be joined with the original ``L``.
    """
    height, width = lightness.shape[-2:]
    if input_size is not None:
        network_input = F.interpolate(
            lightness, size=(input_size, input_size), mode="bilinear", align_corners=False
        )
    else:
        multiple = network.input_multiple
        if min(height, width) < multiple:
            raise ValueError(
                f"a {width}x{height} image is smaller than the network's input multiple {multiple}; resize it "
                "(colorize --size)"
            )
        network_input = lightness[..., : height - height % multiple, : width - width % multiple]
    ab = output_to_ab(network(network_input), bins, temperature, regression)
    return upsample_ab(ab, (height, width))
