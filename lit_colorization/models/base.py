"""The interface every colorization network implements, and the feature plumbing they share.

A network is an ordered trunk of named stages (``feature_layers``, each a submodule attribute of the same
name, applied one after another) followed by a ``logits`` head producing ``num_bins`` class scores per
output pixel. Subclasses only build those modules; normalisation, ``forward`` and ``features`` live here.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

DEFAULT_NUM_BINS = 313
MAX_WIDTH = 4.0
MIN_CHANNELS = 8
BIASED_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def checked_width(width: float, model_name: str) -> float:
    """``width`` as a float if it is a real number in (0, MAX_WIDTH], else a ValueError naming the model."""
    # bool is a numbers.Real subclass, but width=True is surely a mistake; NaN fails the range check.
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not 0 < width <= MAX_WIDTH:
        raise ValueError(f"{model_name}: width must be a number in (0, {MAX_WIDTH:g}], got {width!r}")
    return float(width)


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded half up, at least MIN_CHANNELS; exactly ``channels`` at width 1.

    The floor of 8 stops a very small width from collapsing a layer to one or two channels, which ReLU can
    silence entirely.
    """
    return max(MIN_CHANNELS, math.floor(channels * width + 0.5))


# A network's input as a function of raw CIE L in [0, 100]: the divisor after centring on 50.
PORT_SCALING = "(L - 50) / 100"  # the authors' PyTorch port (eccv16's released weights)
CAFFE_SCALING = "L - 50"  # the release's Caffe data_l layer (docs/reference.md section 11.2)
INPUT_DIVISORS = {PORT_SCALING: 100.0, CAFFE_SCALING: 1.0}


def normalise_lightness(lightness: Tensor, scaling: str = PORT_SCALING) -> Tensor:
    """Raw CIE ``L`` in [0, 100] centred on 50 and divided as ``scaling`` (a key of ``INPUT_DIVISORS``) says."""
    return (lightness - 50.0) / INPUT_DIVISORS[scaling]


