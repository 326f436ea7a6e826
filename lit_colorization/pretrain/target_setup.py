"""A pretraining run's ``ColorTargetBuilder``, built one way for the training module and the prior pass, so the
prior is counted on the same target grid, bins and gray threshold as the loss it rebalances."""

from __future__ import annotations

from torch import Tensor

from lit_colorization.color.targets import ColorTargetBuilder
from lit_colorization.config.schema import PretrainConfig, TargetConfig
from lit_colorization.models import create_model


def target_stride(config: PretrainConfig) -> int:
    """The output stride of the config's network: targets are every ``stride``-th pixel (eccv16 4, alexnet 8)."""
    return create_model(config.model.name, **config.model.kwargs).output_stride


def build_targets(
    targets: TargetConfig, bins: Tensor, prior: Tensor | None, stride: int
) -> ColorTargetBuilder:
    """The builder ``targets`` (the config's section) describes; ``prior`` None for the prior pass itself."""
    return ColorTargetBuilder(
        bins,
        prior,
        stride=stride,
        k=targets.k,
        sigma=targets.sigma,
        lam=targets.lam,
        rebalance=targets.rebalance,
        gray_threshold=targets.gray_threshold,
    )
