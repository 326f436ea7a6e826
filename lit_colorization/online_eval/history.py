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

from lit_colorization.layer_colours import depth_key, layer_colour
from lit_colorization.stats import PERCENT, wilson_interval
from lit_colorization.store.atomic import write_text
from lit_colorization.store.images import save_figure

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


KIND_STYLES = {"online": "-", "knn": "--"}


def layers_of(points: Sequence[Point]) -> list[str]:
    """The layers the points cover, in depth order."""
    seen = list(dict.fromkeys(point.layer for point in points))
    return sorted(seen, key=lambda layer: (depth_key(layer), seen.index(layer)))


def plot(points: Sequence[Point], path: Path, num_classes: int | None = None) -> Path:
    """Small multiples: one panel per layer, top-1 over steps of the online probe (solid) and kNN (dashed), each with
    its 95% Wilson band, the chance line (1 / ``num_classes``) when known; every panel on the same axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grouped = series(points)
    layers = layers_of(points) or ["(none)"]
    columns = min(4, len(layers))
    rows = -(-len(layers) // columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.4 * columns, 2.8 * rows + 0.6), squeeze=False, sharex=True, sharey=True
    )
    for axis in axes.flat[len(layers) :]:
        axis.set_visible(False)
    totals = sorted({point.total for point in points})
    for axis, layer in zip(axes.flat, layers, strict=False):
        colour = layer_colour(layer)
        for kind, style in KIND_STYLES.items():
            metric_points = grouped.get(f"{kind}/{layer}", [])
            if not metric_points:
                continue
            steps = [point.step for point in metric_points]
            axis.plot(
                steps, [point.top1 for point in metric_points], style, marker="o", markersize=3,
                color=colour, label=KINDS[kind],
            )  # fmt: skip
            lows, highs = zip(*(point.interval for point in metric_points), strict=True)
            axis.fill_between(steps, lows, highs, color=colour, alpha=0.12)
        if num_classes:
            axis.axhline(PERCENT / num_classes, color="0.4", linewidth=1, linestyle=":", label="chance")
        axis.set_title(layer, color=colour, fontsize=10)
        axis.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set_xlabel("pretraining step")
    for axis in axes[:, 0]:
        axis.set_ylabel("top-1 (%)")
    from matplotlib.lines import Line2D

    key = [
        Line2D([], [], color="0.2", linestyle=style, label=KINDS[kind]) for kind, style in KIND_STYLES.items()
    ]
    key += [Line2D([], [], color="0.4", linestyle=":", label="chance")] if num_classes else []
    figure.legend(handles=key, loc="upper right", fontsize=8, ncol=3)
    n = f", n={totals[-1]}" if totals else ""
    figure.suptitle(f"Online evaluation per layer (bands: 95% Wilson{n})", x=0.02, ha="left", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return save_figure(figure, path)
