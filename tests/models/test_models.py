"""lit_colorization.models: registry, the three networks' shapes, feature extraction and official-weight conversion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_colorization.color import ab_bins
from lit_colorization.models import ColorizationNet, create_model, list_models, register_model
from lit_colorization.models.alexnet import to_probe_geometry
from lit_colorization.models.base import scaled_channels
from lit_colorization.models.eccv16 import convert_official_eccv16_state_dict
from tests.release_eccv16 import ReleaseEccv16

# docs/reference.md section 1, transcribed column by column: a -> (b_min, b_max).
REFERENCE_B_RANGE = {
    -90: (50, 90), -80: (20, 90), -70: (0, 90), -60: (-20, 90), -50: (-30, 100), -40: (-40, 100),
    -30: (-50, 100), -20: (-50, 100), -10: (-60, 100), 0: (-70, 100), 10: (-80, 90), 20: (-80, 90),
    30: (-90, 90), 40: (-100, 90), 50: (-100, 80), 60: (-110, 80), 70: (-110, 80), 80: (-110, 70),
    90: (-110, 70), 100: (-90, 0),
}  # fmt: skip

EXPECTED_FEATURE_SHAPES = {
    # (model, kwargs, input size) -> {layer: (C, H, W)}
    ("eccv16", (), 176): {
        "conv1": (64, 88, 88), "conv2": (128, 44, 44), "conv3": (256, 22, 22), "conv4": (512, 22, 22),
        "conv5": (512, 22, 22), "conv6": (512, 22, 22), "conv7": (512, 22, 22), "conv8": (256, 44, 44),
    },
    # alexnet: the release's training geometry at its 180 crop and at 227, its probe geometry at 227.
    ("alexnet", (), 180): {
        "conv1": (96, 45, 45), "conv2": (256, 23, 23), "conv3": (384, 12, 12), "conv4": (384, 12, 12),
        "conv5": (256, 12, 12), "fc6": (4096, 12, 12), "fc7": (4096, 12, 12),
    },
    ("alexnet", (), 227): {
        "conv1": (96, 57, 57), "conv2": (256, 29, 29), "conv3": (384, 15, 15), "conv4": (384, 15, 15),
        "conv5": (256, 15, 15), "fc6": (4096, 15, 15), "fc7": (4096, 15, 15),
    },
    ("alexnet", (("geometry", "probe"),), 227): {
        "conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13), "conv4": (384, 13, 13),
        "conv5": (256, 13, 13), "fc6": (4096, 1, 1), "fc7": (4096, 1, 1),
    },
    ("resnet50", (), 176): {
        "conv1": (64, 88, 88), "res2": (256, 44, 44), "res3": (512, 22, 22), "res4": (1024, 11, 11),
        "res5": (2048, 11, 11),
    },
    ("resnet50", (("output_stride", 8),), 176): {
        "conv1": (64, 88, 88), "res2": (256, 44, 44), "res3": (512, 22, 22), "res4": (1024, 22, 22),
        "res5": (2048, 22, 22),
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def models() -> dict[str, ColorizationNet]:
    torch.manual_seed(0)
    return {name: create_model(name).eval() for name in ("eccv16", "alexnet", "resnet50")}


def random_lightness(size: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(size)) * 100.0


def test_registry_lists_the_three_networks():
    assert list_models() == ["alexnet", "eccv16", "resnet50"]


def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"^unknown model 'vgg'; known: alexnet, eccv16, resnet50$"):
        create_model("vgg")


def test_unknown_kwarg_is_rejected_with_accepted_names():
    with pytest.raises(
        ValueError,
        match=r"'alexnet' got unknown argument\(s\) \['depth'\]; "
        r"it accepts \['num_bins', 'width', 'geometry'\]",
    ):
        create_model("alexnet", depth=3)


def test_registering_a_taken_name_fails():
    with pytest.raises(ValueError, match="'eccv16' is already registered"):
        register_model("eccv16")(type("Other", (ColorizationNet,), {}))


def test_base_class_cannot_be_instantiated():
    with pytest.raises(TypeError, match="abstract"):
        ColorizationNet({})


def test_eccv16_parameter_count_matches_paper(models):
    model = models["eccv16"]
    assert sum(p.numel() for p in model.parameters()) == 32_236_011
    # Only the decode layer (313 x 2 bin centres) is frozen.
    assert sum(p.numel() for p in model.parameters() if not p.requires_grad) == 313 * 2


def test_eccv16_decode_weights_are_reference_bins(models):
    expected = torch.tensor(
        [(a, b) for a, (b_min, b_max) in REFERENCE_B_RANGE.items() for b in range(b_min, b_max + 1, 10)],
        dtype=torch.float32,
    )
    assert expected.shape == (313, 2)
    weight = models["eccv16"].decode.weight
    assert weight.shape == (2, 313, 1, 1)
    torch.testing.assert_close(weight[:, :, 0, 0].t(), expected, rtol=0, atol=0)


def test_eccv16_regression_head_has_no_bin_decoder():
    model = create_model("eccv16", num_bins=2).eval()
    assert model.decode is None
    assert sum(p.numel() for p in model.parameters()) == 32_236_011 - 313 * 2 - 257 * 313 + 257 * 2
    with torch.no_grad():
        assert model(random_lightness(32)).shape == (1, 2, 8, 8)


@pytest.mark.parametrize("size", [176, 224])
@pytest.mark.parametrize("name", ["eccv16", "alexnet", "resnet50"])
def test_logits_shape_is_input_over_output_stride(models, name, size):
    model = models[name]
    with torch.no_grad():
        logits = model(random_lightness(size))
    stride = {"eccv16": 4, "alexnet": 8, "resnet50": 16}[name]
    assert model.output_stride == stride
    assert model.num_bins == 313
    assert logits.shape == (1, 313, size // stride, size // stride)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("name", "kwargs", "size"), list(EXPECTED_FEATURE_SHAPES))
def test_feature_shapes(models, name, kwargs, size):
    model = models[name] if not kwargs else create_model(name, **dict(kwargs)).eval()
    expected = EXPECTED_FEATURE_SHAPES[(name, kwargs, size)]
    assert model.feature_layers == tuple(expected)
    with torch.no_grad():
        features = model.features(random_lightness(size), model.feature_layers)
    assert {layer: tuple(value.shape[1:]) for layer, value in features.items()} == expected


def test_features_stop_at_deepest_requested_layer(models):
    model = models["eccv16"]
    ran: list[str] = []
    handles = [
        stage.register_forward_hook(lambda *_, name=name: ran.append(name))
        for name, stage in model.layer_modules().items()
    ]
    try:
        with torch.no_grad():
            features = model.features(random_lightness(32), ["conv3", "conv1"])
    finally:
        for handle in handles:
            handle.remove()
    assert ran == ["conv1", "conv2", "conv3"]
    assert set(features) == {"conv1", "conv3"}


def test_features_agree_with_forward(models):
    model = models["eccv16"]
    lightness = random_lightness(32, batch=2)
    with torch.no_grad():
        deepest = model.features(lightness, ["conv8"])["conv8"]
        torch.testing.assert_close(model.logits(deepest), model(lightness))


def test_unknown_feature_layer_lists_valid_ones(models):
    with pytest.raises(ValueError, match=r"no feature layer\(s\) \['res2'\]; valid: \['conv1', 'conv2'"):
        models["alexnet"].features(random_lightness(32), ["conv1", "res2"])


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 32, 32)])
def test_input_must_be_single_channel_batch(models, shape):
    with pytest.raises(ValueError, match=r"expected lightness L of shape \(B, 1, H, W\)"):
        models["eccv16"](torch.zeros(shape))


def test_layer_modules_are_the_trunk_in_order(models):
    model = models["resnet50"]
    assert list(model.layer_modules()) == ["conv1", "res2", "res3", "res4", "res5"]
    assert model.layer_modules()["res5"] is model.res5


def test_alexnet_convs_use_kaiming_init(models):
    # He init (fan_out, ReLU gain): std = sqrt(2 / (out_channels * k * k)).
    conv3 = models["alexnet"].conv3[1]
    assert isinstance(conv3, nn.Conv2d)
    expected_std = math.sqrt(2.0 / (384 * 3 * 3))
    assert conv3.weight.std().item() == pytest.approx(expected_std, rel=0.02)


def conv_params(in_channels: int, channels: int, kernel: int, bias: bool = True) -> int:
    return in_channels * channels * kernel * kernel + (channels if bias else 0)


def eccv16_parameter_count(c1: int, c2: int, c3: int, c4: int, c8: int, num_bins: int = 313) -> int:
    """Closed form from docs/reference.md section 4's layer list (BatchNorm: 2 parameters per channel)."""
    return (
        conv_params(1, c1, 3) + conv_params(c1, c1, 3) + 2 * c1
        + conv_params(c1, c2, 3) + conv_params(c2, c2, 3) + 2 * c2
        + conv_params(c2, c3, 3) + 2 * conv_params(c3, c3, 3) + 2 * c3
        + conv_params(c3, c4, 3) + 2 * conv_params(c4, c4, 3) + 2 * c4
        + 3 * (3 * conv_params(c4, c4, 3) + 2 * c4)
        + conv_params(c4, c8, 4) + 2 * conv_params(c8, c8, 3)
        + conv_params(c8, num_bins, 1)
        + num_bins * 2
    )  # fmt: skip