def parameter_groups(
    module: nn.Module,
    lr: float,
    weight_decay: float,
    bias_lr_mult: float = 1.0,
    bias_weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Optimizer groups in the manner of Caffe's per-blob ``lr_mult`` / ``decay_mult``.

    The biases of every convolution and linear layer train at ``lr * bias_lr_mult`` with ``bias_weight_decay``
    (None: ``weight_decay``); every other parameter (weights, affine BatchNorm parameters) at ``lr`` with
    ``weight_decay``. The release's AlexNet and its linear probe give every bias ``lr_mult: 2, decay_mult: 0``
    (docs/reference.md section 11.2). A group without parameters is left out.
    """
    if not bias_lr_mult > 0:
        raise ValueError(f"bias_lr_mult must be positive, got {bias_lr_mult!r}")
    bias_ids = {
        id(submodule.bias)
        for submodule in module.modules()
        if isinstance(submodule, BIASED_LAYERS) and submodule.bias is not None
    }
    parameters = list(module.parameters())
    weights = [parameter for parameter in parameters if id(parameter) not in bias_ids]
    biases = [parameter for parameter in parameters if id(parameter) in bias_ids]
    groups = [
        {"name": "weights", "params": weights, "lr": lr, "weight_decay": weight_decay},
        {
            "name": "biases",
            "params": biases,
            "lr": lr * bias_lr_mult,
            "weight_decay": weight_decay if bias_weight_decay is None else bias_weight_decay,
        },
    ]
    return [group for group in groups if group["params"]]


def kaiming_init_(module: nn.Module) -> None:
    """He initialisation for every convolution feeding a ReLU; BatchNorm starts as the identity.

    The reference notes that re-implementations with a poor initialisation stalled, so trunks do not rely
    on PyTorch's default (which is scaled for a linear, not a ReLU, activation).
    """
    for submodule in module.modules():
        if isinstance(submodule, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(submodule.weight, mode="fan_out", nonlinearity="relu")
            if submodule.bias is not None:
                nn.init.zeros_(submodule.bias)
        elif isinstance(submodule, nn.BatchNorm2d) and submodule.affine:
            nn.init.ones_(submodule.weight)
            nn.init.zeros_(submodule.bias)


class ColorizationNet(nn.Module):
    """Abstract base: ``L`` (B x 1 x H x W, raw lightness in [0, 100]) -> logits (B x num_bins x h x w).

    Attributes:
        feature_layers: names of the trunk stages in order; each is a submodule attribute of that name.
        output_stride: spacing of the logits grid in input pixels: logits[..., i, j] predict pixel
            (i * output_stride, j * output_stride) for input sizes that are multiples of ``input_multiple``.
        num_bins: number of quantised ``ab`` classes the head predicts.
        model_name: the registry name, set by ``register_model``.

    Subclasses call ``super().__init__(hparams)`` with their construction keyword arguments (plain Python
    values) and then define one attribute per feature layer plus ``logits``; ``hparams_for_checkpoint``
    hands those keyword arguments back so ``create_model(model.model_name, **model.hparams_for_checkpoint())``
    rebuilds the same architecture.
    """

    feature_layers: ClassVar[tuple[str, ...]] = ()
    model_name: ClassVar[str] = ""
    # How raw L becomes the input (a key of INPUT_DIVISORS); recorded in every checkpoint.
    input_scaling: ClassVar[str] = PORT_SCALING
    output_stride: int
    num_bins: int

    def __init__(self, hparams: dict[str, Any]) -> None:
        if type(self) is ColorizationNet:
            raise TypeError(
                "ColorizationNet is abstract: create a registered network with create_model(name)"
            )
        super().__init__()
        self._hparams = copy.deepcopy(hparams)
        self.num_bins = hparams.get("num_bins", DEFAULT_NUM_BINS)

    def hparams_for_checkpoint(self) -> dict[str, Any]:
        """The keyword arguments this network was built with, as plain Python containers."""
        return copy.deepcopy(self._hparams)

    @property
    def input_multiple(self) -> int:
        """Input sizes (height and width) must be multiples of this for ``target_grid``: ``output_stride``."""
        return self.output_stride

    def target_grid(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the logits for a ``height`` x ``width`` input.

        The logits sit on every ``output_stride``-th input pixel, so this is the shape of
        ``x[..., ::output_stride, ::output_stride]``, the pixels ``targets.subsample`` keeps. A size that is not
        a positive multiple of ``input_multiple``, for which the logits would miss that grid, is a ValueError.
        """
        multiple = self.input_multiple
        if height < 1 or width < 1 or height % multiple or width % multiple:
            raise ValueError(
                f"{self.model_name}: input size {height} x {width} must be a positive multiple of {multiple} "
                f"for the logits to sit on every {self.output_stride}th pixel"
            )
        stride = self.output_stride
        return -(-height // stride), -(-width // stride)

    def layer_modules(self) -> dict[str, nn.Module]:
        """The trunk stage of each feature layer, in forward order (e.g. to freeze a prefix of the trunk)."""
        return {name: getattr(self, name) for name in self.feature_layers}

    def forward(self, lightness: Tensor) -> Tensor:
        x = normalise_lightness(_checked_lightness(lightness), self.input_scaling)
        for stage in self.layer_modules().values():
            x = stage(x)
        return self.logits(x)

    def features(self, lightness: Tensor, layers: Sequence[str]) -> dict[str, Tensor]:
        """Outputs of the named trunk stages, running the trunk only as far as the deepest one asked for."""
        if isinstance(layers, str):
            raise ValueError(f"layers must be a sequence of layer names, got the string {layers!r}")
        unknown = [name for name in layers if name not in self.feature_layers]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no feature layer(s) {unknown}; valid: {list(self.feature_layers)}"
            )
        if not layers:
            return {}
        deepest = max(self.feature_layers.index(name) for name in layers)
        wanted = set(layers)
        outputs: dict[str, Tensor] = {}
        x = normalise_lightness(_checked_lightness(lightness), self.input_scaling)
        for name, stage in list(self.layer_modules().items())[: deepest + 1]:
            x = stage(x)
            if name in wanted:
                outputs[name] = x
        return outputs


def _checked_lightness(lightness: Tensor) -> Tensor:
    if not isinstance(lightness, torch.Tensor) or lightness.ndim != 4 or lightness.shape[1] != 1:
        shape = tuple(lightness.shape) if isinstance(lightness, torch.Tensor) else type(lightness).__name__
        raise ValueError(f"expected lightness L of shape (B, 1, H, W), got {shape}")
    return lightness
