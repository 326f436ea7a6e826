"""VOC evaluation against hand-derived values, scikit-learn/torchmetrics and the devkit's rules."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torchmetrics.classification import MultilabelAveragePrecision

from tests.transfer.voc.devkit_reference import devkit_reference_ap
from transfer.voc.dataset import VOCDetectionDataset
from transfer.voc.evaluation import (
    classification_map,
    detection_map,
    torchmetrics_detection_map,
    voc_ap_11point,
    voc_ap_area,
)
from transfer.voc.synthetic import make_tiny_voc

HAS_COCO_BACKEND = any(importlib.util.find_spec(name) for name in ("pycocotools", "faster_coco_eval"))

# The hand-built ranking used throughout: two positives, detections ranked TP, FP, TP.
# recall = [1/2, 1/2, 1], precision = [1, 1/2, 2/3].
# 11-point: recall levels 0.0..0.5 (6 levels) reach precision 1; 0.6..1.0 (5 levels) only 2/3
# -> (6 + 5 * 2/3) / 11 = 28/33.
# All-point: the envelope is 1 up to recall 1/2, then 2/3 -> 1/2 * 1 + 1/2 * 2/3 = 5/6.
HAND_RECALL = [0.5, 0.5, 1.0]
HAND_PRECISION = [1.0, 0.5, 2 / 3]
HAND_AP_11POINT = 28 / 33
HAND_AP_AREA = 5 / 6


def test_ap_rules_on_the_hand_built_curve() -> None:
    assert voc_ap_11point(HAND_RECALL, HAND_PRECISION) == pytest.approx(HAND_AP_11POINT, abs=1e-12)
    assert voc_ap_area(HAND_RECALL, HAND_PRECISION) == pytest.approx(HAND_AP_AREA, abs=1e-12)


# Three positives ranked TP, FP, TP, TP: recall 1/3, 1/3, 2/3, 1 at precision 1, 1/2, 2/3, 3/4. The precision
# rises at the end, so the envelope lifts recall 2/3 to 3/4.
# 11-point: levels 0..0.3 (4) reach precision 1; levels 0.4..1 (7) reach 3/4 -> (4 + 7 * 3/4) / 11 = 37/44.
# Area: 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6. Uninterpolated (scikit-learn): 1/3 * (1 + 2/3 + 3/4) = 29/36.
RISING_RECALL = [1 / 3, 1 / 3, 2 / 3, 1.0]
RISING_PRECISION = [1.0, 0.5, 2 / 3, 3 / 4]


def test_ap_rules_take_the_precision_envelope() -> None:
    assert voc_ap_11point(RISING_RECALL, RISING_PRECISION) == pytest.approx(37 / 44, abs=1e-12)
    assert voc_ap_area(RISING_RECALL, RISING_PRECISION) == pytest.approx(5 / 6, abs=1e-12)


def test_ap_rules_on_a_ranking_with_misses_and_a_late_hit() -> None:
    # Four positives, ranked FP, TP, FP, FP, TP and two never found: recall 0, 1/4, 1/4, 1/4, 1/2 at precision
    # 0, 1/2, 1/3, 1/4, 2/5. 11-point: levels 0..0.2 (3) reach 1/2, 0.3..0.5 (3) reach 2/5, 0.6..1 nothing
    # -> (3/2 + 6/5) / 11 = 27/110. Area: 1/4 * 1/2 + 1/4 * 2/5 = 9/40.
    recall = [0.0, 0.25, 0.25, 0.25, 0.5]
    precision = [0.0, 0.5, 1 / 3, 0.25, 0.4]
    assert voc_ap_11point(recall, precision) == pytest.approx(27 / 110, abs=1e-12)
    assert voc_ap_area(recall, precision) == pytest.approx(9 / 40, abs=1e-12)


def test_11point_counts_a_recall_of_exactly_three_tenths() -> None:
    # 3 of 10 positives found at precision 1 and nothing more: levels 0, 0.1, 0.2, 0.3 reach precision 1.
    assert voc_ap_11point([0.1, 0.2, 3 / 10], [1.0, 1.0, 1.0]) == pytest.approx(4 / 11, abs=1e-12)


def test_ap_of_an_empty_curve_is_zero() -> None:
    assert voc_ap_11point([], []) == 0.0 and voc_ap_area([], []) == 0.0


def test_ap_rejects_curves_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="same length"):
        voc_ap_area([0.5, 1.0], [1.0])


# ---- classification ----


def test_classification_perfect_scores_give_map_one() -> None:
    targets = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    mean_ap, per_class = classification_map(targets.float() * 2 - 1, targets)
    assert mean_ap == 1.0 and per_class == [1.0, 1.0, 1.0]


def test_classification_matches_torchmetrics_and_sklearn_with_ignored_entries_removed() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 5, generator=generator)
    targets = (torch.rand(40, 5, generator=generator) < 0.3).long()
    ignore = torch.rand(40, 5, generator=generator) < 0.15
    mean_ap, per_class = classification_map(scores, targets, ignore)
    torchmetrics_ap = MultilabelAveragePrecision(num_labels=5, average=None, ignore_index=-1)(
        scores, torch.where(ignore, -1, targets)
    )
    sklearn_ap = [
        average_precision_score(targets[~ignore[:, c], c].numpy(), scores[~ignore[:, c], c].numpy())
        for c in range(5)
    ]
    np.testing.assert_allclose(per_class, torchmetrics_ap.numpy(), atol=1e-6)
    np.testing.assert_allclose(per_class, sklearn_ap, atol=1e-12)
    assert mean_ap == pytest.approx(float(torchmetrics_ap.mean()), abs=1e-6)


def test_classification_depends_only_on_the_ranking_even_for_large_scores() -> None:
    # Large SVM margins must not tie (torchmetrics would squash these float32 scores with a sigmoid).
    scores = torch.tensor([[20.0], [30.0], [25.0]])
    targets = torch.tensor([[0], [1], [0]])
    assert classification_map(scores, targets)[0] == 1.0
    assert classification_map(scores / 100, targets)[0] == 1.0


def test_classification_ignores_difficult_only_entries() -> None:
    # A top-scored negative costs precision; the same entry marked difficult-only costs nothing.
    scores = torch.tensor([[0.9], [0.8], [0.1]])
    targets = torch.tensor([[0], [1], [0]])
    assert classification_map(scores, targets)[0] == pytest.approx(0.5)
    assert classification_map(scores, targets, ignore=torch.tensor([[True], [False], [False]]))[0] == 1.0


def test_classification_11point_on_the_hand_built_ranking() -> None:
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    targets = torch.tensor([[1], [0], [1], [0]])
    assert classification_map(scores, targets, ap_metric="11pt")[0] == pytest.approx(HAND_AP_11POINT)
    assert classification_map(scores, targets)[0] == pytest.approx(HAND_AP_AREA)


def test_classification_area_ap_is_scikit_learns_uninterpolated_ap_and_11point_takes_the_envelope() -> None:
    scores = torch.tensor([[0.9], [0.8], [0.7], [0.6]])
    targets = torch.tensor([[1], [0], [1], [1]])
    assert average_precision_score(targets[:, 0].numpy(), scores[:, 0].numpy()) == pytest.approx(29 / 36)
    assert classification_map(scores, targets)[0] == pytest.approx(29 / 36, abs=1e-12)
    assert classification_map(scores, targets, ap_metric="11pt")[0] == pytest.approx(37 / 44, abs=1e-12)


def test_classification_skips_classes_without_positives() -> None:
    scores = torch.tensor([[0.9, 0.2], [0.1, 0.8]])
    targets = torch.tensor([[1, 0], [0, 0]])
    ignore = torch.tensor([[False, False], [False, True]])
    mean_ap, per_class = classification_map(scores, targets, ignore)
    assert mean_ap == 1.0 and per_class[0] == 1.0 and math.isnan(per_class[1])


@pytest.mark.parametrize(
    ("targets", "ignore", "message"),
    [
        (torch.tensor([[1, -1], [0, 1]]), None, "only 0 and 1"),
        (torch.tensor([[1, 0], [0, 1]]), torch.zeros(2, 3, dtype=torch.bool), "ignore"),
        (torch.tensor([[1, 0, 0], [0, 1, 0]]), None, r"\(N, C\)"),
        (torch.tensor([[0, 0], [0, 0]]), None, "no class has a positive"),
    ],
)
def test_classification_rejects_bad_input(
    targets: torch.Tensor, ignore: torch.Tensor | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        classification_map(torch.rand(2, 2), targets, ignore)


# ---- detection ----


def _truth(boxes: list, labels: list, difficult: list | None = None) -> dict[str, torch.Tensor]:
    truth = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels)}
    if difficult is not None:
        truth["difficult"] = torch.tensor(difficult)
    return truth


def _prediction(boxes: list, scores: list, labels: list) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


BOX_A, BOX_B, FAR = [10, 10, 50, 40], [60, 5, 90, 70], [100, 100, 120, 120]


def test_detection_hand_built_case() -> None:
    # Two images, one positive each; the false positive (score 0.8, in image 1) ranks between the two hits.
    ground_truths = [_truth([BOX_A], [1]), _truth([BOX_B], [1])]
    predictions = [_prediction([BOX_A, FAR], [0.9, 0.8], [1, 1]), _prediction([BOX_B], [0.7], [1])]
    assert detection_map(predictions, ground_truths)[0] == pytest.approx(HAND_AP_11POINT)
    assert detection_map(predictions, ground_truths, use_07_metric=False)[0] == pytest.approx(HAND_AP_AREA)


def test_duplicates_are_false_positives() -> None:
    # A second hit on BOX_A outranks the hit on BOX_B: the same TP, FP, TP ranking as the hand-built case.
    ground_truths = [_truth([BOX_A, BOX_B], [1, 1])]
    predictions = [_prediction([BOX_A, [11, 10, 50, 41], BOX_B], [0.9, 0.8, 0.7], [1, 1, 1])]
    assert detection_map(predictions, ground_truths)[0] == pytest.approx(HAND_AP_11POINT)


def test_a_duplicate_of_a_claimed_box_stays_false_even_if_another_box_overlaps_it() -> None:
    # Devkit rule: only the highest-IoU box is considered. The second detection is BOX_A again (IoU 1 with the
    # claimed BOX_A, 1200/1400 with the unclaimed twin), so it is a duplicate: recall 1/2 at precision 1, then
    # 1/2 at 1/2 -> 11-point AP 6/11. (A "best unclaimed box" rule would give 1.)
    twin = [10, 10, 50, 45]
    ground_truths = [_truth([BOX_A, twin], [1, 1])]
    predictions = [_prediction([BOX_A, BOX_A], [0.9, 0.8], [1, 1])]
    assert detection_map(predictions, ground_truths)[0] == pytest.approx(6 / 11)


def test_missed_difficult_box_does_not_lower_ap() -> None:
    predictions = [_prediction([BOX_A], [0.9], [1])]
    assert detection_map(predictions, [_truth([BOX_A, BOX_B], [1, 1], [False, True])])[0] == 1.0
    assert detection_map(predictions, [_truth([BOX_A, BOX_B], [1, 1], [False, False])])[0] == pytest.approx(
        6 / 11
    )


def test_detection_on_a_difficult_box_is_not_a_false_positive() -> None:
    ground_truths = [_truth([BOX_A, BOX_B], [1, 1], [False, True])]
    predictions = [_prediction([BOX_B, BOX_A], [0.9, 0.8], [1, 1])]
    assert detection_map(predictions, ground_truths)[0] == 1.0
    # The same detection is a false positive when the box is not there at all: TP at rank 2 -> precision 1/2.
    assert detection_map(predictions, [_truth([BOX_A], [1])])[0] == pytest.approx(0.5)


def test_iou_threshold_is_inclusive_with_plain_areas() -> None:
    # [0, 0, 10, 20] against [0, 0, 10, 10]: IoU 100 / 200 = 0.5 exactly -> a hit; 21 rows: 100 / 210, a miss.
    ground_truths = [_truth([[0, 0, 10, 10]], [1])]
    assert detection_map([_prediction([[0, 0, 10, 20]], [1.0], [1])], ground_truths)[0] == 1.0
    assert detection_map([_prediction([[0, 0, 10, 21]], [1.0], [1])], ground_truths)[0] == 0.0


def test_labels_must_agree_and_unscored_labels_are_left_out() -> None:
    ground_truths = [_truth([BOX_A, BOX_B], [1, 2])]
    predictions = [_prediction([BOX_A, BOX_B, FAR], [0.9, 0.8, 0.7], [2, 2, 3])]
    mean_ap, per_class = detection_map(predictions, ground_truths)
    # Class 1 has no detection (AP 0); class 2: FP then TP -> precision 1/2 at recall 1; label 3 has no truth.
    assert per_class == {1: 0.0, 2: pytest.approx(0.5)}
    assert mean_ap == pytest.approx(0.25)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_voc(
        tmp_path_factory.mktemp("voc"), num_train=5, num_val=5, num_test=10, image_size=64, seed=1
    )


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_perfect_detections_on_the_tiny_dataset_give_map_one(voc_root: Path, use_07_metric: bool) -> None:
    dataset = VOCDetectionDataset(voc_root, "2007", "test")
    ground_truths = [dataset[index][1] for index in range(len(dataset))]
    generator = torch.Generator().manual_seed(0)
    predictions = [
        {
            "boxes": t["boxes"],
            "labels": t["labels"],
            "scores": torch.rand(len(t["labels"]), generator=generator),
        }
        for t in ground_truths
    ]
    mean_ap, per_class = detection_map(predictions, ground_truths, use_07_metric=use_07_metric)
    assert mean_ap == 1.0
    assert set(per_class) == {int(label) for t in ground_truths for label in t["labels"][~t["difficult"]]}


@pytest.mark.parametrize(
    ("predictions", "ground_truths", "message"),
    [
        ([], [_truth([BOX_A], [1])], "one prediction per image"),
        ([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], [_truth([BOX_A], [1])], "'scores'"),
        ([_prediction([BOX_A], [0.9], [1])], [{"boxes": torch.zeros(4), "labels": torch.ones(1)}], "shape"),
        ([_prediction([BOX_A], [0.9], [1])], [_truth([BOX_A], [1], [True])], "no non-difficult box"),
    ],
)
def test_detection_rejects_bad_input(predictions: list, ground_truths: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detection_map(predictions, ground_truths)


def test_torchmetrics_wrapper_names_the_missing_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules is how Python marks a module as not importable: find_spec answers None.
    for name in ("pycocotools", "faster_coco_eval"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleNotFoundError, match="needs pycocotools or faster_coco_eval"):
        torchmetrics_detection_map([_prediction([BOX_A], [0.9], [1])], [_truth([BOX_A], [1])])


@pytest.mark.skipif(not HAS_COCO_BACKEND, reason="needs pycocotools or faster_coco_eval")
def test_torchmetrics_wrapper_agrees_on_easy_cases() -> None:
    ground_truths = [_truth([BOX_A, BOX_B], [1, 2], [False, True])]
    perfect = [_prediction([BOX_A, BOX_B], [0.9, 0.8], [1, 2])]
    assert torchmetrics_detection_map(perfect, ground_truths) == (pytest.approx(1.0), {1: pytest.approx(1.0)})
    # COCO's 101-point rule on the hand-built ranking: 51 levels (0..0.5) at 1, 50 levels at 2/3.
    hand_truths = [_truth([BOX_A], [1]), _truth([BOX_B], [1])]
    hand = [_prediction([BOX_A, FAR], [0.9, 0.8], [1, 1]), _prediction([BOX_B], [0.7], [1])]
    assert torchmetrics_detection_map(hand, hand_truths)[0] == pytest.approx(
        (51 + 50 * 2 / 3) / 101, abs=1e-4
    )


def test_per_image_matching_equals_the_devkit_global_pass() -> None:
    # Random jittered detections with tied scores, duplicates, difficult boxes and misses over several images.
    generator = torch.Generator().manual_seed(0)
    ground_truths, predictions = [], []
    for _ in range(12):
        count = int(torch.randint(1, 5, (1,), generator=generator))
        corner = torch.rand(count, 2, generator=generator) * 80
        boxes = torch.cat([corner, corner + 10 + torch.rand(count, 2, generator=generator) * 30], dim=1)
        labels = torch.randint(1, 4, (count,), generator=generator)
        ground_truths.append(
            {"boxes": boxes, "labels": labels, "difficult": torch.rand(count, generator=generator) < 0.25}
        )
        picks = torch.randint(0, count, (6,), generator=generator)
        jitter = torch.randn(6, 4, generator=generator) * 4
        predictions.append(
            {
                "boxes": boxes[picks] + jitter,
                "scores": torch.randint(0, 5, (6,), generator=generator).float() / 4,
                "labels": torch.where(torch.rand(6, generator=generator) < 0.8, labels[picks], 3),
            }
        )
    _, per_class = detection_map(predictions, ground_truths)
    _, per_class_area = detection_map(predictions, ground_truths, use_07_metric=False)
    assert len(per_class) == 3 and 0 < min(per_class.values()) < max(per_class.values()) < 1
    for label, value in per_class.items():
        eleven_point, area = devkit_reference_ap(predictions, ground_truths, label)
        assert value == pytest.approx(eleven_point, abs=1e-12)
        assert per_class_area[label] == pytest.approx(area, abs=1e-12)
