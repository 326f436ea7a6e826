"""The report's pictures: example grids (gray | each checkpoint | ground truth) and the sweep plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from lit_colorization.color import uint8_to_lab
from lit_colorization.color.pictures import colorization_grid
from lit_colorization.evaluation.checkpoints import EvaluatedCheckpoint, predict_ab
from lit_colorization.evaluation.rows import GRAY, GROUND_TRUTH
from lit_colorization.evaluation.validation_set import EvalSet
from lit_colorization.store.images import save_figure


@torch.inference_mode()
def example_grid(
    positions: Sequence[int],
    eval_set: EvalSet,
    checkpoints: Sequence[EvaluatedCheckpoint],
    device: torch.device,
) -> np.ndarray:
    """gray | each checkpoint at its main temperature | ground truth, one row per image at ``positions``."""
    rgb = torch.stack([eval_set.dataset[position][0] for position in positions]).to(device)
    lab = uint8_to_lab(rgb)
    lightness, true_ab = lab[:, :1], lab[:, 1:]
    size = tuple(true_ab.shape[-2:])
    predictions = [
        predict_ab(checkpoint, checkpoint.colorizer.network(lightness), checkpoint.main_temperature, size)
        for checkpoint in checkpoints
    ]
    return colorization_grid(lightness, predictions, true_ab)


def plot_sweep(sweep_rows: Sequence[dict[str, Any]], gray_row: dict[str, Any], path: Path) -> Path:
    """AuC, rebalanced AuC and colourfulness against T, one line per checkpoint; gray and ground truth dashed."""
    figure = Figure(figsize=(13, 4), layout="constrained")
    axes = figure.subplots(1, 3)
    panels = (("auc", "AuC (%)"), ("auc_rebal", "rebalanced AuC (%)"), ("colorfulness", "colourfulness"))
    for axis, (key, title) in zip(axes, panels, strict=True):
        for method in dict.fromkeys(row["method"] for row in sweep_rows):
            points = [(row["temperature"], row[key]) for row in sweep_rows if row["method"] == method]
            if all(value is not None for _, value in points):
                axis.plot(*zip(*points, strict=True), marker="o", label=method)
        if gray_row[key] is not None:
            axis.axhline(gray_row[key], linestyle="--", color="gray", label=GRAY)
        if key == "colorfulness":
            axis.axhline(gray_row["colorfulness_true"], linestyle="--", color="black", label=GROUND_TRUTH)
        axis.set_xscale("log")
        axis.set_xlabel("annealed-mean temperature T")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    axes[-1].legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(figure, path, dpi=100)
