"""Kraehenbuehl et al.'s data-dependent initialisation (ICLR 2016) for a ColorizationNet.

The colorization release trained its AlexNet from such an initialisation. The facts (statistics, update rule,
defaults) are those of the authors' public code (``philkr/magic_init``) and the paper's outline in docs/reference.md
section 4. Every convolution (``nn.Conv2d``, ``nn.ConvTranspose2d``, any groups, with or without bias) of the
trunk stages and the logits head goes through the steps, in the order a forward pass calls them:

1. **Filters** from the layer's actual input on a batch of real images (the earlier layers already
   initialised): ``gaussian`` (i.i.d. N(0, 1)), ``pca`` (the principal directions of the input patches,
   whitened: ``v_i / sqrt(lambda_i)``, largest variance first) or ``kmeans`` (k-means centres of the whitened
   patches, each patch scaled to unit length first as magic_init does, mapped back to the input space).
   A grouped conv takes each group's patches from that group's input channels. Where a layer has more
   filters than its patches have directions, ``pca`` fills the rest with random mixtures of the whitened
   directions; where the batch has fewer patches than filters, ``kmeans`` falls back to ``gaussian`` (as
   magic_init does), and the report says so.
2. **Within-layer**: each output channel's filter is divided by the standard deviation of its response on the
   batch and its bias set to ``beta - mean / std``, so every channel's pre-activation output on the batch has
   mean ``beta`` and unit variance. ``beta`` defaults to 0, the default of magic_init's library function
   (its command line uses 0.1). With 0, a following training-mode BatchNorm, which subtracts the batch mean,
   is on the init batch the identity the initialisation assumed. A conv without a bias can only be scaled:
   its output gets unit variance and keeps the mean its filters give.
3. **Between-layer**: every layer's ratio ``||dloss/dW|| / ||W||`` is made equal to their geometric mean, the
   gradient coming from a random linear loss ``<epsilon, logits>`` with Gaussian epsilon (magic_init's choice:
   no labels needed), its squared norm averaged over a few directions drawn once. A step multiplies layer k's
   weights by ``sqrt(ratio_k / target)`` and its bias also by the change of scale of its input (measured, as in
   magic_init, by the mean absolute input), so each layer computes the same function of its input up to its
   own scale. Through ReLUs, pooling and fixed affine BatchNorms, layer k's output is then scaled by the
   product of the steps up to k and its ratio by ``product of all steps / step_k**2``: one step equalises the
   ratios, and the geometric-mean target makes the product 1, so the logits do not change, only hidden
   activations' scales do. Float rounding flips the sign of a few pre-activations near zero, which moves
   these gradients by up to about 0.5%, hence the iteration: at most 10 steps, stopping once every ratio is within
   1% of the target (magic_init's numbers). Residual networks are not chains; their additions mix scales and
   the step is then only approximate (magic_init has the same limitation).

**The release's run** (docs/reference.md section 11.1) is ``layers`` conv1..conv5, ``kmeans``, ``beta`` 0.1,
``between_layer=False``, ``max_patches=None`` (magic_init's 500 MB budget) and ``batch_statistics=True``: magic_init
ran the net in Caffe's TRAIN phase, where each BatchNorm normalises by its batch (over 10 batches of 80; here one
batch of the 800 crops). Its k-means is the release's: scikit-learn's ``MiniBatchKMeans`` with batches of ten times
the clusters on the unit-length whitened patches (``magic_init_mod.py:101-103``), its other settings scikit-learn's
defaults of the release's time (``n_init`` 3, pinned here because scikit-learn 1.4 changed the default to 1).

**BatchNorm.** magic_init does not support BatchNorm layers: the method is defined on the BN-free network,
and the release likewise folds BatchNorm into the convs before it rescales pretrained weights. So everything
runs with the network in eval mode, where a BatchNorm is a fixed affine map:

- ``data_dependent_init_`` first resets every BatchNorm to the identity (running mean 0, running variance 1,
  affine weight 1 and bias 0 where present; ``1/sqrt(1 + eps)`` is the only deviation), so the init sees the
  BN-free network, and leaves them there. In eval mode the network then computes exactly the initialised
  function. In training mode a BatchNorm normalises with batch statistics instead; one right after a conv
  starts with inputs of mean ``beta`` and variance 1 on the init batch, so with ``beta`` 0 it changes nothing.
- The between-layer step scales a BatchNorm's running mean and affine bias with the scale of its input (its
  running variance stays): what scaling the conv it would be folded into does.

A BatchNorm without running statistics has no eval-mode affine form and is refused. Training-mode flags,
``requires_grad`` flags and ``.grad`` fields are left as they were.

The statistics are exact on the init batch. On other images of the same kind, Gaussian filters keep nearly
unit variance, while data-fitted filters of layers with fewer patches than filter inputs overfit the batch and
respond less (measured on AlexNet at width 0.25 with eight 64 x 64 crops: 1.4 at conv1 falling to 0.3 at
fc6), so a real initialisation wants thousands of patches per layer (``max_patches``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lit_colorization.models.base import ColorizationNet

METHODS = ("kmeans", "pca", "gaussian")
CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)
BATCHNORM_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)
# magic_init_mod.py:103: MiniBatchKMeans(n_clusters=n_out, batch_size=10 * n_out); n_init was 3 by default then.
KMEANS_BATCH_PER_CLUSTER = 10
KMEANS_RUNS = 3
# Principal directions whose variance is below this fraction of the largest carry no data, only rounding.
EIGENVALUE_FLOOR = 1e-6
# magic_init's data buffer: --mem-limit 500 (MB) of float32 (magic_init_mod.py lines 452 and 499).
MAGIC_INIT_FLOATS = 500 * 1024 * 1024 // 4


@dataclass(frozen=True)
class LayerReport:
    """What the initialisation did to one convolution.

    Attributes:
        name: the module's qualified name in the network (e.g. ``conv2.1``, ``logits``).
        filters: the filter source actually used (``kmeans`` falls back to ``gaussian`` when the batch has
            fewer patches than the layer has filters per group); None when filters were kept (rescale only).
        channel_mean, channel_std: per-channel mean and standard deviation of the pre-activation output on the
            batch, measured after the within-layer step; None when there was no within-layer step.
        ratio_before, ratio_after: ``||dloss/dW|| / ||W||`` for the random linear loss, before and after the
            between-layer step; None when it was not run (measuring them costs backward passes).
        scale: the factor the between-layer step multiplied the weights by (1 when it was not run).
    """

    name: str
    filters: str | None
    channel_mean: Tensor | None
    channel_std: Tensor | None
    ratio_before: float | None
    ratio_after: float | None
    scale: float


@dataclass(frozen=True)
class InitReport:
    """Per-layer statistics of an initialisation.

    Attributes:
        layers: one report per convolution, in forward order.
        method, beta: the filter method and target mean; None for ``between_layer_rescale_``.
        iterations: between-layer steps taken (0 when the step was not run).
        converged: every ratio ended within the tolerance of their geometric mean (False when not run).
    """

    layers: tuple[LayerReport, ...]
    method: str | None
    beta: float | None
    iterations: int
    converged: bool

    def layer(self, name: str) -> LayerReport:
        for report in self.layers:
            if report.name == name:
                return report
        raise KeyError(f"no convolution named {name!r}; layers: {[report.name for report in self.layers]}")

    @property
    def ratio_spread_before(self) -> float | None:
        """Largest over smallest gradient/weight ratio before the between-layer step (None if not run)."""
        return _spread([report.ratio_before for report in self.layers])

    @property
    def ratio_spread_after(self) -> float | None:
        return _spread([report.ratio_after for report in self.layers])


def data_dependent_init_(
    network: ColorizationNet,
    lightness: Tensor,
    method: str = "kmeans",
    *,
    beta: float = 0.0,
    between_layer: bool = True,
    seed: int = 0,
    max_patches: int | None = 8192,
    max_iterations: int = 10,
    tolerance: float = 0.01,
    directions: int = 4,
    layers: Sequence[str] | None = None,
    batch_statistics: bool = False,
) -> InitReport:
    """Initialise the convolutions of ``network`` from the batch ``lightness`` (B x 1 x H x W, raw L), in place.

    Args:
        method: ``kmeans``, ``pca`` or ``gaussian`` filters (module docstring).
        beta: the per-channel mean of every conv's output on the batch after the within-layer step.
        between_layer: run the between-layer step after the within-layer one.
        seed: seeds every random draw, so the result depends only on the architecture, the batch and the seed
            (the chosen convs' weights and biases are overwritten and BatchNorms reset).
        max_patches: at most this many input patches (output positions) per layer feed the PCA / k-means;
            None: magic_init's budget, ``MAGIC_INIT_FLOATS / (out_channels * ceil(fan_in / out_channels))``.
        max_iterations, tolerance: between-layer steps at most, and the relative deviation from the target
            ratio at which it stops.
        directions: random loss directions whose squared gradient norms are averaged (fixed for all steps).
        layers: the feature layers (or ``logits``) whose convolutions are initialised; None: every one. The
            others keep their weights, and the between-layer step then scales only the chosen ones.
        batch_statistics: BatchNorms normalise with the statistics of the batch, as Caffe's do in the TRAIN
            phase the release initialised in, instead of acting as the identity; their running statistics are
            reset afterwards. Only for the within-layer step (the between-layer one needs a fixed network).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_between_layer_settings(max_iterations, tolerance, directions)
    if max_patches is not None and max_patches < 1:
        raise ValueError(f"max_patches must be at least 1 or None, got {max_patches}")
    if batch_statistics and between_layer:
        raise ValueError("batch_statistics is for the within-layer step alone; pass between_layer=False")
    lightness = _checked_lightness(network, lightness)
    generator = torch.Generator().manual_seed(seed)
    with _init_mode(network, batch_statistics):
        # The call order does not depend on the batch: two images find it without a full forward of all.
        convs = _chosen(network, _convs_in_forward_order(network, lightness[:2]), layers)
        _reset_batchnorms(network)
        within = [
            _within_layer_init_(network, lightness, name, conv, method, beta, generator, max_patches)
            for name, conv in convs
        ]
        if batch_statistics:
            _reset_batchnorms(network)
        if not between_layer:
            reports = tuple(
                LayerReport(name, filters, mean, std, None, None, 1.0)
                for (name, _), (filters, mean, std) in zip(convs, within, strict=True)
            )
            return InitReport(reports, method, beta, 0, False)
        between = _between_layer(network, lightness, convs, generator, directions, max_iterations, tolerance)
    reports = tuple(
        LayerReport(name, filters, mean, std, before, after, scale)
        for (name, _), (filters, mean, std), (before, after, scale) in zip(
            convs, within, between.per_layer, strict=True
        )
    )
    return InitReport(reports, method, beta, between.iterations, between.converged)


def between_layer_rescale_(
    network: ColorizationNet,
    lightness: Tensor,
    *,
    seed: int = 0,
    max_iterations: int = 10,
    tolerance: float = 0.01,
    directions: int = 4,
) -> InitReport:
    """Only the between-layer step, for pretrained weights before fine-tuning (the paper's VOC dagger rows).

    The eval-mode logits are unchanged in a chain network; filters, BatchNorm variances and the mean/std of
    each layer relative to its scale are kept.
    """
    _check_between_layer_settings(max_iterations, tolerance, directions)
    lightness = _checked_lightness(network, lightness)
    generator = torch.Generator().manual_seed(seed)
    with _init_mode(network):
        convs = _convs_in_forward_order(network, lightness)
        between = _between_layer(network, lightness, convs, generator, directions, max_iterations, tolerance)
    layers = tuple(
        LayerReport(name, None, None, None, before, after, scale)
        for (name, _), (before, after, scale) in zip(convs, between.per_layer, strict=True)
    )
    return InitReport(layers, None, None, between.iterations, between.converged)


# --- network plumbing -------------------------------------------------------------------------------------


def _checked_lightness(network: ColorizationNet, lightness: Tensor) -> Tensor:
    if not isinstance(network, ColorizationNet):
        raise TypeError(f"network must be a ColorizationNet, got {type(network).__name__}")
    if (
        not isinstance(lightness, Tensor)
        or lightness.ndim != 4
        or lightness.shape[1] != 1
        or not lightness.is_floating_point()
        or lightness.numel() == 0
    ):
        what = (
            f"{lightness.dtype} tensor of shape {tuple(lightness.shape)}"
            if isinstance(lightness, Tensor)
            else type(lightness).__name__
        )
        raise ValueError(f"lightness must be a non-empty float tensor of shape (B, 1, H, W), got {what}")
    parameter = next(network.parameters(), None)
    return lightness if parameter is None else lightness.to(parameter.device, parameter.dtype)


def _check_between_layer_settings(max_iterations: int, tolerance: float, directions: int) -> None:
    if max_iterations < 0 or directions < 1 or not tolerance > 0:
        raise ValueError(
            "need max_iterations >= 0, directions >= 1 and tolerance > 0, got "
            f"{max_iterations}, {directions} and {tolerance}"
        )


@contextmanager
def _init_mode(network: nn.Module, batch_statistics: bool = False) -> Iterator[None]:
    """Eval mode (BatchNorm as a fixed affine map; with ``batch_statistics`` BatchNorms alone in training mode,
    normalising by the batch's statistics); training and requires_grad flags restored afterwards."""
    training = {module: module.training for module in network.modules()}
    requires_grad = {parameter: parameter.requires_grad for parameter in network.parameters()}
    network.eval()
    if batch_statistics:
        for module in network.modules():
            if isinstance(module, BATCHNORM_TYPES):
                module.train()
    try:
        yield
    finally:
        for module, flag in training.items():
            module.training = flag
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)


