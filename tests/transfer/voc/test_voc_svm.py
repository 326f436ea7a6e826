"""The frozen-feature SVM protocol: cost selection from the grid, perfect features, difficult handling, goyal19's
pooled features."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from lit_colorization.color import uint8_to_lab
from lit_colorization.models import create_model
from transfer.trunk import Trunk, in_standard_geometry
from transfer.voc.svm import (
    FeatureSet,
    evaluate_svms,
    extract_features,
    select_cost,
    svm_features,
    train_class_svms,
)
from transfer.voc.voc_config import SVM_COSTS


def _separable(num_images: int, num_classes: int, seed: int) -> FeatureSet:
    """Class c present <=> feature c is 1 (else 0), plus small noise; rows normalised like real features."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((num_images, num_classes)) < 0.4).astype(np.float32)
    targets[: 2 * num_classes] = np.tile(np.eye(num_classes, dtype=np.float32), (2, 1))  # >= 2 positives each
    targets[2 * num_classes : 2 * num_classes + 2] = 0  # ... and >= 2 negatives each
    features = np.concatenate([targets, 0.05 * rng.random((num_images, 6))], axis=1).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return FeatureSet(features, targets, np.zeros_like(targets, dtype=bool))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cost_is_chosen_from_the_grid_by_cross_validated_ap() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(60) < 0.3).astype(int)
    features = rng.normal(size=(60, 8)) + labels[:, None] * np.linspace(0, 1, 8)  # a weak, noisy signal
    best, cv_ap, folds = select_cost(features, labels, SVM_COSTS, folds=3, positive_weight=2.0, max_iter=5000)
    assert folds == 3 and list(cv_ap) == SVM_COSTS and best in SVM_COSTS
    assert cv_ap[best] == max(cv_ap.values())
    assert all(0.0 < value <= 1.0 for value in cv_ap.values())
    # Ties go to the first listed cost: with perfectly separable data several costs reach AP 1.
    perfect = _separable(30, 1, seed=0)
    best, cv_ap, _ = select_cost(perfect.features, perfect.targets[:, 0], SVM_COSTS, 3, 2.0, 5000)
    assert best == next(cost for cost in SVM_COSTS if cv_ap[cost] == max(cv_ap.values()))


def test_folds_shrink_to_the_positives_and_too_few_examples_are_refused() -> None:
    features = np.eye(6)
    _, _, folds = select_cost(
        features, np.array([1, 1, 0, 0, 0, 0]), [1.0], folds=3, positive_weight=1.0, max_iter=100
    )
    assert folds == 2
    with pytest.raises(ValueError, match="at least 2 positive and 2 negative.*got 1 positive"):
        select_cost(features, np.array([1, 0, 0, 0, 0, 0]), [1.0], folds=3, positive_weight=1.0, max_iter=100)


def test_perfectly_separable_features_give_ap_one() -> None:
    train, test = _separable(40, 3, seed=1), _separable(25, 3, seed=2)
    result = evaluate_svms(train, test, SVM_COSTS, 3, 2.0, 5000, use_07_metric=True)
    assert result.map == pytest.approx(1.0) and result.per_class == pytest.approx([1.0, 1.0, 1.0])
    assert all(svm.cost in SVM_COSTS for svm in result.svms) and result.feature_dim == 9


def test_difficult_only_images_are_left_out_of_training_and_evaluation() -> None:
    train = _separable(30, 2, seed=3)
    ignore = np.zeros_like(train.ignore)
    ignore[[0, 5, 9], 0] = True  # class 0 present only as difficult objects in these images
    with_ignored = train_class_svms(
        FeatureSet(train.features, train.targets, ignore), [0.1, 1.0, 10.0], 3, 2.0, 5000
    )
    keep = ~ignore[:, 0]
    without = train_class_svms(
        FeatureSet(train.features[keep], train.targets[keep], train.ignore[keep]),
        [0.1, 1.0, 10.0],
        3,
        2.0,
        5000,
    )
    assert with_ignored[0].cost == without[0].cost
    np.testing.assert_array_equal(with_ignored[0].model.coef_, without[0].model.coef_)

    # At test: image 0 looks like a class-0 positive but is labelled 0 and ignored (difficult only).
    test = _separable(20, 2, seed=4)
    features, targets = test.features.copy(), test.targets.copy()
    positive = int(np.flatnonzero(targets[1:, 0])[0]) + 1
    features[0], targets[0] = features[positive], targets[positive]
    targets[0, 0] = 0
    test_ignore = np.zeros_like(test.ignore)
    test_ignore[0, 0] = True
    result = evaluate_svms(
        train, FeatureSet(features, targets, test_ignore), [1.0], 3, 2.0, 5000, use_07_metric=False
    )
    scores = result.svms[0].model.decision_function(features)
    assert result.per_class[0] == pytest.approx(average_precision_score(targets[1:, 0], scores[1:])) == 1.0
    assert average_precision_score(targets[:, 0], scores) < 1.0  # what counting it would have given


def test_features_are_goyal19s_pooled_layer_output_unit_normalised() -> None:
    torch.manual_seed(0)
    backbone = Trunk(in_standard_geometry(create_model("alexnet", width=0.125)), ["conv5"])
    pooling = svm_features(backbone, "conv5", 227)
    assert (pooling.probe.label, pooling.probe.reduction.describe()) == ("goyal19", "average pool 8/1")
    assert (pooling.feature_shape, pooling.pooled_shape) == ((32, 13, 13), (32, 6, 6))
    images = torch.randint(
        0, 256, (3, 3, 227, 227), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    targets, ignore = torch.ones(3, 2), torch.zeros(3, 2, dtype=torch.bool)
    features = extract_features(
        backbone,
        "conv5",
        [(images[:2], targets[:2], ignore[:2]), (images[2:], targets[2:], ignore[2:])],
        torch.device("cpu"),
        pooling.probe.reduction.module(),
    )
    conv5 = backbone.network.features(uint8_to_lab(images)[:, :1], ["conv5"])["conv5"]
    # Every 8x8 window at stride 1, averaged: 6 x 6 per channel, in the channel-major order of a flattened map.
    windows = conv5.unfold(2, 8, 1).unfold(3, 8, 1).mean(dim=(-2, -1))
    expected = F.normalize(windows.flatten(1), dim=1).numpy()
    assert features.features.shape == (3, 32 * 36)
    np.testing.assert_allclose(features.features, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(features.features, axis=1), 1.0, rtol=1e-6)
    assert features.targets.shape == (3, 2) and features.ignore.dtype == bool


def test_svm_features_refuse_a_map_smaller_than_the_kernel_and_the_training_geometry() -> None:
    alexnet = create_model("alexnet", width=0.125)
    with pytest.raises(ValueError, match="geometry='probe'"):
        svm_features(Trunk(alexnet, ["conv5"]), "conv5", 227)
    standard = Trunk(in_standard_geometry(create_model("alexnet", width=0.125)), ["conv5"])
    with pytest.raises(ValueError, match=r"alexnet conv5 \(32 x 2 x 2 at image.crop=40\).*8x8 average pool"):
        svm_features(standard, "conv5", 40)
    eccv16 = Trunk(create_model("eccv16", width=0.125), ["conv7"])
    assert svm_features(eccv16, "conv7", 64).probe.label == "goyal19-like"  # goyal19 defines no eccv16 layer
