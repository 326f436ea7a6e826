"""The checkpoints under evaluation: short labels, rebalancing weights from their priors, temperatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from lit_colorization.color.targets import ColorTargetBuilder
from lit_colorization.config.loading import ConfigError
from lit_colorization.config.schema import TargetConfig
from lit_colorization.evaluation.eval_config import EvalColorConfig
from lit_colorization.inference.colorizer import Colorizer, load_colorizer
from lit_colorization.inference.network_output import output_to_ab, upsample_ab
from lit_colorization.store.checkpoint import read_checkpoint


@dataclass
class EvaluatedCheckpoint:
    label: str
    path: str
    colorizer: Colorizer
    # The checkpoint's targets, rebuilt from its prior: rebalanced AuC weighs pixels as training's validation
    # does. None when the checkpoint stores no prior.
    targets: ColorTargetBuilder | None
    lam: float | None
    temperatures: tuple[float | None, ...]  # the main temperature first; (None,) for a regression network
    seconds: float = 0.0

    @property
    def main_temperature(self) -> float | None:
        return self.temperatures[0]

    def pixel_weights(self, true_ab: Tensor) -> Tensor | None:
        """B x H x W rebalancing weight of each pixel of ``true_ab``; None without a prior."""
        return None if self.targets is None else self.targets.metric_weights_for(true_ab)


def checkpoint_labels(paths: Sequence[str]) -> list[str]:
    """Short unique names: the file stem, or ``<run>/<stem>`` when stems repeat (``runs/<run>/checkpoints/x``)."""

    def run_and_stem(path: Path) -> str:
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return f"{folder.name}/{path.stem}"

    stems = [Path(path).stem for path in paths]
    labels = stems if len(set(stems)) == len(stems) else [run_and_stem(Path(path)) for path in paths]
    return [label if labels.count(label) == 1 else f"{label}#{i + 1}" for i, label in enumerate(labels)]


def load_checkpoints(config: EvalColorConfig, device: torch.device) -> list[EvaluatedCheckpoint]:
    checkpoints = []
    for label, path in zip(checkpoint_labels(config.ckpts), config.ckpts, strict=True):
        colorizer = load_colorizer(path, device=str(device))
        stored = read_checkpoint(path)
        multiple = colorizer.network.input_multiple
        if config.data.crop_size % multiple:
            raise ConfigError(
                f"config key 'data.crop_size': expected a multiple of {multiple} for {path}'s network, "
                f"got {config.data.crop_size}"
            )
        trained = stored.config.get("targets", {})
        lam = config.rebalance_lam
        if lam is None:
            lam = trained.get("lam", TargetConfig.lam)
        targets = None
        if stored.prior is not None:
            targets = ColorTargetBuilder(
                colorizer.bins,
                stored.prior,
                colorizer.network.output_stride,
                k=trained.get("k", TargetConfig.k),
                sigma=trained.get("sigma", TargetConfig.sigma),
                lam=lam,
                gray_threshold=config.gray_threshold,
            ).to(device)
        temperatures = (
            (None,) if colorizer.regression else tuple(dict.fromkeys([config.temperature, *config.sweep]))
        )
        checkpoints.append(EvaluatedCheckpoint(label, path, colorizer, targets, lam, temperatures))
    return checkpoints


def predict_ab(
    checkpoint: EvaluatedCheckpoint, output: Tensor, temperature: float | None, size: tuple[int, int]
) -> Tensor:
    """ab of the network ``output`` at ``temperature``, upsampled to ``size``."""
    colorizer = checkpoint.colorizer
    # A regression network ignores the temperature; any positive value does.
    ab = output_to_ab(output, colorizer.bins, temperature or 1.0, colorizer.regression)
    return upsample_ab(ab, size)
