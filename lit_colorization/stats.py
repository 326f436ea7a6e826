"""Confidence intervals of proportions: the Turing test's fooling rate and top-1 accuracies on small sets."""

from __future__ import annotations

import math
from statistics import NormalDist

PERCENT = 100.0


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well behaved near 0 and 1, unlike the normal one)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got successes={successes}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half_width), min(1.0, centre + half_width)


def accuracy_interval(top1_percent: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson interval, in percent, of a top-1 accuracy given in percent over ``n`` images.

    A stored accuracy is a rounded percentage: the count of correct images is recovered as the nearest
    integer, which is exact as long as the percentage kept more than log10(n) - 2 decimals.
    """
    if not 0 <= top1_percent <= PERCENT:
        raise ValueError(f"top-1 must be a percentage in [0, 100], got {top1_percent}")
    correct = round(top1_percent * n / PERCENT)
    low, high = wilson_interval(correct, n, confidence)
    return PERCENT * low, PERCENT * high
