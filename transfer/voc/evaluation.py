"""Pascal VOC evaluation: average precision for classification and the devkit's detection protocol.

Detection follows ``VOCevaldet.m`` of the VOC devkit: per class, all detections are sorted by score (stable,
so ties keep input order); each takes the ground-truth box of its class in its image with the highest IoU; if
that IoU is >= ``iou_threshold`` the detection is a true positive when the box is unclaimed, a false positive
when already claimed (a duplicate), and is ignored when the box is difficult; otherwise it is a false
positive. Difficult boxes never count as positives. Like the devkit, a detection whose best box is already
claimed is a duplicate even if a second box would also overlap it enough.

IoU convention: boxes are continuous 0-based pixel-edge xyxy (``dataset.py`` maps VOC's 1-based inclusive
``xmin..xmax`` to ``[xmin - 1, xmax]``), and IoU uses plain areas. That equals the devkit's "+1" IoU on the
original annotation, so numbers are comparable with published VOC results.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import average_precision_score

COCO_BACKENDS = ("pycocotools", "faster_coco_eval")


def _as_curve(
    recall: Sequence[float] | torch.Tensor, precision: Sequence[float] | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    recall_array = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision_array = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall_array.shape != precision_array.shape:
        raise ValueError(
            f"recall and precision must have the same length, got {recall_array.shape} and "
            f"{precision_array.shape}"
        )
    return recall_array, precision_array


def voc_ap_11point(
    recall: Sequence[float] | torch.Tensor, precision: Sequence[float] | torch.Tensor
) -> float:
    """VOC2007 AP: mean over t in {0, 0.1, ..., 1} of the highest precision at recall >= t (0 if none)."""
    recall_array, precision_array = _as_curve(recall, precision)
    total = 0.0
    # k / 10 rather than k * 0.1: 3 * 0.1 > 0.3 in floating point and would miss a recall of exactly 3/10.
    for level in np.arange(11) / 10:
        reached = precision_array[recall_array >= level]
        total += float(reached.max()) if reached.size else 0.0
    return total / 11


def voc_ap_area(recall: Sequence[float] | torch.Tensor, precision: Sequence[float] | torch.Tensor) -> float:
    """VOC2010+ AP: area under the precision envelope (precision made non-increasing in recall)."""
    recall_array, precision_array = _as_curve(recall, precision)
    recall_steps = np.concatenate([[0.0], recall_array, [1.0]])
    envelope = np.maximum.accumulate(np.concatenate([[0.0], precision_array, [0.0]])[::-1])[::-1]
    changed = np.flatnonzero(recall_steps[1:] != recall_steps[:-1]) + 1
    return float(np.sum((recall_steps[changed] - recall_steps[changed - 1]) * envelope[changed]))


def _ranked_curve(
    scores: np.ndarray, is_true: np.ndarray, is_false: np.ndarray, num_positives: int
) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection in descending score order (ties keep input order)."""
    order = np.argsort(-scores, kind="stable")
    true_positives = np.cumsum(is_true[order])
    false_positives = np.cumsum(is_false[order])
    recall = true_positives / num_positives
    # A leading ignored detection has neither; its 0/0 precision is taken as 0, which no AP rule ever picks.
    precision = true_positives / np.maximum(true_positives + false_positives, np.finfo(np.float64).eps)
    return recall, precision


def classification_map(
    scores: torch.Tensor,
    targets: torch.Tensor,
    ignore: torch.Tensor | None = None,
    use_07_metric: bool = False,
) -> tuple[float, list[float]]:
    """Multi-label mAP over the classes (columns) with a positive; per-class AP is NaN for the others.

    ``targets`` is (N, C) in {0, 1}; ``ignore`` an optional bool (N, C) mask of entries to drop, e.g. the
    ``difficult_only`` flags of ``VOCClassification`` (VOC's "0" label). A mask rather than a -1 code because
    VOC's files use -1 for negatives while torchmetrics uses it for "ignore". ``use_07_metric=False`` gives
    scikit-learn's uninterpolated AP (later benchmarks; torchmetrics' ``MultilabelAveragePrecision`` agrees,
    see the tests); True the VOC2007 devkit's 11-point AP. scikit-learn rather than torchmetrics because
    torchmetrics squashes scores outside [0, 1] with a sigmoid, which in float32 ties large SVM margins.
    """
    scores = torch.as_tensor(scores).detach().cpu().double()
    targets = torch.as_tensor(targets).detach().cpu()
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores and targets must both be (N, C), got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    if not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError("targets must contain only 0 and 1; pass difficult/ignored entries through `ignore`")
    ignore = (
        torch.zeros_like(targets, dtype=torch.bool)
        if ignore is None
        else torch.as_tensor(ignore).cpu().bool()
    )
    if ignore.shape != targets.shape:
        raise ValueError(
            f"ignore must have the targets' shape {tuple(targets.shape)}, got {tuple(ignore.shape)}"
        )

    per_class = [math.nan] * targets.shape[1]
    for column in range(targets.shape[1]):
        kept = ~ignore[:, column]
        column_labels = targets[kept, column].numpy()
        column_scores = scores[kept, column].numpy()
        if not column_labels.any():
            continue
        if use_07_metric:
            recall, precision = _ranked_curve(
                column_scores, column_labels == 1, column_labels == 0, int(column_labels.sum())
            )
            per_class[column] = voc_ap_11point(recall, precision)
        else:
            per_class[column] = float(average_precision_score(column_labels, column_scores))
    with_positives = [value for value in per_class if not math.isnan(value)]
    if not with_positives:
        raise ValueError("no class has a positive (non-ignored) example; mAP is undefined")
    return float(np.mean(with_positives)), per_class


