"""transfer.probe.module: feature sizes per layer, a trunk that never moves, layer=all equal to separate runs."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lit_colorization.data import DataConfig, build_datamodule
from tests.conftest import bare_trainer
from transfer.probe.config import ProbeOptimConfig
from transfer.probe.module import LinearProbeModule, resolve_layers, top_k_for
from transfer.trunk import Trunk, load_network

WIDTH = 0.125
BATCH = 8

# docs/reference.md section 6 (alexnet, resnet50) and this project's eccv16 table: channels x side^2.
EXPECTED_DIMS = {
    "alexnet": {"conv1": 9600, "conv2": 9216, "conv3": 9600, "conv4": 9600, "conv5": 9216},
    "resnet50": {"conv1": 9216, "res2": 9216, "res3": 8192, "res4": 9216, "res5": 8192},
    "eccv16": {
        "conv1": 9216, "conv2": 8192, "conv3": 9216, "conv4": 8192, "conv5": 8192, "conv6": 8192,
        "conv7": 8192, "conv8": 9216,
    },
}  # fmt: skip


def probe_module(model: str, layers: list[str], num_classes: int = 10, **kwargs) -> LinearProbeModule:
    network, _ = load_network("random", model, kwargs, seed=0)
    return LinearProbeModule(Trunk(network, layers), num_classes, ProbeOptimConfig(), batch_size=BATCH)


def test_alexnet_pooled_features_have_the_paper_sizes_at_227():
    module = probe_module("alexnet", resolve_layers("all", "alexnet"))
    lightness = torch.rand(2, 1, 227, 227, generator=torch.Generator().manual_seed(0)) * 100
    features = module.backbone(lightness)
    pooled = {layer: head.pooled(features[layer]).shape for layer, head in module.heads.items()}
    assert pooled == {layer: torch.Size([2, dim]) for layer, dim in EXPECTED_DIMS["alexnet"].items()}
    assert module.feature_dims == EXPECTED_DIMS["alexnet"]
    module.eval()
    assert module.heads["conv3"](features["conv3"]).shape == (2, 10)


@pytest.mark.parametrize("model", ["resnet50", "eccv16"])
def test_other_networks_probe_about_9000_dims_per_layer(model):
    assert probe_module(model, resolve_layers("all", model)).feature_dims == EXPECTED_DIMS[model]


def test_alexnet_fc_layers_are_probed_when_named():
    module = probe_module("alexnet", resolve_layers("fc7,conv5,fc6", "alexnet"), width=WIDTH)
    assert list(module.feature_dims) == ["conv5", "fc6", "fc7"]
    assert module.feature_dims["fc6"] == 512 * 2 * 2  # fc channels 4096 * 0.125, pooled 2x2


def test_layer_spec_resolution_and_errors():
    assert resolve_layers("all", "alexnet") == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert resolve_layers("conv5, conv2", "alexnet") == ["conv2", "conv5"]
    assert len(resolve_layers("all", "eccv16")) == 8
    with pytest.raises(ValueError, match=r"layer.*conv9.*'all'"):
        resolve_layers("conv2,conv9", "alexnet")
    with pytest.raises(ValueError, match="no linear-probe layer table"):
        resolve_layers("all", "vgg")


def test_top_k_is_five_or_every_class_and_one_class_is_refused():
    assert (top_k_for(1000), top_k_for(4), top_k_for(2)) == (5, 4, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_module("alexnet", ["conv1"], num_classes=1, width=WIDTH)


def test_sgd_follows_the_paper_protocol_scaled_by_batch():
    module = probe_module("alexnet", ["conv1", "conv2"], width=WIDTH)
    configured = module.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.01 * BATCH / 256)
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    # Only the heads train: 2 heads x (weight, bias); BatchNorm without affine has no parameters.
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 4
    lrs = []
    for _ in range(26):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    base = 0.01 * BATCH / 256
    assert lrs[7] == pytest.approx(base) and lrs[8] == pytest.approx(base * 0.1)
    assert lrs[16] == pytest.approx(base * 0.01) and lrs[25] == pytest.approx(base * 0.001)


class ModeRecorder(L.Callback):
    """Whether the trunk / the heads were in training mode at every training step."""

    def __init__(self) -> None:
        self.trunk, self.heads = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.trunk.append(any(module.training for module in pl_module.backbone.modules()))
        self.heads.append(all(module.training for module in pl_module.heads.modules()))


def fit_probe(layers: list[str], callbacks=()) -> tuple[LinearProbeModule, dict[str, float]]:
    """2 epochs x 2 steps on synthetic 4-class data, a fresh seeded trunk, the same data order every time."""
    network, _ = load_network("random", "alexnet", {"width": WIDTH}, seed=0)
    datamodule = build_datamodule(
        DataConfig(
            source="synthetic",
            crop_size=32,
            synthetic_size=48,
            synthetic_train_images=2 * BATCH,
            synthetic_val_images=BATCH,
            batch_size=BATCH,
            num_workers=0,
        )
    )
    datamodule.setup("fit")
    module = LinearProbeModule(
        Trunk(network, layers), datamodule.num_classes, ProbeOptimConfig(lr=2.0), BATCH, seed=0
    )
    trainer = bare_trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=list(callbacks))
    # Older Lightning releases (and user code) call train() on the whole module before fitting: the trunk
    # must stay frozen regardless.
    module.train()
    trainer.fit(module, datamodule=datamodule)
    return module, trainer.validate(module, datamodule=datamodule, verbose=False)[0]


def test_training_moves_the_heads_and_never_the_trunk():
    network, _ = load_network("random", "alexnet", {"width": WIDTH}, seed=0)
    untouched = {key: value.clone() for key, value in network.state_dict().items()}
    initial_heads = probe_module("alexnet", ["conv2", "conv5"], num_classes=4, width=WIDTH).heads.state_dict()
    recorder = ModeRecorder()
    module, metrics = fit_probe(["conv2", "conv5"], callbacks=[recorder])

    trunk_after = module.backbone.network.state_dict()
    # The cut keeps the stages up to the deepest probed layer (conv5); fc6, fc7 and the logits are dropped.
    assert {key.split(".")[0] for key in trunk_after} == {"conv1", "conv2", "conv3", "conv4", "conv5"}
    assert all(torch.equal(trunk_after[key], untouched[key]) for key in trunk_after), (
        "trunk weights or BN stats moved"
    )
    assert any("running_mean" in key for key in untouched)
    heads_after = module.heads.state_dict()
    assert not torch.equal(heads_after["conv2.classifier.weight"], initial_heads["conv2.classifier.weight"])
    assert not torch.equal(heads_after["conv5.norm.running_mean"], initial_heads["conv5.norm.running_mean"])
    assert recorder.trunk == [False] * 4 and recorder.heads == [True] * 4  # 2 epochs x 2 steps
    # 4 synthetic classes: "top-5" is top-4, which every prediction satisfies.
    assert metrics["probe/conv2/top5"] == 100.0 and 0 <= metrics["probe/conv2/top1"] <= 100


def test_layer_all_trains_each_head_as_a_separate_run_would():
    together, together_metrics = fit_probe(resolve_layers("all", "alexnet"))
    for layer in ("conv1", "conv5"):
        alone, alone_metrics = fit_probe([layer])
        for key, value in alone.heads[layer].state_dict().items():
            torch.testing.assert_close(together.heads[layer].state_dict()[key], value, rtol=1e-5, atol=1e-6)
        assert together_metrics[f"probe/{layer}/top1"] == pytest.approx(alone_metrics[f"probe/{layer}/top1"])
    initial = probe_module("alexnet", ["conv1"], num_classes=4, width=WIDTH).heads["conv1"].classifier.weight
    assert not torch.allclose(together.heads["conv1"].classifier.weight, initial, atol=1e-4)  # it did train
