"""Kraehenbuehl et al.'s data-dependent initialisation on real photos (scikit-image / scikit-learn samples).

Every network is initialised once per module (fixtures) on eight 64 x 64 crops of four photos; the held-out
batch is eight other, non-overlapping crops of the same photos. The tests run single-threaded: on a shared
2-core machine the small eigenproblems are many times faster that way; the asserted statistics do not depend
on it.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from lit_colorization.color import uint8_to_lab
from lit_colorization.data.embedded import load_embedded_photos
from lit_colorization.models import ColorizationNet, create_model
from lit_colorization.models.data_init import (
    InitReport,
    between_layer_rescale_,
    data_dependent_init_,
    kmeans_centres,
)

PHOTOS = ("astronaut", "chelsea", "coffee", "motorcycle")
INIT_CORNERS = ((0.3, 0.3), (0.7, 0.7))
HELD_OUT_CORNERS = ((0.3, 0.7), (0.7, 0.3))
CROP = 64
CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)
# The within-layer statistics are set in closed form on the init batch: only float32 rounding remains (1e-6).
EXACT = 1e-4
# The between-layer step stops once every ratio is within 1% of their geometric mean.
RATIO_TOLERANCE = 0.01


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lightness_crops(corners: tuple[tuple[float, float], ...]) -> Tensor:
    photos = {photo.name: photo.image for photo in load_embedded_photos()}
    crops = []
    for name in PHOTOS:
        image = photos[name]
        for top, left in corners:
            row, column = int((image.shape[0] - CROP) * top), int((image.shape[1] - CROP) * left)
            crops.append(torch.from_numpy(image[row : row + CROP, column : column + CROP].copy()))
    return uint8_to_lab(torch.stack(crops).permute(0, 3, 1, 2))[:, :1]


@pytest.fixture(scope="module")
def batch() -> Tensor:
    return lightness_crops(INIT_CORNERS)


@pytest.fixture(scope="module")
def held_out() -> Tensor:
    return lightness_crops(HELD_OUT_CORNERS)


class ReleaseLikeNet(ColorizationNet):
    """The release AlexNet's building blocks in miniature: convs with biases, group 2, BatchNorm without affine."""

    feature_layers = ("conv1", "conv2")
    output_stride = 4

    def __init__(self, num_bins: int = 16) -> None:
        super().__init__({"num_bins": num_bins})
        self.conv1 = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.BatchNorm2d(16, affine=False), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.Conv2d(16, 24, 3, padding=1, groups=2),
            nn.BatchNorm2d(24, affine=False),
            nn.ReLU(inplace=True),
        )
        self.logits = nn.Conv2d(24, num_bins, 1)


class NoConvNet(ColorizationNet):
    feature_layers = ("pool",)
    output_stride = 2

    def __init__(self) -> None:
        super().__init__({"num_bins": 1})
        self.pool = nn.AvgPool2d(2)
        self.logits = nn.Identity()


def initialised(
    network: ColorizationNet, batch: Tensor, method: str, **kwargs
) -> tuple[nn.Module, InitReport]:
    report = data_dependent_init_(network, batch, method, **kwargs)
    return network, report


@pytest.fixture(scope="module")
def alexnet_within(batch):
    """AlexNet (width 0.25) after the within-layer step only, per filter method."""
    return {
        method: initialised(create_model("alexnet", width=0.25), batch, method, between_layer=False)
        for method in ("kmeans", "pca", "gaussian")
    }


@pytest.fixture(scope="module")
def alexnet_rescaled(alexnet_within, batch):
    network = copy.deepcopy(alexnet_within["kmeans"][0])
    return network, between_layer_rescale_(network, batch)


@pytest.fixture(scope="module")
def eccv16_batch(batch) -> Tensor:
    return batch[::2]  # one crop per photo: 23 convs at stride 1 .. 4 cost more than AlexNet's 8


@pytest.fixture(scope="module")
def eccv16_full(eccv16_batch):
    """The VGG-style network (width 0.125, a transposed conv in conv8) through all three steps."""
    return initialised(create_model("eccv16", width=0.125), eccv16_batch, "kmeans")


