"""Pure colour maths on batched tensors (B x C x H x W), on any device: Lab, bins, soft-encoding, priors, decoding."""

from lit_colorization.color.bins import NUM_BINS, ab_bins, check_bins
from lit_colorization.color.decode import ANNEALED_MEAN_TEMPERATURE, annealed_mean, nongray_mask
from lit_colorization.color.encode import (
    SoftEncoder,
    cached_soft_encoder,
    soft_encode,
    soft_encode_exact,
    squared_distances,
)
from lit_colorization.color.lab import LabToRgb, RgbToLab, lab_to_rgb, rgb_to_lab, uint8_to_lab
from lit_colorization.color.rebalance import bin_histogram, empirical_prior, rebalance_weights, smooth_prior

__all__ = [
    "ANNEALED_MEAN_TEMPERATURE",
    "NUM_BINS",
    "LabToRgb",
    "RgbToLab",
    "SoftEncoder",
    "ab_bins",
    "annealed_mean",
    "bin_histogram",
    "cached_soft_encoder",
    "check_bins",
    "empirical_prior",
    "lab_to_rgb",
    "nongray_mask",
    "rebalance_weights",
    "rgb_to_lab",
    "smooth_prior",
    "soft_encode",
    "soft_encode_exact",
    "squared_distances",
    "uint8_to_lab",
]