def _searched_modules(network: ColorizationNet) -> list[nn.Module]:
    stages = [*network.layer_modules().values(), network.logits]
    return [module for stage in stages for module in stage.modules()]


def _convs_in_forward_order(network: ColorizationNet, lightness: Tensor) -> list[tuple[str, nn.Module]]:
    """The convolutions of the trunk stages and logits head, in the order a forward pass calls them."""
    names = {module: name for name, module in network.named_modules()}
    convs = [module for module in _searched_modules(network) if isinstance(module, CONV_TYPES)]
    for module in _searched_modules(network):
        if isinstance(module, BATCHNORM_TYPES) and not module.track_running_stats:
            raise ValueError(
                f"BatchNorm {names[module]!r} keeps no running statistics, so it has no fixed eval-mode form"
            )
    order: list[nn.Module] = []

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        if module not in order:
            order.append(module)

    handles = [conv.register_forward_pre_hook(record) for conv in convs]
    try:
        with torch.no_grad():
            network(lightness)
    finally:
        for handle in handles:
            handle.remove()
    if not order:
        raise ValueError(
            f"{type(network).__name__} has no convolution (nn.Conv2d / nn.ConvTranspose2d) in its trunk "
            "stages or logits head that a forward pass uses"
        )
    return [(names[conv], conv) for conv in order]