def conv_outputs(network: nn.Module, lightness: Tensor) -> dict[str, Tensor]:
    """Every conv's pre-activation output in eval mode, by qualified name."""
    names = {module: name for name, module in network.named_modules()}
    outputs: dict[str, Tensor] = {}

    def keep(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        outputs.setdefault(names[module], output.detach().clone())

    handles = [
        module.register_forward_hook(keep) for module in network.modules() if isinstance(module, CONV_TYPES)
    ]
    network.eval()
    with torch.no_grad():
        network(lightness)
    for handle in handles:
        handle.remove()
    return outputs


def channel_variance(output: Tensor) -> Tensor:
    return output.double().var(dim=(0, 2, 3), correction=0)


def expected_ratio_spread(network: nn.Module, lightness: Tensor, directions: int = 6) -> float:
    """Largest over smallest ``sqrt(E ||grad W||^2) / ||W||`` over the convs, with fresh random directions."""
    network.eval()
    convs = [
        module
        for module in network.modules()
        if isinstance(module, CONV_TYPES) and module.weight.requires_grad
    ]
    logits = network(lightness)
    generator = torch.Generator().manual_seed(1234)
    squared = torch.zeros(len(convs), dtype=torch.float64)
    for _ in range(directions):
        epsilon = torch.randn(logits.shape, generator=generator)
        grads = torch.autograd.grad(
            (logits * epsilon).sum(), [conv.weight for conv in convs], retain_graph=True
        )
        squared += torch.stack([grad.double().pow(2).sum() for grad in grads])
    ratios = squared.sqrt() / torch.stack([conv.weight.detach().double().norm() for conv in convs])
    return (ratios.max() / ratios.min()).item()


def assert_within_layer_statistics(
    network: nn.Module, report: InitReport, batch: Tensor, beta: float
) -> None:
    outputs = conv_outputs(network, batch)
    modules = dict(network.named_modules())
    assert [layer.name for layer in report.layers] == list(outputs)
    for layer in report.layers:
        output = outputs[layer.name].double()
        mean, std = output.mean(dim=(0, 2, 3)), channel_variance(output).sqrt()
        assert torch.allclose(std, torch.ones_like(std), atol=EXACT), layer.name
        if modules[layer.name].bias is not None:
            assert torch.allclose(mean, torch.full_like(mean, beta), atol=EXACT), layer.name
        assert torch.allclose(layer.channel_mean.double(), mean, atol=EXACT)
        assert torch.allclose(layer.channel_std.double(), std, atol=EXACT)


# --- within-layer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kmeans", "pca", "gaussian"])
def test_within_layer_gives_every_alexnet_conv_unit_variance_and_mean_beta_on_the_batch(
    alexnet_within, batch, method
):
    network, report = alexnet_within[method]
    assert report.method == method and report.iterations == 0
    assert report.ratio_spread_before is None and {layer.scale for layer in report.layers} == {1.0}
    assert_within_layer_statistics(network, report, batch, beta=0.0)


def test_vgg_report_keeps_within_layer_statistics_and_outputs_scale_by_the_steps(eccv16_full, eccv16_batch):
    network, report = eccv16_full
    names = [layer.name for layer in report.layers]
    assert "conv8.0" in names and names[-1] == "logits"  # the transposed conv is initialised too
    assert {layer.filters for layer in report.layers} == {"kmeans"}
    for layer in report.layers:
        assert torch.allclose(layer.channel_mean, torch.zeros_like(layer.channel_mean), atol=EXACT), (
            layer.name
        )
        assert torch.allclose(layer.channel_std, torch.ones_like(layer.channel_std), atol=EXACT), layer.name
    # After the between-layer step each conv's output is its within-layer output times the product of the
    # steps so far, so its per-channel std is that product for every channel.
    outputs, cumulative = conv_outputs(network, eccv16_batch), 1.0
    for layer in report.layers:
        cumulative *= layer.scale
        std = channel_variance(outputs[layer.name]).sqrt()
        assert torch.allclose(std, torch.full_like(std, cumulative), rtol=1e-3), layer.name


def test_grouped_convs_with_biases_and_batchnorm_without_affine_get_the_target_mean(batch):
    network, report = initialised(ReleaseLikeNet(), batch, "pca", beta=0.5, between_layer=False)
    assert_within_layer_statistics(network, report, batch, beta=0.5)
    # PCA decorrelates each group's outputs on the batch: the group-2 conv's correlation is block diagonal.
    output = conv_outputs(network, batch)["conv2.1"]
    correlation = torch.corrcoef(output.transpose(0, 1).flatten(1).double())
    for group in range(2):
        block = correlation[group * 12 : (group + 1) * 12, group * 12 : (group + 1) * 12]
        assert (block - torch.eye(12, dtype=block.dtype)).abs().max() < 1e-4
    # BatchNorms are left at the identity in eval mode.
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.running_mean, torch.zeros_like(module.running_mean))
            assert torch.equal(module.running_var, torch.ones_like(module.running_var))


