"""The fixed ImageNet classifier behind "semantic interpretability" (docs/reference.md section 8).

Any torchvision classification network, with weights read from a local state-dict file only: nothing is ever
downloaded. Its top-1 on ground truth, gray and colorized images says how much of what a recogniser needs the
colours restore. When a data set's classes are not ImageNet's, the comparable number is the agreement of the
classifier's prediction on each image with its own prediction on the ground truth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from lit_colorization.store.checkpoint import load_raw, load_state_strict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_NUM_CLASSES = 1000
DEFAULT_INPUT_SIZE = 224
_WNID = re.compile(r"n\d{8}")


def list_classifiers() -> list[str]:
    """Names of torchvision's ImageNet classification networks (``torchvision.models.get_model`` names)."""
    return torchvision.models.list_models(module=torchvision.models)


@dataclass
class ImageNetClassifier:
    name: str
    network: nn.Module
    input_size: int = DEFAULT_INPUT_SIZE

    @torch.no_grad()
    def predict(self, rgb: Tensor) -> Tensor:
        """B x 3 x H x W RGB in [0, 1] -> (B,) int64 top-1 class, in torchvision's (sorted wnid) order.

        Images are resized to ``input_size`` squared and normalised with ImageNet's mean and std.
        """
        if rgb.ndim != 4 or rgb.shape[1] != 3 or not rgb.is_floating_point():
            raise ValueError(
                f"rgb must be a float B x 3 x H x W batch in [0, 1], got {rgb.dtype} {tuple(rgb.shape)}"
            )
        device = next(self.network.parameters()).device
        size = (self.input_size, self.input_size)
        resized = F.interpolate(
            rgb.to(device, torch.float32), size=size, mode="bilinear", align_corners=False, antialias=True
        )
        mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        return self.network((resized - mean) / std).argmax(dim=1)


def load_classifier(
    name: str,
    weights_path: str | Path,
    device: str | torch.device = "cpu",
    input_size: int = DEFAULT_INPUT_SIZE,
) -> ImageNetClassifier:
    """torchvision's ``name`` with every weight loaded strictly from ``weights_path`` (a saved state dict), in eval mode."""
    available = list_classifiers()
    if name not in available:
        raise ValueError(
            f"classifier: unknown torchvision classifier {name!r}; expected one of {', '.join(available)}"
        )
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: classifier weights file not found (expected a torchvision {name} state dict saved "
            "with torch.save; weights are never downloaded)"
        )
    if input_size <= 0:
        raise ValueError(f"classifier input size must be a positive integer, got {input_size}")
    state = load_raw(path)
    network = torchvision.models.get_model(name, weights=None)
    load_state_strict(network, state, str(path))
    return ImageNetClassifier(name, network.eval().to(device), input_size)


def uses_imagenet_labels(classes: Sequence[str]) -> bool:
    """True when the class folders are ImageNet's 1000 wnids in sorted order, i.e. torchvision's label order."""
    return (
        len(classes) == IMAGENET_NUM_CLASSES
        and all(_WNID.fullmatch(name) for name in classes)
        and list(classes) == sorted(classes)
    )


def top1_accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Fraction of ``predictions`` equal to ``labels`` (both (N,) integer tensors)."""
    return _fraction_equal(predictions, labels, "labels")


def agreement(predictions: Tensor, reference: Tensor) -> float:
    """Fraction of images whose prediction equals the reference prediction (e.g. the one on the ground truth)."""
    return _fraction_equal(predictions, reference, "reference")


def _fraction_equal(predictions: Tensor, other: Tensor, other_name: str) -> float:
    if predictions.ndim != 1 or predictions.shape != other.shape:
        raise ValueError(
            f"predictions and {other_name} must be (N,) vectors of equal length, got "
            f"{tuple(predictions.shape)} and {tuple(other.shape)}"
        )
    if predictions.numel() == 0:
        raise ValueError("no predictions to score")
    return (predictions == other.to(predictions.device)).double().mean().item()
