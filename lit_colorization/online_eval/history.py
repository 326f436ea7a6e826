"""The online evaluation's record of a run: every validation's correct counts per metric, as JSON, a PNG and text.

A point is ``{"step", "metric", "correct", "total"}`` with ``metric`` ``online/<layer>`` (the online linear
probe) or ``knn/<layer>``; top-1 and its 95% Wilson interval follow from the counts, so small validation sets
(the embedded photos' few dozen crops) show how far apart two points must be to differ.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lit_colorization.stats import PERCENT, wilson_interval
from lit_colorization.store.atomic import atomic_open, write_text

HISTORY_FILE = "online_eval.json"
PLOT_FILE = "online_eval.png"
KINDS = {"online": "online linear probe", "knn": "kNN"}


@dataclass(frozen=True)
class Point:
    step: int
    metric: str  # "online/<layer>" or "knn/<layer>"
    correct: int
    total: int

    @property
    def kind(self) -> str:
        return self.metric.split("/", 1)[0]

    @property
    def layer(self) -> str:
        return self.metric.split("/", 1)[1]

    @property
    def top1(self) -> float:
        return PERCENT * self.correct / self.total

    @property
    def interval(self) -> tuple[float, float]:
        low, high = wilson_interval(self.correct, self.total)
        return PERCENT * low, PERCENT * high


def series(points: Sequence[Point]) -> dict[str, list[Point]]:
    """Points by metric, in step order; a later point of the same step (a rerun validation) replaces an earlier one."""
    latest: dict[tuple[str, int], Point] = {}
    for point in points:
        latest[(point.metric, point.step)] = point
    grouped: dict[str, list[Point]] = {}
    for (metric, _), point in sorted(latest.items(), key=lambda item: (item[0][0], item[0][1])):
        grouped.setdefault(metric, []).append(point)
    return grouped


def write_history(points: Sequence[Point], path: Path) -> Path:
    write_text(path, json.dumps([vars(point) for point in points], indent=1) + "\n")
    return path


def read_history(path: Path) -> list[Point]:
    return [Point(**row) for row in json.loads(Path(path).read_text())]


def format_table(points: Sequence[Point]) -> list[str]:
    """One line per metric and step: top-1 (%) with its 95% Wilson interval and the counts behind it."""
    lines = [f"  {'metric':<16} {'step':>7} {'top-1':>7}  95% interval      correct/total"]
    for metric, metric_points in series(points).items():
        for point in metric_points:
            low, high = point.interval
            lines.append(
                f"  {metric:<16} {point.step:>7d} {point.top1:>6.1f}%  [{low:5.1f}, {high:5.1f}]   "
                f"{point.correct}/{point.total}"
            )
    return lines


def plot(points: Sequence[Point], path: Path) -> Path:
    """Top-1 per layer over steps, one panel per kind (online probe, kNN), each line with its Wilson band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = series(points)
    kinds = [kind for kind in KINDS if any(metric.startswith(f"{kind}/") for metric in grouped)]
    figure, axes = plt.subplots(1, max(1, len(kinds)), figsize=(6 * max(1, len(kinds)), 4.2), squeeze=False)
    for axis, kind in zip(axes[0], kinds, strict=False):
        for metric, metric_points in grouped.items():
            if not metric.startswith(f"{kind}/"):
                continue
            steps = [point.step for point in metric_points]
            (line,) = axis.plot(
                steps, [point.top1 for point in metric_points], marker="o", label=metric_points[0].layer
            )
            lows, highs = zip(*(point.interval for point in metric_points), strict=True)
            axis.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.12)
        totals = sorted({point.total for metric_points in grouped.values() for point in metric_points})
        axis.set_title(f"{KINDS[kind]} top-1 per layer (bands: 95% Wilson, n={totals[-1]})")
        axis.set_xlabel("pretraining step")
        axis.set_ylabel("top-1 accuracy (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    with atomic_open(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=110)
    plt.close(figure)
    return path