def test_pca_filters_decorrelate_the_first_layer_and_data_filters_are_smooth(alexnet_within, batch):
    pca_network, report = alexnet_within["pca"]
    first = report.layers[0].name
    output = conv_outputs(pca_network, batch)[first]  # 2048 positions, fewer than max_patches: PCA saw all
    correlation = torch.corrcoef(output.transpose(0, 1).flatten(1).double())
    assert (correlation - torch.eye(len(correlation), dtype=correlation.dtype)).abs().max() < 1e-4

    def roughness(network: nn.Module) -> float:
        """Median over filters of neighbouring-tap squared differences over twice the energy (i.i.d.: ~1.8)."""
        weight = network.get_submodule(first).weight.detach()[:, 0]
        across = (weight[:, :, 1:] - weight[:, :, :-1]).pow(2).sum(dim=(1, 2))
        down = (weight[:, 1:] - weight[:, :-1]).pow(2).sum(dim=(1, 2))
        return ((across + down) / (2 * weight.pow(2).sum(dim=(1, 2)))).median().item()

    gaussian = roughness(alexnet_within["gaussian"][0])
    assert gaussian > 1.5  # measured 1.84
    for method in ("kmeans", "pca"):  # measured 0.80 and 0.54: photos are smooth at 11 x 11
        assert roughness(alexnet_within[method][0]) < 0.5 * gaussian, method
    kmeans_filters = alexnet_within["kmeans"][0].get_submodule(first).weight
    assert not torch.allclose(kmeans_filters, pca_network.get_submodule(first).weight, atol=1e-3)


def test_held_out_crops_keep_near_unit_variance(alexnet_within, held_out):
    # Gaussian filters fit only a mean and a std per channel: every layer stays near 1 (measured 1.05 .. 1.32).
    network, report = alexnet_within["gaussian"]
    outputs = conv_outputs(network, held_out)
    for layer in report.layers:
        assert 0.75 < channel_variance(outputs[layer.name]).mean() < 1.5, layer.name
    # Data-fitted filters generalise where the batch had many patches per filter input: the first layer
    # (2048 patches of 121 taps; measured 1.36 for k-means and 1.40 for PCA). Deeper ones fit 512 patches
    # of 600 .. 9,216 inputs and respond less (module docstring).
    for method in ("kmeans", "pca"):
        network, report = alexnet_within[method]
        variance = channel_variance(conv_outputs(network, held_out)[report.layers[0].name]).mean()
        assert 0.67 < variance < 2.0, method


# --- between-layer ------------------------------------------------------------------------------------------


def assert_ratios_equalised(report: InitReport) -> None:
    ratios = torch.tensor([layer.ratio_after for layer in report.layers], dtype=torch.float64)
    deviation = ratios.log() - ratios.log().mean()
    assert report.converged
    assert deviation.abs().max() <= math.log1p(RATIO_TOLERANCE)
    assert report.ratio_spread_after <= (1 + RATIO_TOLERANCE) ** 2


def test_between_layer_equalises_gradient_to_weight_ratios_without_changing_the_logits(
    alexnet_within, alexnet_rescaled, batch
):
    within, _ = alexnet_within["kmeans"]
    network, report = alexnet_rescaled
    assert report.ratio_spread_before > 50  # measured 378
    assert_ratios_equalised(report)
    assert math.prod(layer.scale for layer in report.layers) == pytest.approx(1.0, rel=1e-9)
    # Measured afresh with 6 other directions, estimating the expectation the method's 4 fixed ones estimate.
    assert expected_ratio_spread(network, batch) < 1.5  # measured 1.07
    with torch.no_grad():
        assert torch.allclose(network.eval()(batch), within.eval()(batch), rtol=1e-4, atol=1e-4)


def test_data_dependent_init_runs_the_between_layer_step_on_the_vgg_network(eccv16_full, eccv16_batch):
    network, report = eccv16_full
    assert report.ratio_spread_before > 100  # measured 6767
    assert_ratios_equalised(report)
    assert report.iterations >= 1
    # Looser: 23 layers, and both the method's 4 directions and these 6 are noisy estimates.
    assert expected_ratio_spread(network, eccv16_batch) < 3.0  # measured 1.83


