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


def test_initialised_convs_have_unit_variance_on_the_runs_own_crops():
    config = _config("model.init=kraehenbuehl", "model.init_images=6")
    torch.manual_seed(0)
    network = create_model("alexnet", width=0.25)
    datamodule = build_datamodule(config.data)
    report = initialise(network, config.model, datamodule, seed=0)
    assert report is not None and report.converged
    conv1 = report.layer("conv1.0")
    assert torch.allclose(conv1.channel_std, torch.ones_like(conv1.channel_std), atol=1e-3)
    # Measured on exactly these crops: conv1's output on them has the within-layer unit variance, times the
    # one factor the between-layer step scaled the whole layer by.
    lightness = training_lightness(datamodule, 6, "cpu")
    assert lightness.shape == (6, 1, 32, 32)
    with torch.no_grad():
        pre_activation = network.conv1[0](normalise_lightness(lightness))
    expected = torch.full((pre_activation.shape[1],), conv1.scale)
    assert torch.allclose(pre_activation.std(dim=(0, 2, 3)), expected, rtol=1e-2)
    assert conv1.scale != pytest.approx(1.0)


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
    assert "Kraehenbuehl initialisation (kmeans filters) on 8 training crops" in fresh.stderr
    resumed = run_module(
        "lit_colorization.cli.pretrain", *overrides[:-1], "trainer.max_steps=4", "resume=auto"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Kraehenbuehl initialisation" not in resumed.stderr
