"""transfer.probe.module and protocols: the standard AlexNet's maps and pooled sizes per protocol, each reduction
against an independent computation, the optimiser per protocol, a trunk that never moves, layer=all equal to
separate runs."""

from __future__ import annotations

from dataclasses import replace

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_colorization.data import DataConfig, build_datamodule
from lit_colorization.models import create_model
from tests.helpers import bare_trainer
from transfer.probe.module import LinearProbeModule, resolve_layers, top_k_for
from transfer.probe.protocols import (
    EPOCH,
    GOYAL19,
    PROTOCOLS,
    ZHANG16,
    AveragePool,
    ProbeProtocol,
    ProbeSchedule,
    Resize,
)
from transfer.trunk import Trunk, in_standard_geometry, load_network

WIDTH = 0.125
BATCH = 8
ALEXNET_LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5"]

# docs/reference.md sections 4.3 and 6.1, at 227x227 and width 1: each layer's map, and its pooled grid.
STANDARD_MAPS = {
    "conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
    "conv5": (256, 13, 13),
}  # fmt: skip
POOLED = {"conv1": 10, "conv2": 6, "conv3": 5, "conv4": 5, "conv5": 6}
PAPER_DIMS = {"conv1": 9600, "conv2": 9216, "conv3": 9600, "conv4": 9600, "conv5": 9216}
GOYAL19_KERNELS = {"conv1": (19, 4), "conv2": (12, 3), "conv3": (9, 1), "conv4": (9, 1), "conv5": (8, 1)}
# This project's grids for the layers no protocol defines (channels x side^2).
EXPECTED_LIKE_DIMS = {
    "resnet50": {"conv1": 9216, "res2": 9216, "res3": 8192, "res4": 9216, "res5": 8192},
    "eccv16": {
        "conv1": 9216, "conv2": 8192, "conv3": 9216, "conv4": 8192, "conv5": 8192, "conv6": 8192,
        "conv7": 8192, "conv8": 9216,
    },
}  # fmt: skip


def probe_module(
    network: torch.nn.Module,
    layers: list[str],
    protocol: ProbeProtocol = ZHANG16,
    input_size: int = 227,
    num_classes: int = 10,
    schedule: ProbeSchedule | None = None,
) -> LinearProbeModule:
    return LinearProbeModule(
        Trunk(network, layers),
        num_classes,
        protocol,
        input_size,
        protocol.optimizer_for(network.model_name),
        schedule or protocol.schedule,
        batch_size=BATCH,
    )


def meta_network(model: str, **kwargs) -> torch.nn.Module:
    """The full-width network without storage: shapes only, in the standard geometry."""
    with torch.device("meta"):
        return in_standard_geometry(create_model(model, **kwargs))


def random_network(model: str = "alexnet", **kwargs) -> torch.nn.Module:
    return load_network("random", model, {"width": WIDTH, **kwargs}, seed=0, standard_geometry=True)[0]


@pytest.mark.parametrize("protocol", list(PROTOCOLS.values()), ids=list(PROTOCOLS))
def test_alexnet_at_227_has_the_standard_maps_and_the_papers_pooled_sizes(protocol):
    module = probe_module(meta_network("alexnet"), resolve_layers("all", "alexnet"), protocol)
    assert {layer: head.feature_shape for layer, head in module.heads.items()} == STANDARD_MAPS
    assert module.feature_dims == PAPER_DIMS
    pooled = {layer: head.pooled_shape for layer, head in module.heads.items()}
    assert pooled == {layer: (STANDARD_MAPS[layer][0], side, side) for layer, side in POOLED.items()}
    assert {probe.label for probe in module.layer_probes.values()} == {protocol.name}
    # The heads run on maps of those shapes (batch 2): the classifier sees exactly the counted features.
    generator = torch.Generator().manual_seed(0)
    for layer, head in module.heads.items():
        features = torch.rand(2, *STANDARD_MAPS[layer], generator=generator)
        assert head.pooled(features).flatten(1).shape == (2, PAPER_DIMS[layer])
        assert head.eval()(features).shape == (2, 10)