def test_between_layer_rescale_keeps_a_pretrained_network_and_its_batchnorm_variances(batch):
    torch.manual_seed(0)
    network = ReleaseLikeNet()
    # Stand-in for pretraining: layers at very different scales, BatchNorm statistics of the batch.
    with torch.no_grad():
        network.conv1[0].weight.mul_(10.0)
        network.logits.weight.mul_(0.1)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None
    network.train()
    with torch.no_grad():
        network(batch)
    network.conv2[1].weight.requires_grad_(False)
    variances = [
        module.running_var.clone() for module in network.modules() if isinstance(module, nn.BatchNorm2d)
    ]
    network.eval()
    with torch.no_grad():
        before = network(batch)
    network.train()
    report = between_layer_rescale_(network, batch)
    assert report.ratio_spread_before > 100 and report.method is None  # measured 3452
    assert_ratios_equalised(report)
    assert network.training and all(module.training for module in network.modules())
    assert not network.conv2[1].weight.requires_grad
    assert all(parameter.grad is None for parameter in network.parameters())
    after_variances = [
        module.running_var for module in network.modules() if isinstance(module, nn.BatchNorm2d)
    ]
    assert all(torch.equal(old, new) for old, new in zip(variances, after_variances, strict=True))
    with torch.no_grad():
        assert torch.allclose(network.eval()(batch), before, rtol=1e-4, atol=1e-5)


# --- reproducibility and errors -----------------------------------------------------------------------------


def test_a_fixed_seed_reproduces_the_initialisation_whatever_the_starting_weights(batch):
    states = []
    for torch_seed, seed in ((1, 7), (2, 7), (1, 8)):
        torch.manual_seed(torch_seed)
        network = ReleaseLikeNet()
        data_dependent_init_(network, batch, "kmeans", seed=seed)
        states.append(network.state_dict())
    same, other = states[1], states[2]
    assert all(torch.equal(states[0][key], same[key]) for key in states[0])
    assert not torch.equal(states[0]["conv1.0.weight"], other["conv1.0.weight"])


@pytest.mark.parametrize(
    "lightness",
    [torch.zeros(2, 3, 64, 64), torch.zeros(1, 64, 64), torch.zeros(2, 1, 64, 64, dtype=torch.long), "L"],
    ids=["rgb", "3d", "integer", "string"],
)
def test_input_of_the_wrong_shape_is_a_one_line_value_error(lightness):
    with pytest.raises(ValueError, match=r"shape \(B, 1, H, W\)") as error:
        data_dependent_init_(ReleaseLikeNet(), lightness)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"shape \(B, 1, H, W\)"):
        between_layer_rescale_(ReleaseLikeNet(), lightness)


def test_a_network_without_convolutions_is_a_one_line_value_error(batch):
    for initialise in (data_dependent_init_, between_layer_rescale_):
        with pytest.raises(ValueError, match="no convolution") as error:
            initialise(NoConvNet(), batch)
        assert "\n" not in str(error.value)


def test_an_unknown_method_is_a_value_error(batch):
    with pytest.raises(ValueError, match="method must be one of"):
        data_dependent_init_(ReleaseLikeNet(), batch, "zca")


def test_kmeans_finds_the_clusters_of_unit_length_patches_as_magic_init_did() -> None:
    """The release's k-means (mini-batch, batches of ten times the clusters) recovers well-separated directions."""
    generator = torch.Generator().manual_seed(0)
    directions = torch.eye(8, dtype=torch.float64)[:4]
    members = directions.repeat_interleave(300, dim=0)
    points = members + 0.05 * torch.randn(members.shape, generator=generator, dtype=torch.float64)
    points = points / points.norm(dim=1, keepdim=True)

    centres = kmeans_centres(points, 4, torch.Generator().manual_seed(1))

    assert centres.shape == (4, 8) and centres.dtype == torch.float64
    distances = torch.cdist(directions, centres)
    assert sorted(distances.argmin(dim=1).tolist()) == [0, 1, 2, 3]  # one centre per cluster
    for cluster in range(4):
        mean = points[cluster * 300 : (cluster + 1) * 300].mean(dim=0)
        assert torch.cdist(mean[None], centres).min() < 0.02  # at its members' mean
    again = kmeans_centres(points, 4, torch.Generator().manual_seed(1))
    assert torch.equal(centres, again)  # seeded from the generator
