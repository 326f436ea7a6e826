"""The Pascal VOC devkit's AP rules transcribed in exact fractions (VOCevaldet.m, VOCevalcls.m): the reference
the evaluation tests and the end-to-end VOC tests recompute their numbers with."""

from fractions import Fraction


def eleven_point_ap(counts: list[tuple[int, int]], positives: int) -> float:
    """VOC2007 AP from the (true, false) positive counts after each ranked detection, in exact integers.

    For each level t = k / 10, the best precision tp / (tp + fp) among the ranks whose recall tp / positives is
    at least t (10 tp >= k positives: no float can miss a recall of exactly 3/10), or 0 if no rank reaches t.
    """
    total = Fraction(0)
    for level in range(11):
        reached = [Fraction(tp, tp + fp) for tp, fp in counts if tp + fp > 0 and 10 * tp >= level * positives]
        total += max(reached, default=Fraction(0))
    return float(total / 11)


def area_ap(counts: list[tuple[int, int]], positives: int) -> float:
    """VOC2010+ AP: each true positive adds 1 / positives of recall at the best precision of any rank from it on."""
    total = Fraction(0)
    for rank, (tp, _) in enumerate(counts):
        if tp > (counts[rank - 1][0] if rank else 0):
            total += max(Fraction(t, t + f) for t, f in counts[rank:]) / positives
    return float(total)


def devkit_reference_ap(predictions: list, ground_truths: list, label: int) -> tuple[float, float]:
    """A direct transcription of VOCevaldet.m's single pass over all detections, sorted globally (stable):
    the 11-point and the area AP of one class."""
    entries = [
        (float(score), image, box.tolist())
        for image, p in enumerate(predictions)
        for box, score, lab in zip(p["boxes"], p["scores"], p["labels"], strict=True)
        if int(lab) == label
    ]
    entries.sort(key=lambda entry: -entry[0])
    claimed = [[False] * len(t["labels"]) for t in ground_truths]
    positives = sum(int(((t["labels"] == label) & ~t["difficult"]).sum()) for t in ground_truths)
    true_positives, false_positives, counts = 0, 0, []
    for _, image, box in entries:
        truth = ground_truths[image]
        best_iou, best = -1.0, -1
        for index, (truth_box, truth_label) in enumerate(
            zip(truth["boxes"].tolist(), truth["labels"], strict=True)
        ):
            if int(truth_label) != label:
                continue
            width = min(box[2], truth_box[2]) - max(box[0], truth_box[0])
            height = min(box[3], truth_box[3]) - max(box[1], truth_box[1])
            inter = max(width, 0) * max(height, 0)
            area = (box[2] - box[0]) * (box[3] - box[1]) + (truth_box[2] - truth_box[0]) * (
                truth_box[3] - truth_box[1]
            )
            if inter / (area - inter) > best_iou:
                best_iou, best = inter / (area - inter), index
        if best_iou >= 0.5 and bool(truth["difficult"][best]):
            pass
        elif best_iou >= 0.5 and not claimed[image][best]:
            claimed[image][best] = True
            true_positives += 1
        else:
            false_positives += 1
        counts.append((true_positives, false_positives))
    return eleven_point_ap(counts, positives), area_ap(counts, positives)


def ranked_counts(scores, positive) -> list[tuple[int, int]]:
    """(true, false) positive counts after each entry, ranked by descending score (stable)."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    counts, tp, fp = [], 0, 0
    for i in order:
        tp, fp = (tp + 1, fp) if positive[i] else (tp, fp + 1)
        counts.append((tp, fp))
    return counts


def classification_ap_percent(scores, targets, ignore, ap_metric: str = "11pt") -> list[float | None]:
    """Per-class AP in percent of a VOC classification test set, by the devkit's rules (VOCevalcls.m): entries
    of difficult-only images left out; None for a class without a positive image. ``ap_metric``: "11pt" (VOC2007),
    "area-envelope" (VOC2010+, as fair_ssb and VISSL score SVMs), "area" (scikit-learn's average precision)."""
    from sklearn.metrics import average_precision_score

    result = []
    for column in range(scores.shape[1]):
        kept = ~ignore[:, column].astype(bool)
        positive = targets[kept, column] == 1
        if not positive.any():
            result.append(None)
            continue
        counts = ranked_counts(scores[kept, column], positive)
        if ap_metric == "area":
            ap = average_precision_score(positive.astype(int), scores[kept, column])
        elif ap_metric == "area-envelope":
            ap = area_ap(counts, int(positive.sum()))
        else:
            assert ap_metric == "11pt", ap_metric
            ap = eleven_point_ap(counts, int(positive.sum()))
        result.append(100.0 * ap)
    return result
