"""transfer.trunk: strict loading from a checkpoint alone, ckpt=random, and a trunk that cannot leave eval mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_colorization.color import ab_bins
from lit_colorization.models import create_model
from lit_colorization.store.checkpoint import CHECKPOINT_KEY, CheckpointError, write_checkpoint
from transfer.trunk import Trunk, load_network

WIDTH = 0.125  # alexnet channels 12/32/48/48/32, fc 512


@pytest.fixture(scope="module")
def tiny_alexnet_ckpt(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    network = create_model("alexnet", width=WIDTH)
    path = write_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", network, ab_bins(), None, {"run": "tiny"}
    )
    return path, network


def rewritten(path: Path, target: Path, edit) -> Path:
    raw = torch.load(path, weights_only=True)
    edit(raw)
    torch.save(raw, target)
    return target


def test_checkpoint_loads_every_weight_and_names_its_run(tiny_alexnet_ckpt):
    path, original = tiny_alexnet_ckpt
    network, source = load_network(str(path))
    loaded, expected = network.state_dict(), original.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[key], expected[key]) for key in expected)
    assert (source.model_name, source.pretrain_run, source.model_kwargs["width"]) == (
        "alexnet",
        "tiny",
        WIDTH,
    )
    assert source.ckpt == str(path.resolve())
    assert not network.training


def test_checkpoint_of_another_network_is_refused_naming_the_keys(tiny_alexnet_ckpt, tmp_path):
    path, _ = tiny_alexnet_ckpt

    def relabel(raw):
        raw[CHECKPOINT_KEY]["model_name"] = "eccv16"
        raw[CHECKPOINT_KEY]["model_kwargs"] = {"width": WIDTH}

    with pytest.raises(CheckpointError) as error:
        load_network(str(rewritten(path, tmp_path / "relabelled.ckpt", relabel)))
    message = str(error.value)
    assert "missing: conv1.2.bias, conv1.2.weight" in message  # eccv16's second conv1 conv; alexnet has one
    assert (
        "unexpected: conv1.1.num_batches_tracked" in message
    )  # alexnet's BatchNorm sits where eccv16's ReLU is
    assert (
        "shape mismatch: conv1.0.bias (12,) vs (8,), conv1.0.weight (12, 1, 11, 11) vs (8, 1, 3, 3)"
        in message
    )
    assert "\n" not in message


def test_missing_weight_is_an_error_naming_it(tiny_alexnet_ckpt, tmp_path):
    path, _ = tiny_alexnet_ckpt
    broken = rewritten(
        path, tmp_path / "missing.ckpt", lambda raw: raw["state_dict"].pop("net.conv3.2.running_var")
    )
    with pytest.raises(CheckpointError, match=r"missing: conv3\.2\.running_var"):
        load_network(str(broken))


def test_model_key_must_match_the_checkpoint(tiny_alexnet_ckpt):
    path, _ = tiny_alexnet_ckpt
    with pytest.raises(ValueError, match="'alexnet' network but model='eccv16'"):
        load_network(str(path), model="eccv16")
    assert load_network(str(path), model="alexnet")[1].model_name == "alexnet"


def test_random_is_the_same_network_freshly_initialised_per_seed():
    first, source = load_network("random", "alexnet", {"width": WIDTH}, seed=3)
    again, _ = load_network("random", "alexnet", {"width": WIDTH}, seed=3)
    other, _ = load_network("random", "alexnet", {"width": WIDTH}, seed=4)
    assert (source.ckpt, source.model_name, source.pretrain_run) == ("random", "alexnet", "random-alexnet")
    weight = "conv2.1.weight"
    assert torch.equal(first.state_dict()[weight], again.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    # He initialisation of the 5x5 conv (fan_out = 32 * 25): the Gaussian baseline is a real random net.
    std = first.state_dict()[weight].std().item()
    assert std == pytest.approx((2 / (32 * 25)) ** 0.5, rel=0.1)
    assert load_network("random", None, {"width": WIDTH})[1].model_name == "alexnet"  # the paper's baseline


def test_trunk_stays_in_eval_mode_without_gradients():
    network, _ = load_network("random", "alexnet", {"width": WIDTH})
    backbone = Trunk(network, ["conv2", "conv5"])
    backbone.train()
    assert not any(module.training for module in backbone.modules())
    assert not any(parameter.requires_grad for parameter in backbone.parameters())
    features = backbone(torch.rand(2, 1, 32, 32) * 100)
    assert set(features) == {"conv2", "conv5"} and features["conv5"].grad_fn is None
    assert backbone.channels == {"conv2": 32, "conv5": 32}


def test_unknown_layer_is_an_error_listing_the_valid_ones():
    network, _ = load_network("random", "alexnet", {"width": WIDTH})
    with pytest.raises(ValueError, match=r"conv9.*valid: \['conv1'"):
        Trunk(network, ["conv9"])


def test_standard_geometry_folds_the_trained_alexnet_and_names_inputs_too_small_for_a_layer(
    tiny_alexnet_ckpt,
):
    path, original = tiny_alexnet_ckpt
    network, _ = load_network(str(path), standard_geometry=True)
    assert network.geometry == "probe" and not network.training
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in network.modules())
    lightness = torch.rand(2, 1, 227, 227, generator=torch.Generator().manual_seed(0)) * 100
    # The folded network is the trained one in the standard geometry: conv1 without padding, same weights, on the
    # release's input L - 50 (docs/reference.md section 11.2).
    trained_conv1 = torch.nn.functional.conv2d(
        lightness - 50, original.conv1[0].weight, original.conv1[0].bias, stride=4
    )
    norm = original.conv1[1]
    expected = torch.relu(
        (trained_conv1 - norm.running_mean[:, None, None])
        / (norm.running_var + norm.eps).sqrt()[:, None, None]
    )
    torch.testing.assert_close(
        network.features(lightness, ["conv1"])["conv1"],
        expected,
        rtol=1e-4,
        atol=1e-5 * expected.abs().max().item(),
    )
    backbone = Trunk(network, ["conv5", "fc6"])
    assert backbone.feature_shapes(227, 227) == {"conv5": (32, 13, 13), "fc6": (512, 1, 1)}
    with pytest.raises(ValueError, match="alexnet: a 112 x 112 input is too small to reach fc6"):
        backbone.feature_shapes(112, 112)
    eccv16, _ = load_network("random", "eccv16", {"width": WIDTH}, standard_geometry=True)
    assert any(isinstance(module, torch.nn.BatchNorm2d) for module in eccv16.modules())  # one geometry, kept
