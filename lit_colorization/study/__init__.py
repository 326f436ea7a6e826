"""The "real or colorized?" perceptual study (the paper's colorization Turing test) as a local web app."""

from lit_colorization.study.pairs import ImagePair, find_pairs
from lit_colorization.study.store import (
    RateSummary,
    export_csv,
    fooling_rate,
    open_store,
    per_image_fooling_rates,
    wilson_interval,
)

__all__ = [
    "ImagePair",
    "RateSummary",
    "export_csv",
    "find_pairs",
    "fooling_rate",
    "open_store",
    "per_image_fooling_rates",
    "wilson_interval",
]
