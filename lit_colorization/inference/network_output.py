"""From network output to full-resolution ab: the decoding shared by validation, ``colorize`` and evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_colorization.color import annealed_mean, rgb_to_lab
from lit_colorization.color.decode import regression_ab
from lit_colorization.inference.tiles import sample_bilinear
from lit_colorization.models import ColorizationNet


def output_to_ab(output: Tensor, bins: Tensor, temperature: float, regression: bool) -> Tensor:
    """ab at the network's output resolution: the annealed mean of the bins, or the regression output itself."""
    if regression:
        return regression_ab(output)
    return annealed_mean(output.float(), bins, temperature)


def upsample_ab(ab: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(ab, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def predict_ab(
    network: ColorizationNet,
    rgb_uint8: Tensor,
    bins: Tensor,
    temperature: float,
    regression: bool,
    input_size: int | None,
) -> Tensor:
    """1 x 2 x h x w ab at the network's output resolution for an H x W x 3 uint8 photo; upsampling it to H x W
    (bilinear) gives the photo's ab.

    The network sees the photo's ``L`` resized to ``input_size`` squared (bilinear, computed only at the pixels the
    resize reads: ``inference/tiles.py``), or, for None, as it is, cropped down to a multiple of
    ``network.input_multiple``: the whole photo at the network, as much memory as that takes.
    """
    height, width = rgb_uint8.shape[:2]
    device = bins.device

    def lightness_at(rows: Tensor, columns: Tensor) -> Tensor:
        picked = rgb_uint8[rows.to(rgb_uint8.device)][:, columns.to(rgb_uint8.device)]
        return rgb_to_lab(picked.permute(2, 0, 1).unsqueeze(0).to(device).float() / 255)[:, :1]

    if input_size is not None:
        network_input = sample_bilinear(lightness_at, (height, width), (input_size, input_size))
    else:
        multiple = network.input_multiple
        if min(height, width) < multiple:
            raise ValueError(
                f"a {width}x{height} image is smaller than the network's input multiple {multiple}; resize it "
                "(colorize --size)"
            )
        rows, columns = torch.arange(height - height % multiple), torch.arange(width - width % multiple)
        network_input = lightness_at(rows, columns)
    return output_to_ab(network(network_input), bins, temperature, regression)
