"""A colorization network cut after one of its feature layers, and its fine-tuning optimizer, for the VOC benchmarks.

Both VOC tasks put a new head on a prefix of the pretrained trunk: classification on ``head_layer`` (AlexNet
fc7), detection on ``backbone_layer`` (AlexNet conv5). The stages after the cut and the colorization logits
are dropped rather than kept unused, so no optimizer or DDP ever sees parameters that get no gradient.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from lit_colorization.models import ColorizationNet


def trunk_stages(network: ColorizationNet, last_layer: str) -> OrderedDict[str, nn.Module]:
    """The trunk stages of ``network`` from the first up to and including ``last_layer``, by name."""
    if last_layer not in network.feature_layers:
        raise ValueError(
            f"{network.model_name} has no feature layer {last_layer!r}; valid: {list(network.feature_layers)}"
        )
    stages = list(network.layer_modules().items())
    return OrderedDict(stages[: network.feature_layers.index(last_layer) + 1])


def output_channels(stages: nn.Module, output_stride: int) -> int:
    """Channels of what ``stages`` (taking normalised ``L``) outputs, found by one tiny forward in eval mode."""
    parameter = next(stages.parameters())
    was_training = stages.training
    stages.eval()  # a probe forward in train mode would move BatchNorm running statistics
    try:
        with torch.no_grad():
            side = 4 * output_stride  # enough for every stage to keep at least one pixel
            probe = torch.zeros(1, 1, side, side, device=parameter.device, dtype=parameter.dtype)
            return int(stages(probe).shape[1])
    finally:
        stages.train(was_training)


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [sub for sub in module.modules() if isinstance(sub, nn.modules.batchnorm._BatchNorm)]


def fine_tuning_optimizer(model: nn.Module, optim: Any) -> dict[str, Any]:
    """Lightning's optimizer setup for a VOC fine-tuning: SGD (an ``SGDConfig``) on the parameters that train
    (the frozen prefix has none), the lr stepped down by ``gamma`` at each of ``milestones`` optimizer steps."""
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.SGD(
        trainable, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay
    )
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(optim.milestones), gamma=optim.gamma
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