def alexnet_parameter_count(c1: int, c2: int, c3: int, fc: int, num_bins: int = 313) -> int:
    """Closed form: convs with biases, conv2, conv4 and conv5 in two groups; BatchNorm has no parameters."""
    return (
        conv_params(1, c1, 11)
        + conv_params(c1 // 2, c2, 5)
        + conv_params(c2, c3, 3)
        + conv_params(c3 // 2, c3, 3)
        + conv_params(c3 // 2, c2, 3)
        + conv_params(c2, fc, 6)
        + conv_params(fc, fc, 1)
        + conv_params(fc, num_bins, 1)
    )  # fmt: skip


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_closed_forms_reproduce_the_full_width_networks(models):
    assert eccv16_parameter_count(64, 128, 256, 512, 256) == 32_236_011
    assert parameter_count(models["alexnet"]) == alexnet_parameter_count(96, 256, 384, 4096) == 58_127_353
    assert models["eccv16"].hparams_for_checkpoint() == {"num_bins": 313, "width": 1.0}


def test_channel_scaling_rounds_half_up_with_a_floor_of_eight():
    # 25/128 is exact in binary: 64 -> 12.5 and 96 -> 18.75 both round up; at 0.01, 64 -> 0.64 is lifted to 8.
    assert [scaled_channels(c, 25 / 128) for c in (64, 96, 128, 4096)] == [13, 19, 25, 800]
    assert [scaled_channels(c, 0.01) for c in (64, 512, 4096)] == [8, 8, 41]
    assert [scaled_channels(c, 1.0) for c in (64, 96, 384, 4096)] == [64, 96, 384, 4096]


def test_eccv16_width_quarter_parameter_count():
    model = create_model("eccv16", width=0.25)
    expected = eccv16_parameter_count(16, 32, 64, 128, 64)
    assert parameter_count(model) == expected == 2_033_211
    assert model.decode.weight.shape == (2, 313, 1, 1)


def test_alexnet_width_eighth_scales_fc_layers_too():
    model = create_model("alexnet", width=0.125)
    assert parameter_count(model) == alexnet_parameter_count(12, 32, 48, 512)
    assert model.fc7[0].weight.shape == (512, 512, 1, 1)


def test_alexnet_layers_are_the_release_prototxt(models):
    model = models["alexnet"]
    convs = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    layout = [
        (conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0], conv.groups)
        for conv in convs
    ]
    # (kernel, stride, pad, dilation, group) of conv1..conv5, fc6, fc7, fc8
    assert layout == [
        (11, 4, 5, 1, 1), (5, 1, 2, 1, 2), (3, 1, 1, 1, 1), (3, 1, 1, 1, 2), (3, 1, 1, 1, 2), (6, 1, 5, 2, 1),
        (1, 1, 0, 1, 1), (1, 1, 0, 1, 1),
    ]  # fmt: skip
    assert all(conv.bias is not None for conv in convs)
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    # Caffe's BatchNorm without a Scale layer, with its default eps.
    assert (
        len(norms) == 7 and not any(norm.affine for norm in norms) and {norm.eps for norm in norms} == {1e-5}
    )
    pools = [module for module in model.modules() if isinstance(module, nn.MaxPool2d)]
    assert [(pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode) for pool in pools] == [
        (3, 2, 1, True), (3, 2, 1, True), (3, 1, 1, True),
    ]  # fmt: skip


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe's PoolingLayer::Reshape: round up, then drop a last window that would start in the padding."""
    pooled = math.ceil((size + 2 * pad - kernel) / stride) + 1
    if pad and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled


# AlexNet's three poolings in both geometries, and two where the rule about the last window applies.
@pytest.mark.parametrize(("kernel", "stride", "pad"), [(3, 2, 1), (3, 1, 1), (3, 2, 0), (2, 2, 1), (3, 3, 1)])
def test_ceil_mode_max_pooling_has_caffes_output_sizes(kernel, stride, pad):
    pool = nn.MaxPool2d(kernel, stride=stride, padding=pad, ceil_mode=True)
    sizes = range(max(1, kernel - 2 * pad), 64)
    assert [pool(torch.zeros(1, 1, size, size)).shape[-1] for size in sizes] == [
        caffe_pooled_size(size, kernel, stride, pad) for size in sizes
    ]


def test_alexnet_grouped_channels_stay_even_at_any_width():
    model = create_model("alexnet", width=25 / 128).eval()  # 96 -> 18.75 rounds to 19, then up to 20
    assert [model.conv1[0].out_channels, model.conv2[1].out_channels, model.conv3[1].out_channels] == [
        20,
        50,
        76,
    ]
    with torch.no_grad():
        assert model(random_lightness(32)).shape == (1, 313, 4, 4)


def test_alexnet_logits_are_fc8_resized_corner_to_corner_onto_the_target_grid():
    torch.manual_seed(0)
    model = create_model("alexnet", width=0.125).eval()
    lightness = random_lightness(180)
    with torch.no_grad():
        fc8 = model.logits(model.features(lightness, ["fc7"])["fc7"])
        logits = model(lightness)
    assert fc8.shape[-2:] == (12, 12)
    assert logits.shape[-2:] == lightness[..., ::8, ::8].shape[-2:] == (23, 23)
    # Target k sits on pixel 8 k, fc8 sample j on pixel 16 j: even targets are fc8 samples, odd ones the mean
    # of their two neighbours.
    torch.testing.assert_close(logits[..., ::2, ::2], fc8)
    torch.testing.assert_close(logits[..., 1::2, ::2], (fc8[..., :-1, :] + fc8[..., 1:, :]) / 2)


# Input sizes whose logits sit on every output_stride-th pixel, and sizes target_grid refuses.
ON_GRID = {"alexnet": (176, 180, 184, 227), "eccv16": (176, 184), "resnet50": (176, 192)}
OFF_GRID = {"alexnet": (), "eccv16": (180, 227), "resnet50": (180, 184)}


@pytest.mark.parametrize("name", ["alexnet", "eccv16", "resnet50"])
def test_target_grid_is_the_logits_size_and_every_output_stride_th_pixel(models, name):
    model = models[name] if name == "resnet50" else create_model(name, width=0.125).eval()
    stride = model.output_stride
    for size in ON_GRID[name]:
        lightness = random_lightness(size)
        with torch.no_grad():
            logits = model(lightness)
        assert (
            logits.shape[-2:]
            == model.target_grid(size, size)
            == lightness[..., ::stride, ::stride].shape[-2:]
        )
    assert model.input_multiple == {"alexnet": 1, "eccv16": 8, "resnet50": 16}[name]
    for size in OFF_GRID[name]:
        with pytest.raises(
            ValueError, match=rf"^{name}: input size {size} x {size} must be a positive multiple"
        ):
            model.target_grid(size, size)


def test_eccv16_logits_miss_the_grid_for_sizes_not_divisible_by_8():
    model = create_model("eccv16", width=0.125).eval()
    with torch.no_grad():
        assert model(random_lightness(180)).shape[-2:] == (46, 46)  # 45 targets: hence target_grid's refusal


@pytest.fixture(scope="module")
def trained_like_alexnet() -> ColorizationNet:
    """A narrow alexnet in eval mode whose BatchNorm statistics and conv biases are far from their start."""
    torch.manual_seed(4)
    model = create_model("alexnet", width=0.125).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.2, 3.0)
            elif isinstance(module, nn.Conv2d):
                module.bias.uniform_(-0.2, 0.2)
    return model


def test_folded_convs_equal_conv_then_batchnorm_at_the_training_padding(trained_like_alexnet):
    original = trained_like_alexnet
    probe = to_probe_geometry(original)
    # The folded convs in the training geometry, behind BatchNorms that are the identity (var + eps = 1).
    refolded = create_model("alexnet", width=0.125).eval()
    state = refolded.state_dict()
    state.update(probe.state_dict())
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.zero_()
        elif key.endswith("running_var"):
            value.fill_(1.0 - 1e-5)
    refolded.load_state_dict(state, strict=True)
    lightness = random_lightness(64, batch=2)
    with torch.no_grad():
        expected = original.features(lightness, original.feature_layers)
        folded = refolded.features(lightness, refolded.feature_layers)
        # The input is L - 50, so activations reach the hundreds: float32 error is relative to their size.
        for layer in original.feature_layers:
            size = max(1.0, float(expected[layer].abs().max()))
            torch.testing.assert_close(folded[layer], expected[layer], rtol=1e-5, atol=1e-6 * size)
        logits = original(lightness)
        size = max(1.0, float(logits.abs().max()))
        torch.testing.assert_close(refolded(lightness), logits, rtol=1e-5, atol=1e-6 * size)


def test_probe_geometry_is_a_separate_batchnorm_free_alexnet(trained_like_alexnet):
    original = trained_like_alexnet
    probe = to_probe_geometry(original)
    assert probe.model_name == "alexnet" and probe.hparams_for_checkpoint()["geometry"] == "probe"
    assert not any(isinstance(module, nn.BatchNorm2d) for module in probe.modules())
    assert not list(probe.buffers()) and parameter_count(probe) == parameter_count(original)
    assert not probe.training and all(parameter.requires_grad for parameter in probe.parameters())
    theirs = {parameter.data_ptr() for parameter in original.parameters()}
    assert not any(parameter.data_ptr() in theirs for parameter in probe.parameters())
    torch.testing.assert_close(probe.logits.weight, original.logits.weight, rtol=0, atol=0)
    rebuilt = create_model(probe.model_name, **probe.hparams_for_checkpoint()).eval()
    rebuilt.load_state_dict(probe.state_dict(), strict=True)
    lightness = random_lightness(227)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(lightness), probe(lightness), rtol=0, atol=0)
        assert probe(lightness).shape == (1, 313, 1, 1)