def _chosen(
    network: ColorizationNet, convs: list[tuple[str, nn.Module]], layers: Sequence[str] | None
) -> list[tuple[str, nn.Module]]:
    """The convs of the named feature layers (``logits`` for the head), in forward order; all for None."""
    if layers is None:
        return convs
    known = (*network.feature_layers, "logits")
    unknown = [layer for layer in layers if layer not in known]
    if unknown or not layers:
        raise ValueError(f"layers must name some of {list(known)}, got {list(layers)}")
    return [(name, conv) for name, conv in convs if name.split(".")[0] in layers]


def _reset_batchnorms(network: ColorizationNet) -> None:
    for module in _searched_modules(network):
        if isinstance(module, BATCHNORM_TYPES):
            module.reset_parameters()


class _Captured(Exception):
    """Raised by a hook to stop a forward pass once it has the input it wanted."""


def _input_of(network: ColorizationNet, lightness: Tensor, module: nn.Module) -> Tensor:
    captured: list[Tensor] = []

    def capture(_: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured.append(args[0].detach())
        raise _Captured

    handle = module.register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            network(lightness)
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured[0]


# --- filters as a matrix: one row per output channel, over the inputs that channel sees ----------------------


def _filter_matrix(conv: nn.Module) -> Tensor:
    weight = conv.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):
        # ConvTranspose2d stores (in, out / groups, kh, kw): regroup so each output channel's taps form a row.
        in_channels, out_per_group, *kernel = weight.shape
        grouped = weight.reshape(conv.groups, in_channels // conv.groups, out_per_group, *kernel)
        return grouped.transpose(1, 2).reshape(conv.out_channels, -1)
    return weight.reshape(conv.out_channels, -1)


def _set_filter_matrix_(conv: nn.Module, filters: Tensor) -> None:
    if isinstance(conv, nn.ConvTranspose2d):
        in_channels, out_per_group, *kernel = conv.weight.shape
        grouped = filters.reshape(conv.groups, out_per_group, in_channels // conv.groups, *kernel)
        filters = grouped.transpose(1, 2)
    with torch.no_grad():
        conv.weight.copy_(filters.reshape(conv.weight.shape))


def _patch_budget(conv: nn.Module, max_patches: int | None) -> int:
    """``max_patches``, or for None magic_init's: its 500 MB float buffer over out_channels x oversampling."""
    if max_patches is not None:
        return max_patches
    fan_in = _filter_matrix(conv).shape[1]
    oversampling = math.ceil(fan_in / conv.out_channels)
    return MAGIC_INIT_FLOATS // (conv.out_channels * oversampling)


def _input_patches(conv: nn.Module, x: Tensor, max_patches: int, generator: torch.Generator) -> Tensor:
    """(groups, N, fan_in): the input each output channel's filter is dotted with, at N output positions.

    Probing the layer with one-hot filters reads the patches through the layer itself, so padding, stride,
    dilation, groups and transposition need no re-implementation: filter j of a group set to the unit vector
    of tap t makes output channel j equal to the input at tap t of every patch.
    """
    groups, out_per_group = conv.groups, conv.out_channels // conv.groups
    fan_in = _filter_matrix(conv).shape[1]
    rows: Tensor | None = None
    patches: Tensor | None = None
    for start in range(0, fan_in, out_per_group):
        count = min(out_per_group, fan_in - start)
        probe = torch.zeros(groups, out_per_group, fan_in, dtype=x.dtype, device=x.device)
        taps = torch.arange(count, device=x.device)
        probe[:, taps, start + taps] = 1.0
        _set_filter_matrix_(conv, probe.reshape(conv.out_channels, fan_in))
        with torch.no_grad():
            response = conv(x).transpose(0, 1).reshape(conv.out_channels, -1)
        if rows is None:
            positions = response.shape[1]
            rows = torch.randperm(positions, generator=generator)[:max_patches].sort().values.to(x.device)
            patches = torch.empty(groups, len(rows), fan_in, dtype=x.dtype, device=x.device)
        picked = response[:, rows].reshape(groups, out_per_group, -1)[:, :count]
        patches[:, :, start : start + count] = picked.transpose(1, 2)
    return patches


def _gaussian(rows: int, columns: int, generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(rows, columns, generator=generator, dtype=torch.float64).to(like.device)


def _data_filters(
    name: str, patches: Tensor, count: int, method: str, generator: torch.Generator
) -> tuple[Tensor, str]:
    """``count`` filters over ``patches`` (N x fan_in) and the method actually used, in float64."""
    samples, fan_in = patches.shape
    if method == "gaussian" or (method == "kmeans" and samples < count):
        return _gaussian(count, fan_in, generator, patches), "gaussian"
    centred = patches.double() - patches.double().mean(dim=0)
    variances, directions = _principal_directions(name, centred)
    # Row i maps a patch to its whitened (unit-variance) coordinate along the i-th principal direction.
    whitening = directions / variances.sqrt()[:, None]
    if method == "pca":
        if count <= len(whitening):
            return whitening[:count], "pca"
        # The patches span fewer directions than there are filters: the rest mix the whitened directions.
        extra = _gaussian(count - len(whitening), len(whitening), generator, whitening) @ whitening
        return torch.cat([whitening, extra]), "pca"
    whitening = whitening[:count]
    whitened = centred @ whitening.T
    # As in magic_init, patches are clustered by direction: each whitened patch is scaled to unit length.
    whitened = whitened / whitened.norm(dim=1, keepdim=True).clamp_min(1e-12)
    centres = kmeans_centres(whitened, count, generator).double()
    return centres @ whitening, "kmeans"


def _principal_directions(name: str, centred: Tensor) -> tuple[Tensor, Tensor]:
    """Variances (descending) and unit directions (rows) of the centred samples' principal components.

    Directions whose variance is below EIGENVALUE_FLOOR of the largest are dropped. The eigenproblem is solved
    on the smaller of the two Gram matrices (fan_in x fan_in or samples x samples).
    """
    samples, fan_in = centred.shape
    if samples >= fan_in:
        energies, vectors = torch.linalg.eigh(centred.T @ centred)
        energies, directions = energies.flip(0), vectors.flip(1).T
    else:
        energies, vectors = torch.linalg.eigh(centred @ centred.T)
        energies, vectors = energies.flip(0), vectors.flip(1)
    if not energies[0] > 0:
        raise ValueError(f"{name}: every input patch is the same on this batch; use more varied images")
    kept = energies > energies[0] * EIGENVALUE_FLOOR
    if samples < fan_in:
        # A unit eigenvector u of the samples' Gram matrix with energy e gives the direction centred.T u / sqrt(e).
        directions = (centred.T @ vectors[:, kept] / energies[kept].sqrt()).T
    else:
        directions = directions[kept]
    return energies[kept] / samples, directions


def kmeans_centres(points: Tensor, clusters: int, generator: torch.Generator) -> Tensor:
    """The centres of scikit-learn's mini-batch k-means on ``points`` as magic_init ran it, seeded from
    ``generator``."""
    from sklearn.cluster import MiniBatchKMeans

    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    kmeans = MiniBatchKMeans(
        n_clusters=clusters,
        batch_size=KMEANS_BATCH_PER_CLUSTER * clusters,
        n_init=KMEANS_RUNS,
        random_state=seed,
    )
    centres = kmeans.fit(points.detach().cpu().double().numpy()).cluster_centers_
    return torch.from_numpy(centres).to(points.device)


# --- the three steps ---------------------------------------------------------------------------------------


def _within_layer_init_(
    network: ColorizationNet,
    lightness: Tensor,
    name: str,
    conv: nn.Module,
    method: str,
    beta: float,
    generator: torch.Generator,
    max_patches: int | None,
) -> tuple[str, Tensor, Tensor]:
    """Filters from the layer's input on the batch, then per-channel unit variance and mean ``beta``."""
    x = _input_of(network, lightness, conv)
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.zero_()
    out_per_group = conv.out_channels // conv.groups
    if method == "gaussian":
        fan_in = _filter_matrix(conv).shape[1]
        filters, used = _gaussian(conv.out_channels, fan_in, generator, x), "gaussian"
    else:
        per_group = [
            _data_filters(name, patches, out_per_group, method, generator)
            for patches in _input_patches(conv, x, _patch_budget(conv, max_patches), generator)
        ]
        # Every group has the same number of patches and filters, so all groups use the same source.
        filters, used = torch.cat([group_filters for group_filters, _ in per_group]), per_group[0][1]
    _set_filter_matrix_(conv, filters.to(conv.weight.dtype))
    mean, std = _channel_statistics(conv, x)
    if not bool((std > 0).all() and std.isfinite().all()):
        dead = (~(std > 0)).nonzero().flatten().tolist()
        raise ValueError(
            f"{name}: output channel(s) {dead} are constant on this batch; use more varied images"
        )
    _set_filter_matrix_(conv, _filter_matrix(conv) / std[:, None])
    if conv.bias is not None:
        with torch.no_grad():
            conv.bias.copy_(beta - mean / std)
    return (used, *_channel_statistics(conv, x))


def _channel_statistics(conv: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        variance, mean = torch.var_mean(conv(x).double(), dim=(0, 2, 3), correction=0)
    return mean.to(x.dtype), variance.sqrt().to(x.dtype)


@dataclass(frozen=True)
class _BetweenLayer:
    per_layer: list[tuple[float, float, float]]  # ratio before, ratio after, weight scale
    iterations: int
    converged: bool


def _between_layer(
    network: ColorizationNet,
    lightness: Tensor,
    convs: Sequence[tuple[str, nn.Module]],
    generator: torch.Generator,
    directions: int,
    max_iterations: int,
    tolerance: float,
) -> _BetweenLayer:
    """Equalise ``||grad W|| / ||W||`` across ``convs`` (module docstring), at most ``max_iterations`` steps."""
    layers = [conv for _, conv in convs]
    tracked = layers + [m for m in _searched_modules(network) if isinstance(m, BATCHNORM_TYPES)]
    with torch.no_grad():
        shape = network(lightness).shape
    # The same directions throughout make the ratios a fixed function of the weights, so the steps converge.
    epsilons = [
        torch.randn(shape, generator=generator).to(lightness.device, lightness.dtype)
        for _ in range(directions)
    ]
    scales = torch.ones(len(layers), dtype=torch.float64)
    first: Tensor | None = None
    iterations, converged = 0, False
    while True:
        ratios, input_scales = _gradient_ratios(network, lightness, layers, tracked, epsilons)
        first = ratios if first is None else first
        deviation = ratios.log() - ratios.log().mean()
        converged = bool(deviation.abs().max() <= math.log1p(tolerance))
        if converged or iterations == max_iterations:
            break
        # sqrt(ratio_k / target): layer k's ratio changes by P / step_k**2 with P the product of all steps,
        # which is 1 for the geometric-mean target.
        step = (deviation / 2).exp()
        _apply_scales(
            network, lightness, dict(zip(layers, step.tolist(), strict=True)), tracked, input_scales
        )
        scales *= step
        iterations += 1
    per_layer = list(zip(first.tolist(), ratios.tolist(), scales.tolist(), strict=True))
    return _BetweenLayer(per_layer, iterations, converged)


def _gradient_ratios(
    network: ColorizationNet,
    lightness: Tensor,
    layers: list[nn.Module],
    tracked: list[nn.Module],
    epsilons: list[Tensor],
) -> tuple[Tensor, dict[nn.Module, Tensor]]:
    """Per layer ``sqrt(mean over directions ||grad W||^2) / ||W||``, and every tracked module's mean |input|."""
    input_scales: dict[nn.Module, Tensor] = {}

    def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        input_scales.setdefault(module, args[0].detach().abs().mean())

    weights = [layer.weight for layer in layers]
    for weight in weights:
        weight.requires_grad_(True)
    handles = [module.register_forward_pre_hook(record) for module in tracked]
    try:
        with torch.enable_grad():
            logits = network(lightness)
            squared = torch.zeros(len(layers), dtype=torch.float64)
            for index, epsilon in enumerate(epsilons):
                # A random linear loss per image: its gradient is epsilon back-propagated from the logits.
                loss = (logits * epsilon).sum() / len(lightness)
                grads = torch.autograd.grad(loss, weights, retain_graph=index + 1 < len(epsilons))
                squared += torch.stack([grad.double().pow(2).sum() for grad in grads]).cpu()
    finally:
        for handle in handles:
            handle.remove()
    norms = torch.stack([weight.detach().double().norm() for weight in weights]).cpu()
    return (squared / len(epsilons)).sqrt() / norms, input_scales


def _apply_scales(
    network: ColorizationNet,
    lightness: Tensor,
    steps: dict[nn.Module, float],
    tracked: list[nn.Module],
    old_input_scales: dict[nn.Module, Tensor],
) -> None:
    """One forward pass that rescales each tracked module just before it runs, so it sees its new input.

    A conv's weights take its step; its bias takes the step times its input's change of scale. A BatchNorm's
    running mean and affine bias take its input's change of scale. Each layer then outputs its old output
    times its input's scale times its step, so the scales multiply along the network.
    """

    def rescale(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        if module not in old_input_scales:
            return
        input_change = args[0].abs().mean() / old_input_scales.pop(module)
        if module in steps:
            module.weight.mul_(steps[module])
            if module.bias is not None:
                module.bias.mul_(input_change * steps[module])
        else:
            module.running_mean.mul_(input_change)
            if module.bias is not None:
                module.bias.mul_(input_change)

    old_input_scales = dict(old_input_scales)
    handles = [module.register_forward_pre_hook(rescale) for module in tracked]
    try:
        with torch.no_grad():
            network(lightness)
    finally:
        for handle in handles:
            handle.remove()


def _spread(ratios: Sequence[float | None]) -> float | None:
    return None if None in ratios else max(ratios) / min(ratios)
