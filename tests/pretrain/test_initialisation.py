"""model.init=kraehenbuehl: a fresh run starts from the data-dependent initialisation, measured on its own crops."""

import pytest
import torch

from lit_colorization.data import build_datamodule
from lit_colorization.models import create_model
from lit_colorization.models.base import normalise_lightness
from lit_colorization.pretrain.initialisation import initialise, training_lightness
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from tests.helpers import run_module, tiny_pretrain_overrides, tiny_synthetic_data


def _config(*overrides: str):
    return PRETRAIN.load(
        "sample",
        [*tiny_synthetic_data(batch_size=4), "model.name=alexnet", "model.kwargs.width=0.25", *overrides],
    )


def test_the_release_run_initialises_conv1_to_conv5_from_the_crops_and_fills_the_rest():
    config = _config("model.init=kraehenbuehl", "model.init_images=6")
    torch.manual_seed(0)
    network = create_model("alexnet", width=0.25)
    datamodule = build_datamodule(config.data)
    report = initialise(network, config.model, datamodule, seed=0)
    assert report is not None and report.iterations == 0  # within-layer only, as the release (no -cs)
    assert [layer.name for layer in report.layers] == ["conv1.0", "conv2.1", "conv3.1", "conv4.0", "conv5.0"]
    for layer in report.layers:  # each conv's output on the crops (BatchNorms on batch statistics before it)
        assert torch.allclose(layer.channel_std, torch.ones_like(layer.channel_std), atol=1e-3)
        assert torch.allclose(layer.channel_mean, torch.full_like(layer.channel_mean, 0.1), atol=1e-3)
    # conv1 on exactly these crops, through the release's L - 50 input.
    lightness = training_lightness(datamodule, 6, "cpu")
    assert lightness.shape == (6, 1, 32, 32)
    with torch.no_grad():
        pre_activation = network.conv1[0](normalise_lightness(lightness, network.input_scaling))
    assert torch.allclose(pre_activation.std(dim=(0, 2, 3), correction=0), torch.ones(24), atol=1e-3)
    # The rest from the release's train_val.prototxt fillers: fc6 / fc7 N(0, 0.005^2) with bias 1, fc8 zero.
    for stage in (network.fc6, network.fc7):
        conv = stage[1] if isinstance(stage[0], torch.nn.MaxPool2d) else stage[0]
        assert conv.weight.std().item() == pytest.approx(0.005, rel=0.05)
        assert torch.equal(conv.bias, torch.ones_like(conv.bias))
    assert not network.logits.weight.any() and not network.logits.bias.any()
    # The BatchNorms are fresh again: the running statistics of the init forwards are not kept.
    norm = network.conv1[1]
    assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))


def test_the_between_layer_variant_over_every_layer_stays_available():
    config = _config(
        "model.init=kraehenbuehl",
        "model.init_images=6",
        "model.init_between_layer=true",
        "model.init_bias=0.0",
        "model.init_layers=[conv1,conv2,conv3,conv4,conv5,fc6,fc7,logits]",
    )
    network = create_model("alexnet", width=0.25)
    report = initialise(network, config.model, build_datamodule(config.data), seed=0)
    assert report.converged and len(report.layers) == 8
    assert report.layer("conv1.0").scale != pytest.approx(1.0)
    assert network.logits.weight.any()  # from data, not the zero filler


def test_default_init_leaves_the_network_alone():
    config = _config("model.init=default")
    network = create_model("alexnet", width=0.25)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    assert initialise(network, config.model, build_datamodule(config.data), seed=0) is None
    assert all(torch.equal(v, before[k]) for k, v in network.state_dict().items())


def test_alexnet_recipe_starts_from_the_release_initialisation():
    assert PRETRAIN.load("sample", ["model.name=alexnet"]).model.init == "kraehenbuehl"
    assert PRETRAIN.load("sample", []).model.init == "default"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.init=magic", "model.init"),
        ("model.init_method=svd", "model.init_method"),
        ("model.init_images=0", "model.init_images"),
        ("model.init_layers=[conv9]", "model.init_layers"),
    ],
)
def test_bad_init_keys_are_one_line_errors(override, key):
    with pytest.raises(ValueError, match=f"config key '{key}'"):
        _config(override)


def test_pretrain_cli_initialises_a_fresh_run_and_not_a_resumed_one(tmp_path):
    overrides = [
        *tiny_pretrain_overrides(tmp_path),
        "model.name=alexnet",
        "model.init=kraehenbuehl",
        "model.init_images=8",
        "trainer.max_steps=2",
    ]
    fresh = run_module("lit_colorization.cli.pretrain", *overrides)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert (
        "Kraehenbuehl initialisation (kmeans filters, bias 0.1) on 8 training crops: 5 convs, within-layer only; fc6, fc7, logits from the release's fillers"
        in fresh.stderr
    )
    resumed = run_module(
        "lit_colorization.cli.pretrain", *overrides[:-1], "trainer.max_steps=4", "resume=auto"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Kraehenbuehl initialisation" not in resumed.stderr
