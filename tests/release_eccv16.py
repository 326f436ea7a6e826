"""The authors' released eccv16 module and demo pipeline, written for the tests from docs/reference.md sections 1,
3 and 4 alone (plain torch, PIL, scikit-image; nothing from the project), so the project's conversion and
``colorize --weights-format official`` are checked against an independent implementation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from skimage.color import lab2rgb, rgb2lab
from torch import nn

# docs/reference.md section 1: a = -90, -80, ..., 100 and, for each, the in-gamut b from b_min to b_max by 10.
B_MIN = (50, 20, 0, -20, -30, -40, -50, -50, -60, -70, -80, -80, -90, -100, -100, -110, -110, -110, -110, -90)  # fmt: skip
B_MAX = (90, 90, 90, 90, 100, 100, 100, 100, 100, 100, 90, 90, 90, 90, 80, 80, 80, 70, 70, 0)
AB_NORM = 110.0  # the port's ab scaling (docs/reference.md section 1)
DEMO_SIZE = 256  # the demo's network input (docs/reference.md section 4.1)
CALIBRATION_SIZE = 128  # a quarter of the demo's cost; BatchNorm only needs the scale of the responses


def bin_centres() -> torch.Tensor:
    """(313, 2) float32 (a, b) centres in the canonical order."""
    centres = [
        (a, b)
        for a, low, high in zip(range(-90, 101, 10), B_MIN, B_MAX, strict=True)
        for b in range(low, high + 1, 10)
    ]
    return torch.tensor(centres, dtype=torch.float32)


def _convs(cin: int, cout: int, count: int, last_stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for index in range(count):
        stride = last_stride if index == count - 1 else 1
        layers += [nn.Conv2d(cin if index == 0 else cout, cout, 3, stride, dilation, dilation), nn.ReLU(True)]
    return layers


class ReleaseEccv16(nn.Module):
    """The released PyTorch module: blocks ``model1`` .. ``model8`` and ``model_out``, in the release's key layout."""

    def __init__(self) -> None:
        super().__init__()
        bn = nn.BatchNorm2d
        self.model1 = nn.Sequential(*_convs(1, 64, 2, last_stride=2), bn(64))
        self.model2 = nn.Sequential(*_convs(64, 128, 2, last_stride=2), bn(128))
        self.model3 = nn.Sequential(*_convs(128, 256, 3, last_stride=2), bn(256))
        self.model4 = nn.Sequential(*_convs(256, 512, 3), bn(512))
        self.model5 = nn.Sequential(*_convs(512, 512, 3, dilation=2), bn(512))
        self.model6 = nn.Sequential(*_convs(512, 512, 3, dilation=2), bn(512))
        self.model7 = nn.Sequential(*_convs(512, 512, 3), bn(512))
        self.model8 = nn.Sequential(
            nn.ConvTranspose2d(512, 256, 4, 2, 1), nn.ReLU(True), *_convs(256, 256, 2), nn.Conv2d(256, 313, 1)
        )
        self.model_out = nn.Conv2d(313, 2, 1, bias=False)
        with torch.no_grad():
            self.model_out.weight.copy_((bin_centres() / AB_NORM).t()[:, :, None, None])

    def logits(self, lightness: torch.Tensor) -> torch.Tensor:
        x = (lightness - 50.0) / 100.0
        for block in (self.model1, self.model2, self.model3, self.model4, self.model5, self.model6):
            x = block(x)
        return self.model8(self.model7(x))

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        """The release's output: plain softmax, ``model_out``, x4 bilinear, times 110: ab at the input size."""
        ab = self.model_out(torch.softmax(self.logits(lightness), dim=1))
        return F.interpolate(ab, scale_factor=4, mode="bilinear", align_corners=False) * AB_NORM


def random_release_network(calibration_rgb: list[np.ndarray], sharpen: float, seed: int = 0) -> ReleaseEccv16:
    """Random weights whose responses vary over a photo, with a peaked softmax.

    With PyTorch's default init the activations fade layer by layer, leaving logits that hardly depend on the
    photo; BatchNorm statistics taken on ``calibration_rgb`` keep every block at unit scale instead. The final
    1x1 conv is then scaled so its logits have a standard deviation of ``sharpen`` over the 313 bins, making the
    softmax peaked enough for the decoding rule (plain softmax or annealed) to change the colours.
    """
    torch.manual_seed(seed)
    network = ReleaseEccv16()
    lightness = torch.cat([demo_inputs(rgb, CALIBRATION_SIZE)[1] for rgb in calibration_rgb])
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # the running statistics become those of this one batch
    with torch.no_grad():
        # In training mode BatchNorm normalises by the batch's own statistics, which it also stores.
        spread = network.train().logits(lightness).std(dim=1).mean()
        head = network.model8[-1]
        head.weight.mul_(sharpen / spread)
        head.bias.mul_(sharpen / spread)
    return network.eval()


def demo_inputs(rgb_uint8: np.ndarray, size: int = DEMO_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """(the photo's own L, L of the photo resized to size x size with PIL bicubic), each 1 x 1 x H x W float32."""
    resized = np.asarray(Image.fromarray(rgb_uint8).resize((size, size), Image.Resampling.BICUBIC))
    original_l = torch.from_numpy(rgb2lab(rgb_uint8)[..., 0]).float()[None, None]
    resized_l = torch.from_numpy(rgb2lab(resized)[..., 0]).float()[None, None]
    return original_l, resized_l


@torch.no_grad()
def release_demo(network: ReleaseEccv16, rgb_uint8: np.ndarray) -> np.ndarray:
    """The demo's colorization of an H x W x 3 uint8 photo: H x W x 3 float64 RGB in [0, 1]."""
    original_l, resized_l = demo_inputs(rgb_uint8)
    ab = F.interpolate(network(resized_l), size=original_l.shape[-2:], mode="bilinear", align_corners=False)
    lab = torch.cat([original_l, ab], dim=1)[0].permute(1, 2, 0).numpy().astype(np.float64)
    return lab2rgb(lab)
