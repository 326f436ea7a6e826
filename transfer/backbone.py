"""A frozen feature extractor built from a pretraining checkpoint alone (or freshly initialised: ``ckpt=random``).

The trunk never trains: its parameters do not require gradients, features are computed without autograd, and
``train()`` is overridden so that Lightning's ``model.train()`` cannot switch its BatchNorm layers back to
updating their running statistics (REFERENCE.md section 9: probes silently un-freezing BatchNorm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lit_colorization.checkpoint import build_network, read_checkpoint
from lit_colorization.models import ColorizationNet, create_model

RANDOM_CKPT = "random"
DEFAULT_RANDOM_MODEL = "alexnet"  # the paper's Gaussian-random baseline is an AlexNet


@dataclass(frozen=True)
class BackboneSource:
    """Where the trunk's weights came from, as recorded beside every probe result."""

    ckpt: str  # checkpoint path, or "random"
    model_name: str
    model_kwargs: dict[str, Any]
    pretrain_run: str  # the pretraining run's name; "random-<model>" for the untrained baseline
    pretrain_step: int


def pretrain_run_name(ckpt_path: str, config: dict[str, Any]) -> str:
    """The pretraining run of a checkpoint: its config's ``run``, else the folder of runs/<run>/checkpoints/."""
    run = config.get("run") if isinstance(config, dict) else None
    if run:
        return str(run)
    path = Path(ckpt_path).resolve()
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.stem


def load_network(
    ckpt: str, model: str | None = None, model_kwargs: dict[str, Any] | None = None, seed: int = 0
) -> tuple[ColorizationNet, BackboneSource]:
    """The network of ``ckpt`` (weights loaded strictly), or for ``ckpt="random"`` the network ``model`` seeded.

    With a checkpoint, ``model`` (if given) must name the checkpoint's network: a probe of one network
    labelled as another would be a silent mistake.
    """
    if ckpt == RANDOM_CKPT:
        name = model or DEFAULT_RANDOM_MODEL
        kwargs = dict(model_kwargs or {})
        # A private RNG stream: the baseline is the same for a given seed whatever ran before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = create_model(name, **kwargs)
        source = BackboneSource(
            RANDOM_CKPT, name, kwargs, pretrain_run=f"{RANDOM_CKPT}-{name}", pretrain_step=0
        )
        return network.eval(), source
    colorizer = read_checkpoint(ckpt)
    if model is not None and model != colorizer.model_name:
        raise ValueError(
            f"{ckpt}: checkpoint holds a {colorizer.model_name!r} network but model={model!r} was asked for; "
            "drop the model key or pick the matching checkpoint"
        )
    if model_kwargs:
        raise ValueError(f"{ckpt}: model_kwargs apply to ckpt=random only; the checkpoint fixes the network")
    source = BackboneSource(
        ckpt=str(Path(ckpt).resolve()),
        model_name=colorizer.model_name,
        model_kwargs=dict(colorizer.model_kwargs),
        pretrain_run=pretrain_run_name(str(ckpt), colorizer.config),
        pretrain_step=colorizer.global_step,
    )
    return build_network(colorizer), source


class FrozenBackbone(nn.Module):
    """``L`` (B x 1 x H x W in [0, 100]) -> {layer: features}, always in eval mode and without gradients."""

    def __init__(self, network: ColorizationNet, layers: Sequence[str]) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in network.feature_layers]
        if unknown or not layers:
            raise ValueError(
                f"{network.model_name} has no feature layer(s) {unknown or list(layers)}; "
                f"valid: {list(network.feature_layers)}"
            )
        self.network = network.requires_grad_(False)
        self.layers = tuple(layers)
        self.train(False)
        self.channels = self._feature_channels()

    def train(self, mode: bool = True) -> FrozenBackbone:
        # Whatever the caller asks, the trunk stays in eval mode: BatchNorm statistics must never move.
        return super().train(False)

    @torch.no_grad()
    def forward(self, lightness: Tensor) -> dict[str, Tensor]:
        return self.network.features(lightness, self.layers)

    def _feature_channels(self) -> dict[str, int]:
        # A few output strides of input are enough for every layer to have at least one pixel.
        side = 4 * self.network.output_stride
        features = self(torch.full((1, 1, side, side), 50.0, device=_device_of(self.network)))
        return {name: int(features[name].shape[1]) for name in self.layers}


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