def bilinear_align_corners(image: np.ndarray, side: int) -> np.ndarray:
    """Resize H x W to side x side by hand: output k samples input k (n - 1) / (side - 1), linear weights."""

    def taps(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.arange(side) * (size - 1) / (side - 1)
        low = np.minimum(np.floor(position).astype(int), size - 2)
        return low, low + 1, position - low

    top, bottom, wy = taps(image.shape[0])
    left, right, wx = taps(image.shape[1])
    rows = image[top] * (1 - wy)[:, None] + image[bottom] * wy[:, None]
    return rows[:, left] * (1 - wx) + rows[:, right] * wx


def test_zhang16_resize_is_bilinear_with_the_end_samples_aligned():
    module = probe_module(random_network(), ALEXNET_LAYERS)
    generator = torch.Generator().manual_seed(1)
    for layer, head in module.heads.items():
        channels, height, width = module.heads[layer].feature_shape
        features = torch.rand(2, channels, height, width, generator=generator)
        expected = np.stack(
            [[bilinear_align_corners(plane, POOLED[layer]) for plane in image] for image in features.numpy()]
        )
        np.testing.assert_allclose(head.pooled(features).numpy(), expected, rtol=1e-5, atol=1e-6)
    # conv1 55 -> 10 and conv3 13 -> 5 fall on whole pixels (every 6th, every 3rd): a plain subsampling.
    conv1 = torch.rand(1, 12, 55, 55, generator=generator)
    torch.testing.assert_close(module.heads["conv1"].pooled(conv1), conv1[..., ::6, ::6])


def test_goyal19_pools_with_the_tables_kernels_and_strides():
    module = probe_module(random_network(), ALEXNET_LAYERS, GOYAL19)
    generator = torch.Generator().manual_seed(2)
    for layer, (kernel, stride) in GOYAL19_KERNELS.items():
        head = module.heads[layer]
        features = torch.rand(2, *head.feature_shape, generator=generator)
        torch.testing.assert_close(head.pooled(features), F.avg_pool2d(features, kernel, stride))
        side = POOLED[layer]
        window = features[:, :, stride : stride + kernel, (side - 1) * stride : (side - 1) * stride + kernel]
        torch.testing.assert_close(head.pooled(features)[:, :, 1, side - 1], window.mean(dim=(-2, -1)))
        assert not head.norm.affine


def test_goyal19_resnet50_pools_the_table_at_224_with_affine_batchnorm():
    module = probe_module(
        meta_network("resnet50"), resolve_layers("all", "resnet50"), GOYAL19, input_size=224
    )
    assert module.feature_dims == EXPECTED_LIKE_DIMS["resnet50"]  # the same sizes the adaptive grid gives
    shapes = {layer: head.feature_shape for layer, head in module.heads.items()}
    assert shapes == {
        "conv1": (64, 112, 112), "res2": (256, 56, 56), "res3": (512, 28, 28), "res4": (1024, 14, 14),
        "res5": (2048, 14, 14),
    }  # fmt: skip
    reductions = {layer: probe.reduction for layer, probe in module.layer_probes.items()}
    assert reductions["conv1"] == AveragePool(10, 10, 4) and reductions["res5"] == AveragePool(12, 2)
    assert all(head.norm.affine for head in module.heads.values())
    assert GOYAL19.optimizer_for("resnet50").weight_decay == 1e-4
    assert GOYAL19.optimizer_for("alexnet").weight_decay == 5e-4
    with pytest.raises(ValueError, match="goyal19.*output_stride=16.*output_stride=8"):
        probe_module(meta_network("resnet50", output_stride=8), ["res5"], GOYAL19, input_size=224)


@pytest.mark.parametrize("model", ["resnet50", "eccv16"])
def test_layers_a_protocol_does_not_define_are_pooled_to_the_project_grid_and_labelled_like(model):
    for protocol in PROTOCOLS.values():
        if model in protocol.networks:
            continue
        module = probe_module(meta_network(model), resolve_layers("all", model), protocol, input_size=224)
        assert module.feature_dims == EXPECTED_LIKE_DIMS[model]
        assert {probe.label for probe in module.layer_probes.values()} == {f"{protocol.name}-like"}


def test_alexnet_fc_layers_are_probed_when_named_as_protocol_like():
    module = probe_module(random_network(), resolve_layers("fc7,conv5,fc6", "alexnet"), GOYAL19)
    assert list(module.feature_dims) == ["conv5", "fc6", "fc7"]
    assert (
        module.feature_dims["fc6"] == 512
    )  # fc channels 4096 * 0.125, 1 x 1 at 227 in the standard geometry
    labels = {layer: probe.label for layer, probe in module.layer_probes.items()}
    assert labels == {"conv5": "goyal19", "fc6": "goyal19-like", "fc7": "goyal19-like"}


def test_a_map_too_small_for_a_fixed_kernel_is_an_error_naming_layer_crop_and_kernel():
    with pytest.raises(ValueError, match=r"alexnet conv3 is 48 x 6 x 6 at data.crop_size=112.*9/1"):
        probe_module(random_network(), ["conv3"], GOYAL19, input_size=112)
    assert probe_module(random_network(), ["conv3"], ZHANG16, input_size=112).feature_dims == {"conv3": 1200}


def test_alexnet_in_the_training_geometry_is_refused_by_the_protocols():
    network, _ = load_network("random", "alexnet", {"width": WIDTH})
    with pytest.raises(ValueError, match="zhang16.*geometry='probe'.*geometry='train'"):
        probe_module(network, ["conv1"])


def test_layer_spec_resolution_and_errors():
    assert resolve_layers("all", "alexnet") == ALEXNET_LAYERS
    assert resolve_layers("conv5, conv2", "alexnet") == ["conv2", "conv5"]
    assert len(resolve_layers("all", "eccv16")) == 8
    with pytest.raises(ValueError, match=r"layer.*conv9.*'all'"):
        resolve_layers("conv2,conv9", "alexnet")
    with pytest.raises(ValueError, match="no linear-probe layer table"):
        resolve_layers("all", "vgg")


def test_top_k_is_five_or_every_class_and_one_class_is_refused():
    assert (top_k_for(1000), top_k_for(4), top_k_for(2)) == (5, 4, 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_module(random_network(), ["conv1"], num_classes=1)


def optimizer_of(protocol: ProbeProtocol, model: str = "resnet50"):
    network = meta_network("resnet50") if model == "resnet50" else random_network()
    layers = ["res2", "res3"] if model == "resnet50" else ["conv1", "conv2"]
    module = probe_module(network, layers, protocol, input_size=224)
    return module, module.configure_optimizers()


def test_zhang16_sgd_is_plain_momentum_with_the_release_bias_multipliers():
    module, configured = optimizer_of(ZHANG16, "alexnet")
    weights, biases = configured["optimizer"].param_groups
    lr = 0.01 * BATCH / 256
    assert (weights["lr"], biases["lr"]) == pytest.approx((lr, 2 * lr))  # lr_mult 2 on biases
    assert (weights["momentum"], weights["nesterov"], weights["weight_decay"]) == (0.9, False, 5e-4)
    assert biases["weight_decay"] == 0.0  # decay_mult 0
    # Only the heads train: 2 heads x (weight, bias); BatchNorm without affine has no parameters.
    assert {id(p) for p in weights["params"]} == {id(h.classifier.weight) for h in module.heads.values()}
    assert {id(p) for p in biases["params"]} == {id(h.classifier.bias) for h in module.heads.values()}
    assert configured["lr_scheduler"]["interval"] == "step"
    assert list(configured["lr_scheduler"]["scheduler"].milestones) == [40_000, 80_000, 120_000]


def test_goyal19_sgd_is_nesterov_without_decay_on_batchnorm_or_biases():
    module, configured = optimizer_of(GOYAL19)
    decayed, biases, norms = configured["optimizer"].param_groups
    assert (decayed["nesterov"], decayed["momentum"], decayed["weight_decay"]) == (True, 0.9, 1e-4)
    assert (biases["weight_decay"], norms["weight_decay"]) == (0.0, 0.0)
    assert biases["lr"] == norms["lr"] == decayed["lr"]  # goyal19 keeps one lr
    assert {id(p) for p in decayed["params"]} == {id(h.classifier.weight) for h in module.heads.values()}
    assert {id(p) for p in biases["params"]} == {id(h.classifier.bias) for h in module.heads.values()}
    norm_ids = {id(p) for head in module.heads.values() for p in head.norm.parameters()}
    assert {id(p) for p in norms["params"]} == norm_ids and len(norm_ids) == 4  # BN weight, BN bias x 2


def test_schedule_in_epochs_steps_the_lr_at_each_epoch_milestone():
    schedule = ZHANG16.schedule.scaled(EPOCH, 28)
    assert schedule.milestones == (8, 16, 24)
    module = probe_module(random_network(), ["conv1"], schedule=schedule)
    configured = module.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert configured["lr_scheduler"]["interval"] == "epoch"
    lrs = []
    for _ in range(26):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    base = 0.01 * BATCH / 256
    assert lrs[7] == pytest.approx(base) and lrs[8] == pytest.approx(base * 0.1)
    assert lrs[16] == pytest.approx(base * 0.01) and lrs[25] == pytest.approx(base * 0.001)


def test_the_protocol_tables_match_the_reference():
    assert {layer: r for layer, r in ZHANG16.networks["alexnet"].reductions.items()} == {
        layer: Resize(side) for layer, side in POOLED.items()
    }
    assert GOYAL19.networks["alexnet"].reductions == {
        layer: AveragePool(kernel, stride) for layer, (kernel, stride) in GOYAL19_KERNELS.items()
    }
    for protocol in PROTOCOLS.values():
        assert protocol.schedule == ProbeSchedule("step", 140_000, (40_000, 80_000, 120_000))
        assert (protocol.optimizer.lr, protocol.optimizer.reference_batch_size) == (0.01, 256)


class ModeRecorder(L.Callback):
    """Whether the trunk / the heads were in training mode at every training step."""

    def __init__(self) -> None:
        self.trunk, self.heads = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.trunk.append(any(module.training for module in pl_module.backbone.modules()))
        self.heads.append(all(module.training for module in pl_module.heads.modules()))


def fit_probe(
    layers: list[str], model: str = "alexnet", callbacks=()
) -> tuple[LinearProbeModule, dict[str, float]]:
    """2 epochs x 2 steps on synthetic 4-class data, a fresh seeded trunk, the same data order every time."""
    datamodule = build_datamodule(
        DataConfig(
            source="synthetic",
            crop_size=64,
            synthetic_size=80,
            synthetic_train_images=2 * BATCH,
            synthetic_val_images=BATCH,
            batch_size=BATCH,
            num_workers=0,
        )
    )
    datamodule.setup("fit")
    module = LinearProbeModule(
        Trunk(random_network(model), layers),
        datamodule.num_classes,
        ZHANG16,
        64,
        replace(ZHANG16.optimizer, lr=2.0),
        ProbeSchedule(EPOCH, 2, (1,)),
        BATCH,
        seed=0,
    )
    trainer = bare_trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=list(callbacks))
    # Older Lightning releases (and user code) call train() on the whole module before fitting: the trunk
    # must stay frozen regardless.
    module.train()
    trainer.fit(module, datamodule=datamodule)
    return module, trainer.validate(module, datamodule=datamodule, verbose=False)[0]


def test_training_moves_the_heads_and_never_the_trunk():
    # eccv16 keeps its BatchNorm layers (the standard AlexNet has them folded): their statistics must not move.
    untouched = {key: value.clone() for key, value in random_network("eccv16").state_dict().items()}
    initial_heads = probe_module(random_network("eccv16"), ["conv2", "conv5"], input_size=64, num_classes=4)
    recorder = ModeRecorder()
    module, metrics = fit_probe(["conv2", "conv5"], "eccv16", callbacks=[recorder])

    trunk_after = module.backbone.network.state_dict()
    # The cut keeps the stages up to the deepest probed layer (conv5); conv6 on and the logits are dropped
    # (eccv16's fixed bin-centre decoder stays: it is no trunk stage and has nothing to train).
    assert {key.split(".")[0] for key in trunk_after} == {
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "conv5",
        "decode",
    }
    assert all(torch.equal(trunk_after[key], untouched[key]) for key in trunk_after), (
        "trunk weights or BN stats moved"
    )
    assert any("running_mean" in key for key in trunk_after)
    heads_before, heads_after = initial_heads.heads.state_dict(), module.heads.state_dict()
    assert not torch.equal(heads_after["conv2.classifier.weight"], heads_before["conv2.classifier.weight"])
    assert not torch.equal(heads_after["conv5.norm.running_mean"], heads_before["conv5.norm.running_mean"])
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
    initial = probe_module(random_network(), ["conv1"], input_size=64, num_classes=4)
    weight = initial.heads["conv1"].classifier.weight
    assert not torch.allclose(together.heads["conv1"].classifier.weight, weight, atol=1e-4)  # it did train


def test_goyal19_labels_a_dilated_res5_like_and_goyal_et_al_s_res5_as_the_protocol():
    """fair_ssb's res5 is undilated; timm's default dilates it, which changes res5 alone."""
    layers = resolve_layers("all", "resnet50")
    dilated = probe_module(meta_network("resnet50"), layers, GOYAL19, input_size=224)
    theirs = probe_module(meta_network("resnet50", dilated_res5=False), layers, GOYAL19, input_size=224)
    assert {layer: probe.label for layer, probe in dilated.layer_probes.items()} == {
        "conv1": "goyal19", "res2": "goyal19", "res3": "goyal19", "res4": "goyal19", "res5": "goyal19-like",
    }  # fmt: skip
    assert {probe.label for probe in theirs.layer_probes.values()} == {"goyal19"}
    assert (
        dilated.layer_probes["res5"].reduction == theirs.layer_probes["res5"].reduction == AveragePool(12, 2)
    )
