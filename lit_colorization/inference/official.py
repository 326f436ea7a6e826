"""The pipeline of the authors' PyTorch demo, for their released eccv16 weights (docs/reference.md section 4.1).

The demo resizes the RGB photo to 256x256 with PIL bicubic (not the lightness: resizing RGB and then converting
gives a slightly different ``L``), feeds that ``L`` to the network, decodes the 313-way output with a plain
softmax and ``model_out``, upsamples the ``ab`` x4 bilinearly and then bilinearly again to the photo's size (two
steps, which differ from one direct resize), and joins it to the photo's own ``L``. Reproducing its output
means following those steps, so ``colorize --weights-format official`` gives what the release gives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lit_colorization.color import annealed_mean, rgb_to_lab
from lit_colorization.color.pictures import lab_batch_to_rgb
from lit_colorization.models import ColorizationNet

# The release's own decoding is a plain softmax: annealing at T = 1 (docs/reference.md section 3).
RELEASE_TEMPERATURE = 1.0


def _lightness(rgb_uint8: np.ndarray, device: torch.device) -> Tensor:
    """1 x 1 x H x W ``L`` of an H x W x 3 uint8 photo; computed in float64 like scikit-image, then float32."""
    rgb = torch.tensor(rgb_uint8).permute(2, 0, 1)[None].to(device, torch.float64) / 255
    return rgb_to_lab(rgb)[:, :1].float()


@torch.no_grad()
def release_colorize(
    network: ColorizationNet, bins: Tensor, rgb_uint8: Tensor, temperature: float, input_size: int | None
) -> Tensor:
    """H x W x 3 uint8 RGB -> 3 x H x W RGB in [0, 1], by the demo's pipeline.

    ``input_size`` is the side of the square the photo is resized to (the demo's 256); None feeds the photo at
    its own size. ``temperature`` anneals the softmax; ``RELEASE_TEMPERATURE`` is the release's own output.
    """
    device = bins.device
    photo = rgb_uint8.cpu().numpy()
    lightness = _lightness(photo, device)
    if input_size is None:
        network_input = lightness
    else:
        resized = Image.fromarray(photo).resize((input_size, input_size), Image.Resampling.BICUBIC)
        network_input = _lightness(np.asarray(resized), device)
    ab = annealed_mean(network(network_input), bins, temperature)
    ab = F.interpolate(ab, scale_factor=network.output_stride, mode="bilinear", align_corners=False)
    ab = F.interpolate(ab, size=lightness.shape[-2:], mode="bilinear", align_corners=False)
    return lab_batch_to_rgb(lightness, ab)[0]
