"""Colorize photos with a trained colorizer.

``python -m lit_colorization.cli.colorize --ckpt CKPT INPUT... --out DIR [--temperature 0.38]``

INPUT: image files or folders (searched recursively); colour inputs are converted to gray first. The output keeps
the input's full resolution: its own ``L`` joined with the predicted ``ab``, upsampled. Existing outputs are kept
(an interrupted job resumes where it stopped) unless ``--overwrite``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from lit_colorization.color import ab_bins, rgb_to_lab
from lit_colorization.color.pictures import lab_batch_to_rgb
from lit_colorization.inference.decode import predict_full_resolution_ab
from lit_colorization.models import ColorizationNet, create_model
from lit_colorization.models.eccv16 import convert_official_eccv16_state_dict
from lit_colorization.store.checkpoint import (
    CheckpointError,
    build_network,
    load_raw,
    load_state_strict,
    read_checkpoint,
)

WEIGHT_FORMATS = ("lit", "official")


@dataclass
class Colorizer:
    network: ColorizationNet
    bins: Tensor
    regression: bool


def load_colorizer(path: str | Path, weights_format: str = "lit", device: str = "cpu") -> Colorizer:
    """A network ready for inference from our checkpoint or the authors' released eccv16 state dict."""
    if weights_format == "official":
        state = load_raw(path)
        network = create_model("eccv16")
        try:
            converted = convert_official_eccv16_state_dict(state)
        except ValueError as error:
            raise CheckpointError(f"{path}: not the authors' eccv16 state dict: {error}") from None
        load_state_strict(network, converted, str(path))
        return Colorizer(network.eval().to(device), ab_bins().to(device), regression=False)
    if weights_format != "lit":
        raise ValueError(f"--weights-format: expected one of {WEIGHT_FORMATS}, got {weights_format!r}")
    checkpoint = read_checkpoint(path)
    regression = checkpoint.config.get("loss") == "l2"
    return Colorizer(build_network(checkpoint).to(device), checkpoint.bins.to(device), regression)


def colorize_rgb(
    colorizer: Colorizer, rgb_uint8: Tensor, temperature: float, input_size: int | None
) -> Tensor:
    """H x W x 3 uint8 RGB -> 3 x H x W colorized RGB in [0, 1] at the same size, with the input's own L."""
    device = colorizer.bins.device
    rgb = rgb_uint8.permute(2, 0, 1).unsqueeze(0).to(device).float() / 255
    lightness = rgb_to_lab(rgb)[:, :1]
    ab = predict_full_resolution_ab(
        colorizer.network, lightness, colorizer.bins, temperature, colorizer.regression, input_size
    )
    return lab_batch_to_rgb(lightness, ab)[0]