def _pairwise_iou(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    top_left = np.maximum(boxes[:, None, :2], others[None, :, :2])
    bottom_right = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    other_area = np.prod(others[:, 2:] - others[:, :2], axis=1)
    return intersection / (area[:, None] + other_area[None, :] - intersection)


def _field(
    entry: Mapping[str, torch.Tensor], key: str, where: str, shape_tail: tuple[int, ...]
) -> np.ndarray:
    if key not in entry:
        raise ValueError(f"{where} has no {key!r} entry; keys present: {sorted(entry)}")
    value = torch.as_tensor(entry[key]).detach().cpu().numpy()
    if value.ndim != 1 + len(shape_tail) or value.shape[1:] != shape_tail:
        raise ValueError(
            f"{where}[{key!r}] must have shape (N, {', '.join(map(str, shape_tail))}), got {value.shape}"
        )
    return value


def _unpack_detection_inputs(
    predictions: Sequence[Mapping[str, torch.Tensor]], ground_truths: Sequence[Mapping[str, torch.Tensor]]
) -> tuple[list[tuple[np.ndarray, ...]], list[tuple[np.ndarray, ...]]]:
    if len(predictions) != len(ground_truths):
        raise ValueError(
            f"need one prediction per image: {len(predictions)} predictions, {len(ground_truths)} images"
        )
    unpacked_predictions, unpacked_truths = [], []
    for index, (prediction, truth) in enumerate(zip(predictions, ground_truths, strict=True)):
        boxes = _field(prediction, "boxes", f"predictions[{index}]", (4,)).astype(np.float64)
        scores = _field(prediction, "scores", f"predictions[{index}]", ())
        labels = _field(prediction, "labels", f"predictions[{index}]", ())
        if not (len(boxes) == len(scores) == len(labels)):
            raise ValueError(f"predictions[{index}]: boxes, scores and labels differ in length")
        unpacked_predictions.append((boxes, scores.astype(np.float64), labels.astype(np.int64)))
        truth_boxes = _field(truth, "boxes", f"ground_truths[{index}]", (4,)).astype(np.float64)
        truth_labels = _field(truth, "labels", f"ground_truths[{index}]", ())
        if "difficult" in truth:
            difficult = _field(truth, "difficult", f"ground_truths[{index}]", ()).astype(bool)
        else:
            difficult = np.zeros(len(truth_labels), dtype=bool)
        if not (len(truth_boxes) == len(truth_labels) == len(difficult)):
            raise ValueError(f"ground_truths[{index}]: boxes, labels and difficult differ in length")
        unpacked_truths.append((truth_boxes, truth_labels.astype(np.int64), difficult))
    return unpacked_predictions, unpacked_truths


def _match_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    truth_boxes: np.ndarray,
    truth_difficult: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """True/false-positive flags of one image's detections of one class (devkit rule, see module docstring).

    Claims on ground truth only interact within an image, so matching per image in score order gives the same
    flags as the devkit's single pass over the globally sorted list.
    """
    is_true = np.zeros(len(boxes), dtype=bool)
    is_false = np.ones(len(boxes), dtype=bool)
    if len(truth_boxes) == 0:
        return is_true, is_false
    overlaps = _pairwise_iou(boxes, truth_boxes)
    claimed = np.zeros(len(truth_boxes), dtype=bool)
    for detection in np.argsort(-scores, kind="stable"):
        best = int(np.argmax(overlaps[detection]))
        if overlaps[detection, best] < iou_threshold:
            continue
        if truth_difficult[best]:
            is_false[detection] = False
        elif not claimed[best]:
            claimed[best] = True
            is_true[detection], is_false[detection] = True, False
    return is_true, is_false


def detection_map(
    predictions: Sequence[Mapping[str, torch.Tensor]],
    ground_truths: Sequence[Mapping[str, torch.Tensor]],
    iou_threshold: float = 0.5,
    use_07_metric: bool = True,
) -> tuple[float, dict[int, float]]:
    """VOC devkit detection mAP and per-class AP, keyed by label id.

    ``predictions[i]``: {"boxes" (K, 4) xyxy, "scores" (K,), "labels" (K,)} for image i; ``ground_truths[i]``:
    {"boxes" (G, 4), "labels" (G,), optional "difficult" (G,) bool} (what ``VOCDetectionDataset`` yields).
    Classes are those with at least one non-difficult ground-truth box; detections of other labels are not
    scored. ``use_07_metric``: 11-point AP (VOC2007 test, the paper's protocol), else the all-point area
    (VOC2010+).
    """
    unpacked_predictions, unpacked_truths = _unpack_detection_inputs(predictions, ground_truths)
    classes = sorted({int(label) for _, labels, difficult in unpacked_truths for label in labels[~difficult]})
    if not classes:
        raise ValueError("ground_truths hold no non-difficult box; detection mAP is undefined")
    average_precision = voc_ap_11point if use_07_metric else voc_ap_area
    per_class: dict[int, float] = {}
    for label in classes:
        scores, is_true, is_false = [], [], []
        num_positives = 0
        for (boxes, image_scores, labels), (truth_boxes, truth_labels, difficult) in zip(
            unpacked_predictions, unpacked_truths, strict=True
        ):
            of_class, truth_of_class = labels == label, truth_labels == label
            num_positives += int((~difficult[truth_of_class]).sum())
            flags = _match_image(
                boxes[of_class],
                image_scores[of_class],
                truth_boxes[truth_of_class],
                difficult[truth_of_class],
                iou_threshold,
            )
            scores.append(image_scores[of_class])
            is_true.append(flags[0])
            is_false.append(flags[1])
        recall, precision = _ranked_curve(
            np.concatenate(scores), np.concatenate(is_true), np.concatenate(is_false), num_positives
        )
        per_class[label] = average_precision(recall, precision)
    return float(np.mean(list(per_class.values()))), per_class


def torchmetrics_detection_map(
    predictions: Sequence[Mapping[str, torch.Tensor]],
    ground_truths: Sequence[Mapping[str, torch.Tensor]],
    iou_threshold: float = 0.5,
) -> tuple[float, dict[int, float]]:
    """COCO-style AP at one IoU threshold (101-point) via torchmetrics' ``MeanAveragePrecision``.

    Difficult boxes are passed as COCO "iscrowd", which likewise neither count as positives nor penalise
    detections. Needs a COCO backend: ``pycocotools`` or ``faster_coco_eval``.
    """
    backend = next((name for name in COCO_BACKENDS if importlib.util.find_spec(name) is not None), None)
    if backend is None:
        raise ModuleNotFoundError(
            "torchmetrics_detection_map needs pycocotools or faster_coco_eval (the optional coco extra: pip install -e '.[coco]'); "
            "neither is installed"
        )
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(
        box_format="xyxy",
        iou_type="bbox",
        iou_thresholds=[iou_threshold],
        class_metrics=True,
        backend=backend,
    )
    targets = [
        {
            "boxes": torch.as_tensor(truth["boxes"], dtype=torch.float32),
            "labels": torch.as_tensor(truth["labels"], dtype=torch.int64),
            "iscrowd": torch.as_tensor(
                truth.get("difficult", torch.zeros(len(truth["labels"]), dtype=torch.bool)), dtype=torch.int64
            ),
        }
        for truth in ground_truths
    ]
    preds = [
        {
            "boxes": torch.as_tensor(prediction["boxes"], dtype=torch.float32),
            "scores": torch.as_tensor(prediction["scores"], dtype=torch.float32),
            "labels": torch.as_tensor(prediction["labels"], dtype=torch.int64),
        }
        for prediction in predictions
    ]
    metric.update(preds, targets)
    result = metric.compute()
    # torchmetrics reports -1 for classes without a non-crowd box; leave them out, as detection_map does.
    per_class = {
        int(label): float(value)
        for label, value in zip(
            result["classes"].reshape(-1), result["map_per_class"].reshape(-1), strict=True
        )
        if value >= 0
    }
    return float(result["map"]), per_class
