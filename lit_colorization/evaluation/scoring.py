"""Colorization quality (the paper's Table 1): per-image scores of one batch, and their exact set-level summary.

Only a few scalars per image and method are kept, so a validation set of any size costs bounded memory, and the
set-level numbers are exact rather than averages of batch averages: the AuC curve of a set of pixels is the
mass-weighted mean of the per-image curves, and the area is linear in the curve, so the pooled AuC is the
mass-weighted mean of per-image AuCs (mass = pixel count, or the sum of rebalancing weights).

AuC counts images with colour only (grayscale photos carry no colour to score, as in the paper's test split);
PSNR, SSIM and colourfulness count every image.

The semantic score is the classifier's top-1 against ImageNet labels, or its agreement with its own prediction
on the ground truth when the data set's classes are not ImageNet's.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from lit_colorization.color.metrics import auc, colorfulness
from lit_colorization.color.pictures import lab_batch_to_rgb
from lit_colorization.evaluation.classifier import (
    ImageNetClassifier,
    agreement,
    top1_accuracy,
    uses_imagenet_labels,
)

# Identical images have an infinite PSNR; capping it keeps a perfect colorization's mean a finite number.
PSNR_CAP_DB = 100.0
PERCENT = 100.0


def per_image_auc(
    pred_ab: Tensor, true_ab: Tensor, scored: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(B,) AuC in [0, 1] of each image (NaN where not ``scored``) and (B,) its pixel mass (0 where not scored).

    ``weights`` (B x H x W) weights pixels, e.g. by ``ColorTargetBuilder.metric_weights_for``; the mass is
    then their sum.
    """
    batch, _, height, width = true_ab.shape
    if scored.shape != (batch,):
        raise ValueError(f"scored must be a (B,) = ({batch},) bool vector, got {tuple(scored.shape)}")
    values = torch.full((batch,), math.nan, dtype=torch.float64)
    masses = torch.zeros(batch, dtype=torch.float64)
    for image in range(batch):
        mass = float(height * width) if weights is None else weights[image].double().sum().item()
        if not bool(scored[image]) or mass <= 0:
            continue
        image_weights = None if weights is None else weights[image : image + 1]
        values[image] = auc(
            pred_ab[image : image + 1], true_ab[image : image + 1], weights=image_weights
        ).item()
        masses[image] = mass
    return values, masses


def per_image_psnr(pred_rgb: Tensor, true_rgb: Tensor) -> Tensor:
    """(B,) PSNR in dB of RGB images in [0, 1], capped at ``PSNR_CAP_DB``."""
    psnr = peak_signal_noise_ratio(
        pred_rgb.double(), true_rgb.double(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return psnr.clamp(max=PSNR_CAP_DB).cpu()


def per_image_ssim(pred_rgb: Tensor, true_rgb: Tensor) -> Tensor:
    """(B,) SSIM of RGB images in [0, 1] (torchmetrics: 11 x 11 Gaussian window, sigma 1.5, mean over channels)."""
    ssim = structural_similarity_index_measure(
        pred_rgb.double(), true_rgb.double(), data_range=1.0, reduction="none"
    )
    return ssim.cpu()


def score_colorization(
    lightness: Tensor,
    pred_ab: Tensor,
    true_ab: Tensor,
    true_rgb: Tensor,
    scored: Tensor,
    rebalance_weights: Tensor | None,
    with_fidelity: bool,
) -> tuple[dict[str, Tensor], Tensor]:
    """Per-image scores of one colorization of a batch, and its RGB (B x 3 x H x W in [0, 1]).

    Always: ``auc`` / ``auc_mass``, ``colorfulness``, and ``auc_rebal`` / ``auc_rebal_mass`` when
    ``rebalance_weights`` (B x H x W) is given; ``psnr`` and ``ssim`` against ``true_rgb`` when ``with_fidelity``.
    """
    pred_rgb = lab_batch_to_rgb(lightness, pred_ab)
    scores = {"colorfulness": colorfulness(pred_rgb).double().cpu()}
    scores["auc"], scores["auc_mass"] = per_image_auc(pred_ab, true_ab, scored)
    if rebalance_weights is not None:
        scores["auc_rebal"], scores["auc_rebal_mass"] = per_image_auc(
            pred_ab, true_ab, scored, rebalance_weights
        )
    if with_fidelity:
        scores["psnr"] = per_image_psnr(pred_rgb, true_rgb)
        scores["ssim"] = per_image_ssim(pred_rgb, true_rgb)
    return scores, pred_rgb


class PerImageColumns:
    """Per-image values (one column per name), appended batch by batch, kept on the CPU."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[Tensor]] = defaultdict(list)

    def append(self, values: Mapping[str, Tensor]) -> None:
        for name, value in values.items():
            self._chunks[name].append(value.detach().cpu().reshape(-1))

    def __contains__(self, name: str) -> bool:
        return name in self._chunks

    def column(self, name: str) -> Tensor:
        if name not in self._chunks:
            raise KeyError(f"no per-image column {name!r}; have {sorted(self._chunks)}")
        return torch.cat(self._chunks[name])


def weighted_mean(values: Tensor, weights: Tensor) -> float | None:
    """sum(w * v) / sum(w) over entries with w > 0; None when no entry has weight."""
    used = weights > 0
    if not bool(used.any()):
        return None
    return (values[used].double() * weights[used].double()).sum().item() / weights[used].double().sum().item()


def summarize_quality(columns: PerImageColumns) -> dict[str, float | None]:
    """Set-level AuC and rebalanced AuC (percent), PSNR (dB), SSIM and colourfulness of one method's columns."""

    def percent(name: str) -> float | None:
        if name not in columns:
            return None
        value = weighted_mean(columns.column(name), columns.column(f"{name}_mass"))
        return None if value is None else PERCENT * value

    def mean(name: str) -> float | None:
        return columns.column(name).double().mean().item() if name in columns else None

    return {
        "auc": percent("auc"),
        "auc_rebal": percent("auc_rebal"),
        "psnr": mean("psnr"),
        "ssim": mean("ssim"),
        "colorfulness": mean("colorfulness"),
    }


def rank_examples(per_image_values: Tensor, count: int) -> dict[str, list[int]]:
    """Positions of the ``count`` best (highest first), worst (lowest first) and median images; NaNs ignored."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    valid = torch.nonzero(~torch.isnan(per_image_values)).flatten()
    order = valid[torch.argsort(per_image_values[valid], descending=True, stable=True)].tolist()
    count = min(count, len(order))
    middle = max(0, (len(order) - count) // 2)
    return {
        "best": order[:count],
        "worst": order[::-1][:count],
        "median": order[middle : middle + count],
    }


def semantic_basis(classes: Sequence[str], classifier: ImageNetClassifier | None) -> str | None:
    """What the semantic score measures for a data set with ``classes``; None without a classifier."""
    if classifier is None:
        return None
    return "imagenet-top1" if uses_imagenet_labels(classes) else "agreement-with-ground-truth"


def semantic_score(columns: PerImageColumns, truth: PerImageColumns, basis: str | None) -> float | None:
    """Top-1 (percent) of ``columns``' predictions against the ImageNet labels, or their agreement with the
    prediction on the ground truth; None without a classifier."""
    if basis is None:
        return None
    predictions = columns.column("prediction")
    if basis == "imagenet-top1":
        return PERCENT * top1_accuracy(predictions, truth.column("label"))
    return PERCENT * agreement(predictions, truth.column("prediction"))
