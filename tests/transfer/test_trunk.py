"""Trunk: the one cut and freeze of every transfer task (probe, SVMs, VOC classification and detection)."""

import pytest
import torch
from torch import nn

from lit_colorization.models import create_model
from transfer.trunk import Trunk

WIDTH = 0.125


def _alexnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("alexnet", width=WIDTH)


def _batch_norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize(
    ("train_from", "frozen", "trainable"),
    [
        (None, ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6"), ()),
        ("conv4", ("conv1", "conv2", "conv3"), ("conv4", "conv5", "fc6")),
        ("conv1", (), ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6")),
    ],
)
def test_train_rule_stages_before_train_from_never_train(train_from, frozen, trainable):
    trunk = Trunk(_alexnet(), ["conv2", "fc6"], train_from=train_from)
    assert (trunk.frozen_layers, trunk.trainable_layers) == (frozen, trainable)
    for mode in (True, False, True):  # Lightning calls train() and eval() in turn
        trunk.train(mode)
        for name in frozen:
            stage = getattr(trunk.network, name)
            assert not stage.training and not any(p.requires_grad for p in stage.parameters())
        for name in trainable:
            stage = getattr(trunk.network, name)
            assert stage.training == mode and all(p.requires_grad for p in stage.parameters())
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    trunk.train()
    features = trunk(torch.rand(2, 1, 48, 48) * 100)
    assert list(features) == ["conv2", "fc6"]
    if trainable:
        features["fc6"].sum().backward()
    for key, value in trunk.state_dict().items():  # frozen stages' weights and BatchNorm statistics
        if key.split(".")[1] in frozen:
            assert torch.equal(value, before[key]), key
    assert (features["fc6"].grad_fn is None) == (not trainable)


def test_a_frozen_trunk_records_no_graph_even_for_an_input_that_asks_for_one():
    # Its parameters are frozen either way; computing without autograd is what keeps a probe's trunk from
    # holding every activation for a backward pass that never comes.
    lightness = (torch.rand(2, 1, 48, 48) * 100).requires_grad_()
    features = Trunk(_alexnet(), ["conv2"])(lightness)
    assert features["conv2"].grad_fn is None and not features["conv2"].requires_grad
    trainable = Trunk(_alexnet(), ["conv2"], train_from="conv2")(lightness)
    assert trainable["conv2"].grad_fn is not None


def test_cut_drops_the_stages_after_the_deepest_output_and_the_logits():
    trunk = Trunk(_alexnet(), ["conv3"])
    assert isinstance(trunk.network.conv4, nn.Identity) and isinstance(trunk.network.fc7, nn.Identity)
    assert isinstance(trunk.network.logits, nn.Identity)
    assert trunk.channels == {"conv3": 48}


def test_frozen_batch_norm_keeps_statistics_in_a_trained_trunk():
    trunk = Trunk(_alexnet(), ["conv5"], train_from="conv1", freeze_batch_norm=True)
    trunk.train()
    assert all(not norm.training for norm in _batch_norms(trunk))
    assert all(not p.requires_grad for norm in _batch_norms(trunk) for p in norm.parameters())
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(conv.weight.requires_grad for conv in convs)


@pytest.mark.parametrize(
    ("outputs", "train_from", "message"),
    [
        (["conv9"], None, r"no feature layer\(s\) \['conv9'\]; valid: \['conv1'"),
        ([], None, "no feature layer"),
        (["conv3"], "fc6", r"'train_from': expected a layer of alexnet up to 'conv3'"),
    ],
)
def test_bad_cuts_are_one_line_errors(outputs, train_from, message):
    with pytest.raises(ValueError, match=message):
        Trunk(_alexnet(), outputs, train_from=train_from)
