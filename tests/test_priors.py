"""compute_prior against the colour package's own histogram and smoothing, gray images left out."""

import numpy as np
import torch
from skimage import data

from lit_colorization.color import ab_bins, bin_histogram, smooth_prior, uint8_to_lab
from lit_colorization.train.priors import PRIOR_STRIDE, compute_prior


def test_streamed_prior_equals_the_smoothed_histogram_of_the_coloured_images():
    photo = torch.from_numpy(np.ascontiguousarray(data.astronaut()[:128, :128])).permute(2, 0, 1)
    gray = photo.float().mean(0, keepdim=True).round().to(torch.uint8).expand(3, -1, -1)
    batches = [torch.stack([photo, gray]), torch.stack([gray, photo.flip(-1)])]
    bins = ab_bins()
    expected_counts = sum(
        bin_histogram(uint8_to_lab(image[None])[:, 1:, ::PRIOR_STRIDE, ::PRIOR_STRIDE], bins).double()
        for image in (photo, photo.flip(-1))
    )
    expected = smooth_prior(expected_counts, bins.double(), 5.0).float()
    assert torch.allclose(compute_prior(batches, bins), expected, atol=1e-7)
