"""The report of an evaluation: its folder (table.md, example grids, sweep plot, per-image CSV, results.json,
config.yaml), the rows appended to the results store, and the logger (W&B: job_type eval-color)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf

from lit_colorization.config.loading import ConfigError, to_container
from lit_colorization.evaluation.checkpoints import EvaluatedCheckpoint
from lit_colorization.evaluation.eval_config import EvalColorConfig
from lit_colorization.evaluation.figures import example_grid, plot_sweep
from lit_colorization.evaluation.rows import GRAY, GROUND_TRUTH, TASK
from lit_colorization.evaluation.run import Collected
from lit_colorization.evaluation.scoring import rank_examples
from lit_colorization.evaluation.tables import report_text
from lit_colorization.evaluation.validation_set import EvalSet
from lit_colorization.store.atomic import write_text
from lit_colorization.store.images import save_png
from lit_colorization.store.loggers import build_logger
from lit_colorization.store.results import publish_results

METRIC_KEYS = {GROUND_TRUTH: "ground_truth", GRAY: "gray"}
TABLE_KEY = "eval_color/table"  # the W&B table of every row (transfer/dashboard.py shows it)
EXAMPLE_KINDS = ("best", "median", "worst")


@dataclass(frozen=True)
class Evaluation:
    """What an evaluation found, from which its report is written."""

    eval_set: EvalSet
    checkpoints: Sequence[EvaluatedCheckpoint]
    collected: Collected
    rows: list[dict[str, Any]]
    sweep_rows: list[dict[str, Any]]
    semantic: str  # what the top-1 column means, or why it is empty


def report_directory(config: EvalColorConfig) -> Path:
    """``<out_dir>/<name or a UTC timestamp>``; an existing finished report (its table.md) is an error."""
    name = config.name or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    report_dir = Path(config.out_dir) / name
    if (report_dir / "table.md").exists():
        raise ConfigError(
            f"{report_dir}: this evaluation already exists (table.md); pick another name= (or --name)"
        )
    return report_dir


def per_image_csv(evaluation: Evaluation) -> str:
    """One line per image: name, label, colour flag, true colourfulness and each method's per-image scores."""
    eval_set, collected = evaluation.eval_set, evaluation.collected
    truth = collected.truth
    methods = [("gray", collected.gray)] + [
        (checkpoint.label, collected.main(checkpoint)) for checkpoint in evaluation.checkpoints
    ]
    metrics = ("auc", "auc_rebal", "psnr", "ssim", "colorfulness")
    header = ["name", "label", "colour", "colorfulness_true"]
    values = [
        [eval_set.names[p] for p in truth.column("position").tolist()],
        [eval_set.classes[label] for label in truth.column("label").tolist()],
        truth.column("scored").tolist(),
        truth.column("colorfulness").tolist(),
    ]
    for label, columns in methods:
        for metric in metrics:
            if metric in columns:
                header.append(f"{label}:{metric}")
                values.append([None if np.isnan(v) else round(v, 6) for v in columns.column(metric).tolist()])
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(header)
    writer.writerows(zip(*values, strict=True))
    return stream.getvalue()


def draw_pictures(
    evaluation: Evaluation, report_dir: Path, num_examples: int, device: torch.device
) -> dict[str, Path]:
    """examples_{best,median,worst}.png by the first checkpoint's per-image AuC, and temperature_sweep.png."""
    checkpoints, collected = evaluation.checkpoints, evaluation.collected
    pictures: dict[str, Path] = {}
    ranking = rank_examples(collected.main(checkpoints[0]).column("auc"), num_examples)
    positions = collected.truth.column("position")
    for kind in EXAMPLE_KINDS:
        if ranking[kind]:
            chosen = [int(positions[i]) for i in ranking[kind]]
            grid = example_grid(chosen, evaluation.eval_set, checkpoints, device)
            pictures[f"examples_{kind}"] = save_png(grid, report_dir / f"examples_{kind}.png")
    if evaluation.sweep_rows:
        gray_row = evaluation.rows[1]
        path = report_dir / "temperature_sweep.png"
        pictures["temperature_sweep"] = plot_sweep(evaluation.sweep_rows, gray_row, path)
    return pictures


def log_to_logger(
    config: EvalColorConfig,
    report_dir: Path,
    rows: Sequence[dict[str, Any]],
    sweep_rows: Sequence[dict[str, Any]],
    pictures: dict[str, Path],
) -> None:
    logger = build_logger(
        config.logger, report_dir, report_dir.name, job_type=TASK, config=to_container(config)
    )
    if not logger:
        return
    metrics = {
        f"eval_color/{METRIC_KEYS.get(row['method'], row['method'])}/{key}": row[key]
        for row in rows
        for key in ("auc", "auc_rebal", "psnr", "ssim", "colorfulness", "top1")
        if row[key] is not None
    }
    logger.log_metrics(metrics, step=0)
    if isinstance(logger, WandbLogger):
        for key, table in ((TABLE_KEY, rows), ("eval_color/sweep", sweep_rows)):
            if table:
                columns = list(table[0])
                logger.log_table(key=key, columns=columns, data=[[row[c] for c in columns] for row in table])
        for key, path in pictures.items():
            logger.log_image(key=f"eval_color/{key}", images=[str(path)])
    logger.finalize("success")


def write_report(
    config: EvalColorConfig, report_dir: Path, evaluation: Evaluation, device: torch.device
) -> None:
    """Everything an evaluation leaves behind; table.md comes last: it marks a finished report."""
    rows, sweep_rows, collected = evaluation.rows, evaluation.sweep_rows, evaluation.collected
    pictures = draw_pictures(evaluation, report_dir, config.num_examples, device)
    text = report_text(rows, sweep_rows, evaluation.checkpoints, collected.skipped, evaluation.semantic)
    write_text(report_dir / "per_image.csv", per_image_csv(evaluation))
    write_text(report_dir / "config.yaml", OmegaConf.to_yaml(to_container(config)))
    stored = publish_results([*rows, *sweep_rows], report_dir / "results.json", config.results)
    log_to_logger(config, report_dir, rows, sweep_rows, pictures)
    write_text(report_dir / "table.md", text)
    print(text)
    study = (
        f"; study folder ({collected.study_pairs} pairs): {report_dir / 'study'}"
        if collected.study_pairs
        else ""
    )
    where = (
        f"appended {len(rows) + len(sweep_rows)} rows to {config.results}"
        if stored
        else "rows in results.json only"
    )
    print(f"report: {report_dir}{study}; {where}")