def test_full_width_probe_geometry_at_180_has_no_fc6(models):
    probe = to_probe_geometry(models["alexnet"])
    assert parameter_count(probe) == 58_127_353
    with torch.no_grad():
        features = probe.features(random_lightness(180), ["conv1", "conv2", "conv3", "conv4", "conv5"])
        assert {layer: tuple(value.shape[1:]) for layer, value in features.items()} == {
            "conv1": (96, 43, 43), "conv2": (256, 21, 21), "conv3": (384, 10, 10), "conv4": (384, 10, 10),
            "conv5": (256, 10, 10),
        }  # fmt: skip
        with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
            probe.features(
                random_lightness(180), ["fc6"]
            )  # pool5 is 5 x 5, fc6 6 x 6: at least 199 is needed


def test_probe_geometry_is_no_colorizer():
    probe = create_model("alexnet", width=0.125, geometry="probe")
    assert probe.output_stride == 32
    with pytest.raises(ValueError, match="probe geometry is a feature extractor"):
        probe.target_grid(227, 227)
    with pytest.raises(ValueError, match="expects an alexnet in the 'train' geometry"):
        to_probe_geometry(probe)
    with pytest.raises(ValueError, match=r"geometry must be one of \('train', 'probe'\), got 'standard'"):
        create_model("alexnet", geometry="standard")


