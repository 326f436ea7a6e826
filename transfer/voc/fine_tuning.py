"""The optimizer of both VOC fine-tunings (classification and detection): SGD with a step-wise lr."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


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
