"""A fresh run's starting weights: He initialisation (the network's own), or Kraehenbuehl et al.'s data-dependent
initialisation measured on the run's own training crops, which the release trained its AlexNet from
(docs/reference.md section 4; re-implementations without it reported a loss that would not fall)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

from lit_colorization.color import uint8_to_lab
from lit_colorization.config.schema import ModelConfig
from lit_colorization.data.datamodule import ColorizationDataModule, training_rgb_batches
from lit_colorization.models import ColorizationNet
from lit_colorization.models.data_init import InitReport, data_dependent_init_
from lit_colorization.registry import Registry

log = logging.getLogger(__name__)

# model.init -> what it does to a freshly built network (in place); a data-dependent one returns its report.
Initialiser = Callable[[ColorizationNet, ModelConfig, ColorizationDataModule, int], InitReport | None]
INITIALISATIONS: Registry[Initialiser] = Registry("model.init")


def training_lightness(datamodule: ColorizationDataModule, count: int, device: torch.device | str) -> Tensor:
    """``L`` (N x 1 x S x S) of the first ``count`` training crops (all of them where there are fewer)."""
    batches, _ = training_rgb_batches(datamodule, device)
    taken: list[Tensor] = []
    for rgb in batches:
        taken.append(rgb)
        if sum(batch.shape[0] for batch in taken) >= count:
            break
    if not taken:
        raise ValueError("model.init=kraehenbuehl: the training data gave no batch to measure the network on")
    return uint8_to_lab(torch.cat(taken)[:count])[:, :1]


def initialise(
    network: ColorizationNet, model: ModelConfig, datamodule: ColorizationDataModule, seed: int
) -> InitReport | None:
    """Apply ``model.init`` to ``network`` in place; the report of a data-dependent initialisation, else None.

    Under DDP every rank computes it on its own crops and DistributedDataParallel then broadcasts rank 0's
    weights, so all ranks start alike.
    """
    return INITIALISATIONS.get(model.init)(network, model, datamodule, seed)


@INITIALISATIONS.decorator("default")
def keep_layer_defaults(
    network: ColorizationNet, model: ModelConfig, datamodule: ColorizationDataModule, seed: int
) -> None:
    """The layers' own initialisation, as built: nothing to do."""
    return None


@INITIALISATIONS.decorator("kraehenbuehl")
def kraehenbuehl_init(
    network: ColorizationNet, model: ModelConfig, datamodule: ColorizationDataModule, seed: int
) -> InitReport:
    """Kraehenbuehl et al.'s data-dependent initialisation, measured on ``model.init_images`` training crops."""
    # On the GPU where there is one: k-means of fc6's patches is heavy work for a CPU.
    home = next(network.parameters()).device
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lightness = training_lightness(datamodule, model.init_images, device)
    report = data_dependent_init_(network.to(device), lightness, model.init_method, seed=seed)
    network.to(home)
    fallbacks = [layer.name for layer in report.layers if layer.filters != model.init_method]
    log.info(
        "Kraehenbuehl initialisation (%s filters) on %d training crops: %d layers, between-layer ratio spread "
        "%.3g -> %.3g in %d steps%s",
        model.init_method,
        lightness.shape[0],
        len(report.layers),
        report.ratio_spread_before,
        report.ratio_spread_after,
        report.iterations,
        f"; Gaussian filters where the crops had too few patches: {fallbacks}" if fallbacks else "",
    )
    return report