NARROW_FEATURE_SHAPES = {
    # (model, width) -> {layer: (C, H, W)} for a 64 x 64 input
    ("eccv16", 0.25): {
        "conv1": (16, 32, 32), "conv2": (32, 16, 16), "conv3": (64, 8, 8), "conv4": (128, 8, 8),
        "conv5": (128, 8, 8), "conv6": (128, 8, 8), "conv7": (128, 8, 8), "conv8": (64, 16, 16),
    },
    ("alexnet", 0.125): {
        "conv1": (12, 16, 16), "conv2": (32, 9, 9), "conv3": (48, 5, 5), "conv4": (48, 5, 5),
        "conv5": (32, 5, 5), "fc6": (512, 5, 5), "fc7": (512, 5, 5),
    },
}  # fmt: skip


@pytest.mark.parametrize(("name", "width"), list(NARROW_FEATURE_SHAPES))
def test_narrow_networks_scale_features_but_keep_logits_and_stride(name, width):
    torch.manual_seed(0)
    model = create_model(name, width=width).eval()
    with torch.no_grad():
        features = model.features(random_lightness(64, batch=2), model.feature_layers)
        logits = model(random_lightness(64, batch=2))
    assert {layer: tuple(value.shape[1:]) for layer, value in features.items()} == NARROW_FEATURE_SHAPES[
        (name, width)
    ]
    stride = {"eccv16": 4, "alexnet": 8}[name]
    assert model.output_stride == stride
    assert logits.shape == (2, 313, 64 // stride, 64 // stride)


def test_widest_allowed_network_builds():
    with torch.device("meta"):
        model = create_model("eccv16", width=4)
    assert model.conv7[0].weight.shape == (2048, 2048, 3, 3)
    assert model.hparams_for_checkpoint()["width"] == 4.0


@pytest.mark.parametrize("width", [0, -0.5, 4.5, float("nan"), "0.5", True, None])
@pytest.mark.parametrize("name", ["eccv16", "alexnet"])
def test_bad_width_is_rejected(name, width):
    with pytest.raises(ValueError, match=rf"^{name}: width must be a number in \(0, 4\], got "):
        create_model(name, width=width)


@pytest.mark.parametrize("name", ["eccv16", "alexnet"])
def test_narrow_network_rebuilds_from_checkpoint_hparams(name):
    torch.manual_seed(3)
    original = create_model(name, width=0.125).eval()
    hparams = original.hparams_for_checkpoint()
    assert hparams == {
        "num_bins": 313,
        "width": 0.125,
        **({"geometry": "train"} if name == "alexnet" else {}),
    }
    rebuilt = create_model(original.model_name, **hparams).eval()
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    lightness = random_lightness(32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(lightness), original(lightness), rtol=0, atol=0)


def test_checkpoint_hparams_rebuild_an_identical_network():
    torch.manual_seed(1)
    original = create_model("resnet50", num_bins=10, output_stride=8).eval()
    hparams = original.hparams_for_checkpoint()
    assert hparams == {"num_bins": 10, "output_stride": 8, "dilated_res5": True}
    rebuilt = create_model(original.model_name, **hparams).eval()
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    lightness = random_lightness(32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(lightness), original(lightness), rtol=0, atol=0)
    assert rebuilt(lightness).shape == (1, 10, 4, 4)


def test_resnet_rejects_unsupported_output_stride():
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16\), got 32"):
        create_model("resnet50", output_stride=32)


