"""compute_prior against the colour package's own histogram and smoothing, gray images left out, and against an
independent scikit-image / NumPy histogram on real photos, sampled on the network's own target grid."""

import numpy as np
import torch
from skimage import data
from skimage.color import rgb2lab

from lit_colorization.color import ab_bins, bin_histogram, smooth_prior, uint8_to_lab
from lit_colorization.color.targets import ColorTargetBuilder
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.priors import compute_prior
from lit_colorization.pretrain.target_setup import build_targets, target_stride

ECCV16_STRIDE = 4


def test_streamed_prior_equals_the_smoothed_histogram_of_the_coloured_images():
    photo = torch.from_numpy(np.ascontiguousarray(data.astronaut()[:128, :128])).permute(2, 0, 1)
    gray = photo.float().mean(0, keepdim=True).round().to(torch.uint8).expand(3, -1, -1)
    batches = [torch.stack([photo, gray]), torch.stack([gray, photo.flip(-1)])]
    bins = ab_bins()
    expected_counts = sum(
        bin_histogram(uint8_to_lab(image[None])[:, 1:, ::ECCV16_STRIDE, ::ECCV16_STRIDE], bins).double()
        for image in (photo, photo.flip(-1))
    )
    expected = smooth_prior(expected_counts, bins.double(), 5.0).float()
    targets = ColorTargetBuilder(bins, None, stride=ECCV16_STRIDE)
    assert torch.allclose(compute_prior(batches, targets), expected, atol=1e-7)


def independent_prior(images: list[np.ndarray], bins: np.ndarray, stride: int, sigma: float) -> np.ndarray:
    """scikit-image Lab, every ``stride``-th pixel, nearest bin by brute force, np.bincount, Gaussian smoothing."""
    counts = np.zeros(len(bins))
    for image in images:
        ab = rgb2lab(image)[::stride, ::stride, 1:].reshape(-1, 2)
        nearest = ((ab[:, None, :] - bins[None]) ** 2).sum(-1).argmin(1)
        counts += np.bincount(nearest, minlength=len(bins))
    squared = ((bins[:, None, :] - bins[None]) ** 2).sum(-1)
    smoothed = np.exp(-squared / (2 * sigma**2)) @ (counts / counts.sum())
    return smoothed / smoothed.sum()


def test_the_prior_pass_samples_the_networks_target_grid_like_an_independent_histogram():
    config = PRETRAIN.load("sample", ["model.name=alexnet", "model.kwargs.width=0.125"])
    stride = target_stride(config)
    assert stride == 8  # alexnet's logits are 1/8 of the input, unlike eccv16's 1/4
    bins = ab_bins()
    astronaut, coffee = data.astronaut(), data.coffee()  # 512 x 512 and 400 x 600: multiples of 8
    gray = np.repeat(astronaut.mean(-1, keepdims=True).round().astype(np.uint8), 3, axis=-1)

    def batch(*images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()

    targets = build_targets(config.targets, bins, None, stride)
    prior = compute_prior([batch(astronaut, gray), batch(coffee)], targets, config.targets.sigma)
    expected = independent_prior([astronaut, coffee], bins.double().numpy(), stride, config.targets.sigma)
    # Within float32 rounding: every sampled pixel lands in the same bin (a 4-pixel grid is off by 2e-2).
    assert np.abs(prior.double().numpy() - expected).sum() < 1e-6
