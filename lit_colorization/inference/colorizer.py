"""A colorizer loaded for inference, and the colorization of one photo with it.

Two weight formats, each with its own decoding when no temperature is asked for:

- ``lit`` (our checkpoints): the annealed mean at the paper's T = 0.38 (docs/reference.md section 3).
- ``official`` (the authors' released PyTorch eccv16 state dict): the release demo's own output, a plain softmax
  (T = 1) through the demo's pipeline (``inference/official.py``). The Caffe deploy net multiplied the logits by
  2.606 (about 1/0.38) before its softmax; the PyTorch release has no such factor, and its plain softmax is what
  the release gives, so annealing it again at 0.38 would sharpen it a second time. An explicit temperature
  anneals the release's softmax, softmax(logits / T): no longer the release's output, and ``describe_decoding``
  says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lit_colorization.color import ANNEALED_MEAN_TEMPERATURE, rgb_to_lab
from lit_colorization.color.pictures import lab_batch_to_rgb, to_uint8_image
from lit_colorization.inference.network_output import predict_ab
from lit_colorization.inference.official import RELEASE_TEMPERATURE, release_ab
from lit_colorization.inference.tiles import bands, resize_rows
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
    weights_format: str = "lit"

    @property
    def default_temperature(self) -> float:
        """The temperature of the format's own decoding."""
        return RELEASE_TEMPERATURE if self.weights_format == "official" else ANNEALED_MEAN_TEMPERATURE

    def temperature(self, requested: float | None) -> float:
        return self.default_temperature if requested is None else requested


def describe_decoding(colorizer: Colorizer, requested: float | None) -> str:
    """One line saying how ``colorizer`` decodes at the ``requested`` temperature (None: the format's own)."""
    if colorizer.regression:
        return "decoding: the network regresses ab directly (no temperature)"
    if colorizer.weights_format != "official":
        return f"decoding: annealed mean at T={colorizer.temperature(requested):g}"
    if requested is None:
        return "decoding: the release's own output (plain softmax, the demo's pipeline)"
    return (
        f"decoding: the release's softmax re-annealed at T={requested:g} (softmax(logits / {requested:g})); "
        "this is not the release's output, which --temperature left unset gives"
    )


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
        # The release decodes with its own model_out weights, whatever they hold: they are the bins here.
        bins = network.decode.weight.detach()[:, :, 0, 0].t().contiguous()
        return Colorizer(
            network.eval().to(device), bins.to(device), regression=False, weights_format="official"
        )
    if weights_format != "lit":
        raise ValueError(f"--weights-format: expected one of {WEIGHT_FORMATS}, got {weights_format!r}")
    checkpoint = read_checkpoint(path)
    regression = checkpoint.config.get("loss") == "l2"
    return Colorizer(build_network(checkpoint).to(device), checkpoint.bins.to(device), regression)


def colorize_rgb(
    colorizer: Colorizer, rgb_uint8: Tensor, temperature: float | None, input_size: int | None
) -> np.ndarray:
    """H x W x 3 uint8 RGB -> H x W x 3 uint8 colorized RGB at the same size, with the input's own L.

    ``temperature`` None: the format's own decoding. Official weights go through the release demo's pipeline.
    The network sees the photo at ``input_size`` (None: its own size); the full-resolution work is done a band
    of rows at a time (``inference/tiles.py``), so that memory beyond the photo's own uint8 copies stays bounded.
    """
    temperature = colorizer.temperature(temperature)
    device = colorizer.bins.device
    if colorizer.weights_format == "official":
        ab, lightness_of = release_ab(colorizer.network, colorizer.bins, rgb_uint8, temperature, input_size)
    else:
        ab = predict_ab(
            colorizer.network, rgb_uint8, colorizer.bins, temperature, colorizer.regression, input_size
        )

        def lightness_of(rows: Tensor) -> Tensor:
            rgb = rows.permute(2, 0, 1).unsqueeze(0).to(device).float() / 255
            return rgb_to_lab(rgb)[:, :1]

    height, width = rgb_uint8.shape[:2]
    colorized = np.empty((height, width, 3), dtype=np.uint8)
    for start, stop in bands(height, width):
        band = lab_batch_to_rgb(
            lightness_of(rgb_uint8[start:stop]), resize_rows(ab, (height, width), start, stop)
        )
        # A NaN in the prediction turns the whole pixel, its own lightness too, black.
        if not bool(torch.isfinite(band).all()):
            raise ValueError(
                "the network's prediction is not finite (NaN or infinity); its weights are broken"
            )
        colorized[start:stop] = to_uint8_image(band[0])
    return colorized