@pytest.fixture(scope="module")
def official() -> ReleaseEccv16:
    torch.manual_seed(2)
    model = ReleaseEccv16().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                # Non-trivial statistics and affine terms, so a misplaced BN tensor would change the logits.
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def official_state_dict(official) -> dict[str, torch.Tensor]:
    # Older releases carry no BatchNorm batch counters.
    return {k: v for k, v in official.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_official_layout_has_the_paper_parameter_count(official):
    assert sum(p.numel() for p in official.parameters()) == 32_236_011


def test_official_state_dict_conversion_reproduces_its_outputs(official, official_state_dict):
    ours = create_model("eccv16").eval()
    ours.load_state_dict(convert_official_eccv16_state_dict(official_state_dict), strict=True)

    lightness = random_lightness(48, batch=2)
    with torch.no_grad():
        expected_logits, expected_ab = official.logits(lightness), official(lightness)
        logits = ours(lightness)
        # ``decode`` holds the release's model_out times 110: the release's ab, upsampled as the release does.
        ab = F.interpolate(ours.decode(torch.softmax(logits, dim=1)), scale_factor=4, mode="bilinear")
    assert logits.shape == (2, 313, 12, 12)
    torch.testing.assert_close(ours.decode.weight[:, :, 0, 0].t(), ab_bins(), rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(logits, expected_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ab, expected_ab, rtol=1e-5, atol=1e-4)


def test_conversion_names_missing_and_unexpected_keys(official_state_dict):
    broken = dict(official_state_dict)
    del broken["model3.6.running_var"]
    broken["model9.0.weight"] = torch.zeros(1)
    with pytest.raises(
        ValueError, match=r"missing keys: \['model3.6.running_var'\]; unexpected keys: \['model9.0.weight'\]"
    ):
        convert_official_eccv16_state_dict(broken)


def test_conversion_names_shape_mismatches(official_state_dict):
    broken = dict(official_state_dict)
    broken["model8.6.weight"] = torch.zeros(256, 256, 1, 1)
    with pytest.raises(
        ValueError,
        match=r"shape mismatches: \['model8.6.weight: got \(256, 256, 1, 1\), expected \(313, 256, 1, 1\)'\]",
    ):
        convert_official_eccv16_state_dict(broken)


def test_resnet50_res5_undilated_as_goyal_et_al_keeps_the_grid_and_changes_res5_alone():
    torch.manual_seed(0)
    timm_res5 = create_model("resnet50").eval()
    for norm in timm_res5.res5.modules():
        if isinstance(norm, nn.BatchNorm2d):
            nn.init.ones_(norm.weight)  # timm zeroes each block's last one, which would hide its 3x3 conv
    theirs = create_model("resnet50", dilated_res5=False).eval()
    theirs.load_state_dict(timm_res5.state_dict())  # the same weights, only the geometry differs
    dilations = {
        name: conv.dilation for name, conv in theirs.res5.named_modules() if isinstance(conv, nn.Conv2d)
    }
    assert set(dilations.values()) == {(1, 1)}
    assert {conv.dilation for conv in timm_res5.res5.modules() if isinstance(conv, nn.Conv2d)} == {
        (1, 1),
        (2, 2),
    }
    lightness = torch.rand(1, 1, 96, 96) * 100
    with torch.no_grad():
        ours, goyal = (net.features(lightness, ["res4", "res5"]) for net in (timm_res5, theirs))
    torch.testing.assert_close(ours["res4"], goyal["res4"])
    assert ours["res5"].shape == goyal["res5"].shape == (1, 2048, 6, 6)
    assert not torch.allclose(ours["res5"], goyal["res5"])
    assert theirs.hparams_for_checkpoint()["dilated_res5"] is False
    assert (
        timm_res5.hparams_for_checkpoint()["dilated_res5"] is True
    )  # the default: what old checkpoints hold
    with pytest.raises(ValueError, match="dilated_res5=false needs output_stride 16, got 8"):
        create_model("resnet50", output_stride=8, dilated_res5=False)
