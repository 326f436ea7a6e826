"""The optimizer of both VOC fine-tunings (classification and detection): SGD with a step-wise lr."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lit_colorization.models.base import parameter_groups


def fine_tuning_optimizer(model: nn.Module, optim: Any) -> dict[str, Any]:
    """Lightning's optimizer setup for a VOC fine-tuning: SGD (an ``SGDConfig``) on the parameters that train
    (the frozen prefix has none), biases at lr x ``bias_lr_mult`` with ``bias_weight_decay`` where the config has
    them (Caffe's lr_mult / decay_mult), the lr stepped down by ``gamma`` at each of ``milestones`` steps."""
    groups = parameter_groups(
        model,
        optim.lr,
        optim.weight_decay,
        getattr(optim, "bias_lr_mult", 1.0),
        getattr(optim, "bias_weight_decay", None),
    )
    trainable = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in groups]
    optimizer = torch.optim.SGD(
        [group for group in trainable if group["params"]],
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(optim.milestones), gamma=optim.gamma
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
