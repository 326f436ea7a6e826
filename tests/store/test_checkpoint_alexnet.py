"""lit_colorization.store.checkpoint: checkpoints of the AlexNet from before the release geometry, or trained on
the old (L - 50) / 100 input, fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lit_colorization.color import ab_bins
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import (
    CHECKPOINT_KEY,
    NETWORK_PREFIX,
    CheckpointError,
    build_network,
    describe,
    read_checkpoint,
    write_checkpoint,
)


def _conv_bn_relu(
    in_channels: int, channels: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(
            in_channels, channels, kernel, stride=stride, padding=padding, dilation=dilation, bias=False
        ),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    ]


class PreReleaseAlexNet(nn.Module):
    """The layer list of the project's AlexNet before the release geometry, written out independently."""

    def __init__(self, c96: int = 96, c256: int = 256, c384: int = 384, fc: int = 4096) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*_conv_bn_relu(1, c96, 11, stride=4, padding=5))
        self.conv2 = nn.Sequential(nn.MaxPool2d(3, 2, 1), *_conv_bn_relu(c96, c256, 5, padding=2))
        self.conv3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_bn_relu(c256, c384, 3, padding=1))
        self.conv4 = nn.Sequential(*_conv_bn_relu(c384, c384, 3, padding=1))
        self.conv5 = nn.Sequential(*_conv_bn_relu(c384, c256, 3, padding=1))
        self.fc6 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_conv_bn_relu(c256, fc, 6, padding=5, dilation=2))
        self.fc7 = nn.Sequential(*_conv_bn_relu(fc, fc, 1))
        self.logits = nn.Conv2d(fc, 313, 1)


def test_the_old_layout_is_not_the_products_alexnet():
    """The fixture below must be a checkpoint the product's AlexNet cannot hold: its count and tensors differ."""
    with torch.device("meta"):
        old, current = PreReleaseAlexNet(), create_model("alexnet")
    assert sum(parameter.numel() for parameter in old.parameters()) == 59_550_041
    assert (
        sum(parameter.numel() for parameter in current.parameters()) == 58_127_353
    )  # tests/models/test_models.py
    old_shapes = {key: tuple(value.shape) for key, value in old.state_dict().items()}
    shapes = {key: tuple(value.shape) for key, value in current.state_dict().items()}
    # Then: ungrouped convs (conv2, conv4, conv5 weights twice as deep), no conv biases, affine BatchNorm.
    assert sorted(key for key in old_shapes.keys() & shapes.keys() if old_shapes[key] != shapes[key]) == [
        "conv2.1.weight", "conv4.0.weight", "conv5.0.weight",
    ]  # fmt: skip
    assert {"conv1.1.weight", "conv1.1.bias"} <= old_shapes.keys() - shapes.keys()
    assert "conv1.0.bias" in shapes.keys() - old_shapes.keys()


@pytest.fixture
def pre_release_checkpoint(tmp_path) -> Path:
    state = PreReleaseAlexNet(12, 32, 48, 512).state_dict()  # width 0.125, as the old code saved it
    checkpoint = {
        "state_dict": {NETWORK_PREFIX + key: value for key, value in state.items()},
        CHECKPOINT_KEY: describe(
            "alexnet", {"num_bins": 313, "width": 0.125}, ab_bins(), None, {"run": "old"}, "L - 50"
        ),
        "global_step": 1000,
    }
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    return path


def test_a_pre_release_alexnet_checkpoint_is_one_error_naming_the_file_and_the_change(pre_release_checkpoint):
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(pre_release_checkpoint)
    assert str(error.value) == (
        f"{pre_release_checkpoint}: checkpoint holds the pre-release AlexNet geometry (affine BatchNorm, "
        "bias-free ungrouped convs, stride-1 pool2); retrain with this version"
    )


@pytest.mark.parametrize("geometry", ["train", "probe"])
def test_current_alexnet_checkpoints_load(tmp_path, geometry):
    torch.manual_seed(0)
    network = create_model("alexnet", width=0.125, geometry=geometry).eval()
    path = write_checkpoint(tmp_path / f"{geometry}.ckpt", network, ab_bins(), None, {"run": geometry})
    rebuilt = build_network(read_checkpoint(path))
    assert rebuilt.hparams_for_checkpoint() == network.hparams_for_checkpoint()
    expected = network.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in rebuilt.state_dict().items())


def _alexnet_checkpoint(tmp_path: Path, input_scaling: str | None) -> Path:
    network = create_model("alexnet", width=0.125)
    entry = describe("alexnet", network.hparams_for_checkpoint(), ab_bins(), None, {"run": "x"}, "L - 50")
    if input_scaling is None:
        del entry["input_scaling"]  # as checkpoints were written before the scaling was recorded
    else:
        entry["input_scaling"] = input_scaling
    state = {NETWORK_PREFIX + key: value for key, value in network.state_dict().items()}
    path = tmp_path / "old-scaling.ckpt"
    torch.save({"state_dict": state, CHECKPOINT_KEY: entry, "global_step": 10}, path)
    return path


@pytest.mark.parametrize("recorded", [None, "(L - 50) / 100"])
def test_an_alexnet_trained_on_the_old_input_scaling_is_one_error(tmp_path, recorded):
    path = _alexnet_checkpoint(tmp_path, recorded)
    with pytest.raises(CheckpointError) as error:
        read_checkpoint(path)
    assert str(error.value) == (
        f"{path}: AlexNet checkpoint trained on the input (L - 50) / 100 (or written before checkpoints recorded "
        "their input scaling); this AlexNet takes the release's L - 50 (docs/reference.md section 11.2): retrain it"
    )


def test_alexnet_checkpoints_record_the_release_input_and_the_network_uses_it(tmp_path):
    network = create_model("alexnet", width=0.125).eval()
    path = write_checkpoint(tmp_path / "a.ckpt", network, ab_bins(), None, {"run": "a"})
    assert torch.load(path, weights_only=True)[CHECKPOINT_KEY]["input_scaling"] == "L - 50"
    # conv1 sees L - 50: a constant L of 57 reaches it as 7.
    conv = network.conv1[0]
    captured: dict[str, torch.Tensor] = {}
    handle = conv.register_forward_pre_hook(lambda _module, args: captured.setdefault("input", args[0]))
    with torch.no_grad():
        network.features(torch.full((1, 1, 11, 11), 57.0), ["conv1"])
    handle.remove()
    assert torch.equal(captured["input"], torch.full((1, 1, 11, 11), 7.0))


def test_an_unknown_recorded_scaling_is_one_error(tmp_path):
    network = create_model("eccv16", width=0.125)
    entry = describe("eccv16", network.hparams_for_checkpoint(), ab_bins(), None, {"run": "x"}, "L / 7")
    state = {NETWORK_PREFIX + key: value for key, value in network.state_dict().items()}
    path = tmp_path / "odd.ckpt"
    torch.save({"state_dict": state, CHECKPOINT_KEY: entry}, path)
    with pytest.raises(CheckpointError, match=r"unknown input scaling 'L / 7', expected one of"):
        read_checkpoint(path)
