"""lit_colorization.models.base.parameter_groups: Caffe's per-blob lr_mult / decay_mult as optimizer groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_colorization.models import create_model
from lit_colorization.models.base import parameter_groups


def test_alexnet_biases_get_twice_the_lr_and_no_decay():
    network = create_model("alexnet", width=0.125)
    groups = parameter_groups(network, 3e-5, 1e-3, bias_lr_mult=2.0, bias_weight_decay=0.0)
    assert [(group["name"], group["lr"], group["weight_decay"]) for group in groups] == [
        ("weights", 3e-5, 1e-3),
        ("biases", 6e-5, 0.0),
    ]
    # 8 convs (conv1..fc7 and the logits), each with a bias; the BatchNorms have no affine parameters.
    assert len(groups[1]["params"]) == 8 and all(parameter.ndim == 1 for parameter in groups[1]["params"])
    assert len(groups[0]["params"]) == 8 and all(parameter.ndim == 4 for parameter in groups[0]["params"])


def test_affine_batchnorm_parameters_stay_with_the_weights_and_null_decay_is_the_weights():
    network = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(2, 3, bias=False))
    weights, biases = parameter_groups(network, 0.1, 0.5, bias_lr_mult=1.0, bias_weight_decay=None)
    assert [tuple(p.shape) for p in weights["params"]] == [(2, 1, 3, 3), (2,), (2,), (3, 2)]
    assert [tuple(p.shape) for p in biases["params"]] == [(2,)]
    assert biases["params"][0] is network[0].bias
    assert (biases["lr"], biases["weight_decay"]) == (0.1, 0.5)


def test_a_torch_optimizer_takes_the_groups_and_the_scheduler_scales_each():
    network = nn.Conv2d(1, 2, 3)
    optimizer = torch.optim.Adam(parameter_groups(network, 1.0, 0.0, bias_lr_mult=2.0), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1)
    optimizer.step()  # no gradients yet: a no-op, in the order PyTorch expects
    schedule.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.1, 0.2])


def test_a_non_positive_bias_multiplier_is_an_error():
    with pytest.raises(ValueError, match="bias_lr_mult must be positive, got 0"):
        parameter_groups(nn.Conv2d(1, 1, 1), 0.1, 0.0, bias_lr_mult=0)
