"""The trunk every transfer task uses: a colorization network from a checkpoint (or ``ckpt=random``), cut after
its deepest layer in use, frozen before the layer it trains from.

``Trunk`` is the one place where a network is cut (through its own ``features()``) and frozen. The rule of
``train()``: the stages before ``train_from`` never train, whatever Lightning asks (no gradients, eval mode, so
BatchNorm running statistics never move: docs/reference.md section 9, probes silently un-freezing BatchNorm);
with ``freeze_batch_norm`` every BatchNorm layer keeps its statistics and affine parameters (detection batches of
two images are too small to estimate them). A probe's trunk (``train_from=None``) computes without autograd.
The linear probes and the VOC SVMs load their network with ``standard_geometry``: an AlexNet is then probed in the
standard geometry the published protocols assume (docs/reference.md sections 4.3 and 6.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lit_colorization.models import ColorizationNet, create_model
from lit_colorization.models.alexnet import TRAIN_GEOMETRY, AlexNetColorizer, to_probe_geometry
from lit_colorization.store.checkpoint import build_network, read_checkpoint

STANDARD_ALEXNET_SIDE = 227
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


def in_standard_geometry(network: ColorizationNet) -> ColorizationNet:
    """``network`` as the linear-probe protocols and the VOC SVMs probe it.

    An AlexNet in the release's training geometry becomes the standard AlexNet the release probes
    (``to_probe_geometry``: BatchNorm folded into the convs, conv1 and the pools unpadded, pool5 at stride 2;
    docs/reference.md section 4.3), in eval mode. Every other network has one geometry and comes back as it is.
    """
    if isinstance(network, AlexNetColorizer) and network.geometry == TRAIN_GEOMETRY:
        return to_probe_geometry(network).eval()
    return network


def load_network(
    ckpt: str,
    model: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    standard_geometry: bool = False,
) -> tuple[ColorizationNet, BackboneSource]:
    """The network of ``ckpt`` (weights loaded strictly), or for ``ckpt="random"`` the network ``model`` seeded;
    with ``standard_geometry``, passed through ``in_standard_geometry``.

    With a checkpoint, ``model`` (if given) must name the checkpoint's network: a probe of one network
    labelled as another would be a silent mistake.
    """
    network, source = _load_network(ckpt, model, model_kwargs, seed)
    return (in_standard_geometry(network) if standard_geometry else network), source


def _load_network(
    ckpt: str, model: str | None, model_kwargs: dict[str, Any] | None, seed: int
) -> tuple[ColorizationNet, BackboneSource]:
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


class Trunk(nn.Module):
    """``L`` (B x 1 x H x W in [0, 100]) -> {layer: features} for ``outputs``, through ``network.features()``.

    Stages after the deepest output and the colorization logits are replaced by identities, so that no
    optimizer or DDP ever sees parameters without a gradient. ``train_from`` (a layer up to the deepest output)
    is the first trainable stage; None freezes the whole trunk.
    """

    def __init__(
        self,
        network: ColorizationNet,
        outputs: Sequence[str],
        train_from: str | None = None,
        freeze_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(outputs, str) or not outputs or any(n not in network.feature_layers for n in outputs):
            raise ValueError(
                f"{network.model_name} has no feature layer(s) {list(outputs) if not isinstance(outputs, str) else outputs}; "
                f"valid: {list(network.feature_layers)}"
            )
        self.outputs = tuple(name for name in network.feature_layers if name in outputs)
        layers = network.feature_layers[: network.feature_layers.index(self.outputs[-1]) + 1]
        if train_from is not None and train_from not in layers:
            raise ValueError(
                f"config key 'train_from': expected a layer of {network.model_name} up to "
                f"{self.outputs[-1]!r} ({list(layers)}), got {train_from!r}"
            )
        for dropped in network.feature_layers[len(layers) :]:
            setattr(network, dropped, nn.Identity())
        network.logits = nn.Identity()
        split = len(layers) if train_from is None else layers.index(train_from)
        self.frozen_layers, self.trainable_layers = tuple(layers[:split]), tuple(layers[split:])
        self.freeze_batch_norm = freeze_batch_norm
        self.network = network
        for name in layers:
            getattr(network, name).requires_grad_(name in self.trainable_layers)
        for norm in self._batch_norm_layers():
            if freeze_batch_norm:
                norm.requires_grad_(False)
        # A few output strides of input give every layer at least one pixel; AlexNet's fc6 (a 6x6 conv after
        # three stride-2 poolings in the standard geometry) needs the standard 227.
        side = max(4 * network.output_stride, STANDARD_ALEXNET_SIDE)
        self.channels = {name: shape[0] for name, shape in self.feature_shapes(side, side).items()}
        # Lightning keeps each submodule's mode as found: set the rule's modes now.
        self.train(True)

    def train(self, mode: bool = True) -> Trunk:
        super().train(mode and bool(self.trainable_layers))
        for name in self.frozen_layers:
            getattr(self.network, name).train(False)
        if self.freeze_batch_norm:
            for norm in self._batch_norm_layers():
                norm.train(False)
        return self

    def forward(self, lightness: Tensor) -> dict[str, Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and bool(self.trainable_layers)):
            return self.network.features(lightness, self.outputs)

    def _batch_norm_layers(self) -> list[nn.Module]:
        return [m for m in self.network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def feature_shapes(self, height: int, width: int) -> dict[str, tuple[int, int, int]]:
        """(C, H, W) of each output for a ``height`` x ``width`` input, from one forward in eval mode; a ValueError
        if the input is too small to reach the deepest output.

        On a network on the meta device nothing is computed: only the shapes come out.
        """
        was_training = self.training
        self.network.eval()  # a forward in train mode would move BatchNorm running statistics
        try:
            parameter = next(self.network.parameters())
            probe = torch.full((1, 1, height, width), 50.0, device=parameter.device, dtype=parameter.dtype)
            features = self.network.features(probe, self.outputs)
        except RuntimeError as error:  # a kernel larger than its (padded) input
            raise ValueError(
                f"{self.network.model_name}: a {height} x {width} input is too small to reach "
                f"{self.outputs[-1]} ({str(error).splitlines()[0]})"
            ) from None
        finally:
            self.train(was_training)
        return {name: tuple(features[name].shape[1:]) for name in self.outputs}  # type: ignore[misc]
