"""The pipeline of the authors' PyTorch demo, for their released eccv16 weights (docs/reference.md section 4.1).

The demo resizes the RGB photo to 256x256 with PIL bicubic (not the lightness: resizing RGB and then converting
gives a slightly different ``L``), feeds that ``L`` to the network, decodes the 313-way output with a plain
softmax and ``model_out``, upsamples the ``ab`` x4 bilinearly and then bilinearly again to the photo's size (two
steps, which differ from one direct resize), and joins it to the photo's own ``L``. Reproducing its output
means following those steps, so ``colorize --weights-format official`` gives what the release gives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lit_colorization.color import annealed_mean, rgb_to_lab
from lit_colorization.models import ColorizationNet

# The release's own decoding is a plain softmax: annealing at T = 1 (docs/reference.md section 3).
RELEASE_TEMPERATURE = 1.0


def _lightness(rgb_uint8: np.ndarray, device: torch.device) -> Tensor:
    """1 x 1 x H x W ``L`` of an H x W x 3 uint8 photo; computed in float64 like scikit-image, then float32."""
    rgb = torch.tensor(rgb_uint8).permute(2, 0, 1)[None].to(device, torch.float64) / 255
    return rgb_to_lab(rgb)[:, :1].float()


@torch.no_grad()
def release_ab(
    network: ColorizationNet, bins: Tensor, rgb_uint8: Tensor, temperature: float, input_size: int | None
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """The demo's pipeline up to the photo's size: (1 x 2 x h x w ab, upsampled x4 as the demo does; the function
    giving the ``L`` of rows of the photo, H' x W x 3 uint8 -> 1 x 1 x H' x W). The demo's last step, a bilinear
    resize of that ab to the photo's size joined to its ``L``, is the caller's, a band of rows at a time.

    ``input_size`` is the side of the square the photo is resized to (the demo's 256); None feeds the photo at
    its own size. ``temperature`` anneals the softmax; ``RELEASE_TEMPERATURE`` is the release's own output.
    """
    device = bins.device
    photo = rgb_uint8.cpu().numpy()
    if input_size is None:
        network_input = _lightness(photo, device)
    else:
        resized = Image.fromarray(photo).resize((input_size, input_size), Image.Resampling.BICUBIC)
        network_input = _lightness(np.asarray(resized), device)
    ab = annealed_mean(network(network_input), bins, temperature)
    ab = F.interpolate(ab, scale_factor=network.output_stride, mode="bilinear", align_corners=False)
    return ab, lambda rows: _lightness(rows.cpu().numpy(), device)
