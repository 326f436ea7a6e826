"""The frozen-feature VOC07 classification protocol of later benchmarks (Goyal et al. 2019): per-class linear SVMs.

Features: one layer of the frozen trunk (an AlexNet in the standard geometry) on the central crop of each image,
reduced as goyal19's linear probe reduces that layer ("the same pooled features", docs/reference.md section 6.1:
AlexNet conv5 average-pooled 8/1, ResNet-50 res5 12/2, ...; a layer goyal19 does not define, e.g. eccv16's, by
this project's adaptive pooling, ``transfer/probe/protocols.py``), flattened and L2-normalised. Per class, a scikit-learn ``LinearSVC`` (squared hinge, positives weighted ``positive_weight``)
with the cost chosen by k-fold cross-validated AP over a grid. Images where the class appears only as
difficult objects (VOC's "0" label) are left out of that class's training and of its evaluation.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC
from torch import Tensor, nn

from lit_colorization.color import uint8_to_lab
from transfer.probe.protocols import GOYAL19, LayerProbe
from transfer.trunk import Trunk
from transfer.voc.evaluation import classification_map

DEFAULT_SVM_LAYER = {"alexnet": "conv5", "resnet50": "res5", "eccv16": "conv7"}  # the last conv layer
SVM_FEATURES = GOYAL19  # the protocol whose pooled features the SVMs train on
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSet:
    features: np.ndarray  # (N, D) float32, rows of unit L2 norm
    targets: np.ndarray  # (N, C) in {0, 1}
    ignore: np.ndarray  # (N, C) bool: the class is present only as difficult objects


@dataclass(frozen=True)
class ClassSVM:
    model: LinearSVC
    cost: float
    cv_ap: dict[float, float]  # mean cross-validated AP per cost
    folds: int


@dataclass(frozen=True)
class SVMResult:
    map: float  # in [0, 1]
    per_class: list[float]
    svms: list[ClassSVM]
    feature_dim: int
    scores: np.ndarray  # (test images, classes): each class's SVM decision value


def default_svm_layer(model_name: str) -> str:
    if model_name not in DEFAULT_SVM_LAYER:
        raise ValueError(f"no default SVM layer for model {model_name!r}; set svm.layer")
    return DEFAULT_SVM_LAYER[model_name]


@dataclass(frozen=True)
class SVMFeatures:
    """How the SVMs see a layer at a crop size."""

    probe: LayerProbe  # the reduction and its label ("goyal19", or "goyal19-like" for a layer it does not define)
    feature_shape: tuple[int, int, int]  # (C, H, W) before the reduction
    pooled_shape: tuple[int, int, int]  # (C, h, w) after it


def svm_features(backbone: Trunk, layer: str, crop: int) -> SVMFeatures:
    """goyal19's reduction of ``layer`` for ``crop`` x ``crop`` images; a ValueError (naming the layer and its
    map) if the network is not built as goyal19 assumes or the map is too small for the pooling."""
    network = backbone.network
    hparams = network.hparams_for_checkpoint()
    SVM_FEATURES.check_network(network.model_name, hparams)
    probe = SVM_FEATURES.layer_probe(network.model_name, layer, hparams)
    shape = backbone.feature_shapes(crop, crop)[layer]
    try:
        pooled = (shape[0], *probe.reduction.output_size(shape[1], shape[2]))
    except ValueError as error:
        raise ValueError(
            f"SVM features of {network.model_name} {layer} ({' x '.join(map(str, shape))} at image.crop={crop}): "
            f"{error}; goyal19's maps are those of 224-227 crops"
        ) from None
    return SVMFeatures(probe, shape, pooled)  # type: ignore[arg-type]


@torch.no_grad()
def extract_features(
    backbone: Trunk,
    layer: str,
    batches: Iterable[tuple[Tensor, Tensor, Tensor]],
    device: torch.device,
    pool: nn.Module,
) -> FeatureSet:
    """``layer`` features of every ``(uint8 images, targets, difficult_only)`` batch, reduced by ``pool``
    (``svm_features(...).probe.reduction.module()``), flattened and L2-normalised."""
    features, targets, ignore = [], [], []
    for images, batch_targets, batch_ignore in batches:
        lightness = uint8_to_lab(images.to(device))[:, :1]
        pooled = pool(backbone(lightness)[layer]).flatten(1)
        features.append(F.normalize(pooled.float(), dim=1).cpu())
        targets.append(batch_targets)
        ignore.append(batch_ignore)
    return FeatureSet(
        torch.cat(features).numpy(), torch.cat(targets).numpy(), torch.cat(ignore).numpy().astype(bool)
    )


def fit_svm(
    features: np.ndarray,
    labels: np.ndarray,
    cost: float,
    positive_weight: float,
    max_iter: int,
    seed: int = 0,
) -> LinearSVC:
    # random_state fixes liblinear's coordinate order, so the same data gives the same hyperplane.
    svm = LinearSVC(
        C=cost,
        class_weight={1: positive_weight, 0: 1.0},
        loss="squared_hinge",
        dual=True,
        max_iter=max_iter,
        random_state=seed,
    )
    return svm.fit(features, labels)


def select_cost(
    features: np.ndarray,
    labels: np.ndarray,
    costs: Sequence[float],
    folds: int,
    positive_weight: float,
    max_iter: int,
    seed: int = 0,
) -> tuple[float, dict[float, float], int]:
    """(best cost, mean cross-validated AP per cost, folds used); ties go to the cost listed first.

    Folds are stratified; a class with fewer positives (or negatives) than ``folds`` gets that many folds,
    so every validation fold holds a positive.
    """
    labels = labels.astype(int)
    positives, negatives = int(labels.sum()), int((labels == 0).sum())
    used_folds = min(folds, positives, negatives)
    if used_folds < 2:
        raise ValueError(
            f"cross-validating an SVM cost needs at least 2 positive and 2 negative training images, "
            f"got {positives} positive and {negatives} negative"
        )
    splits = list(StratifiedKFold(used_folds, shuffle=True, random_state=seed).split(features, labels))
    cv_ap: dict[float, float] = {}
    for cost in costs:
        fold_ap = [
            average_precision_score(
                labels[held_out],
                fit_svm(
                    features[fitted], labels[fitted], cost, positive_weight, max_iter, seed
                ).decision_function(features[held_out]),
            )
            for fitted, held_out in splits
        ]
        cv_ap[float(cost)] = float(np.mean(fold_ap))
    best = max(cv_ap, key=lambda cost: (cv_ap[cost], -list(cv_ap).index(cost)))
    return best, cv_ap, used_folds


class FittedSVMs(Protocol):
    """Where per-class SVMs are kept between starts of a job (transfer/voc/svm_cache.py)."""

    def load(self, column: int) -> ClassSVM | None: ...

    def save(self, column: int, svm: ClassSVM) -> None: ...


def train_class_svms(
    train: FeatureSet,
    costs: Sequence[float],
    folds: int,
    positive_weight: float,
    max_iter: int,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    store: FittedSVMs | None = None,
) -> list[ClassSVM]:
    """One SVM per class (column), its cost chosen by ``select_cost``, refitted on all of that class's images;
    ``class_names`` name the columns in errors; with ``store``, the classes it already holds are read back, each
    new one saved as soon as it is fitted."""
    svms = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        for column in range(train.targets.shape[1]):
            stored = store.load(column) if store is not None else None
            if stored is not None:
                svms.append(stored)
                continue
            kept = ~train.ignore[:, column]
            features, labels = train.features[kept], train.targets[kept, column].astype(int)
            try:
                cost, cv_ap, used_folds = select_cost(
                    features, labels, costs, folds, positive_weight, max_iter, seed
                )
            except ValueError as error:
                raise ValueError(f"{class_label(column, class_names)}: {error}") from None
            model = fit_svm(features, labels, cost, positive_weight, max_iter, seed)
            svms.append(ClassSVM(model, cost, cv_ap, used_folds))
            if store is not None:
                store.save(column, svms[-1])
    unconverged = sum(issubclass(warning.category, ConvergenceWarning) for warning in caught)
    for warning in caught:  # only the convergence warnings are summarised; the rest pass on unchanged
        if not issubclass(warning.category, ConvergenceWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if unconverged:
        log.warning("%d LinearSVC fits stopped at svm.max_iter=%d before converging", unconverged, max_iter)
    return svms


def class_label(column: int, class_names: Sequence[str] | None) -> str:
    """How errors name a class column: by its name where known."""
    if class_names is None:
        return f"class column {column}"
    return f"class '{class_names[column]}' (column {column})"


def svm_scores(svms: Sequence[ClassSVM], features: np.ndarray) -> np.ndarray:
    """(N, C) signed distances to each class's hyperplane."""
    return np.stack([svm.model.decision_function(features) for svm in svms], axis=1)


def evaluate_svms(
    train: FeatureSet,
    test: FeatureSet,
    costs: Sequence[float],
    folds: int,
    positive_weight: float,
    max_iter: int,
    ap_metric: str,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    store: FittedSVMs | None = None,
) -> SVMResult:
    """Train the per-class SVMs on ``train`` (those ``store`` holds read back) and score ``test``: mAP with
    difficult-only entries ignored."""
    svms = train_class_svms(train, costs, folds, positive_weight, max_iter, seed, class_names, store)
    scores = svm_scores(svms, test.features)
    mean_ap, per_class = classification_map(
        torch.from_numpy(scores), torch.from_numpy(test.targets), torch.from_numpy(test.ignore), ap_metric
    )
    return SVMResult(mean_ap, per_class, svms, int(train.features.shape[1]), scores)
