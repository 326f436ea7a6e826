"""The results rows: ground truth, gray, each checkpoint at its main T, and the temperature sweep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lit_colorization.evaluation.checkpoints import EvaluatedCheckpoint
from lit_colorization.evaluation.run import Collected
from lit_colorization.evaluation.scoring import PERCENT, semantic_score, summarize_quality
from lit_colorization.evaluation.validation_set import EvalSet
from lit_colorization.store.results import SCHEMA

TASK = "eval-color"
SWEEP_TASK = "eval-color-sweep"
GROUND_TRUTH = "ground truth"
GRAY = "gray (ab = 0)"


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def build_rows(
    checkpoints: Sequence[EvaluatedCheckpoint],
    collected: Collected,
    eval_set: EvalSet,
    basis: str | None,
    report_dir: Path,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(main rows: ground truth, gray, each checkpoint at its main T; sweep rows: each checkpoint per T)."""
    truth = collected.truth
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    true_colorfulness = truth.column("colorfulness").mean().item()
    common = {
        "schema": SCHEMA,
        "time": now,
        "dataset": eval_set.description,
        "subset": eval_set.subset,
        "n_images": int(truth.column("position").numel()),
        "n_color_images": int(truth.column("scored").sum()),
        "report": str(report_dir),
    }
    top1_truth = semantic_score(truth, truth, basis)
    top1_gray = semantic_score(collected.gray, truth, basis)
    semantic = {"top1_basis": basis, "top1_ground_truth": _round(top1_truth), "top1_gray": _round(top1_gray)}
    first = checkpoints[0]

    def quality_row(
        method: str,
        ckpt: str | None,
        temperature: float | None,
        quality: dict,
        top1: float | None,
        prior_of: EvaluatedCheckpoint | None,
        seconds: float | None,
    ) -> dict[str, Any]:
        return {
            "task": TASK,
            **common,
            "method": method,
            "ckpt": ckpt,
            "temperature": temperature,
            **{key: _round(value) for key, value in quality.items()},
            "rebalance_prior": None if prior_of is None or prior_of.targets is None else prior_of.path,
            "rebalance_lam": None if prior_of is None or prior_of.targets is None else prior_of.lam,
            "colorfulness_true": _round(true_colorfulness),
            "colorfulness_gap": _round(quality["colorfulness"] - true_colorfulness),
            "top1": _round(top1),
            **semantic,
            "seconds": _round(seconds, 2),
        }

    has_prior = first.targets is not None
    truth_quality = {
        "auc": PERCENT,
        "auc_rebal": PERCENT if has_prior else None,
        "psnr": None,
        "ssim": 1.0,
        "colorfulness": true_colorfulness,
    }
    rows = [
        quality_row(GROUND_TRUTH, None, None, truth_quality, top1_truth, first, None),
        quality_row(GRAY, None, None, summarize_quality(collected.gray), top1_gray, first, None),
    ]
    sweep_rows = []
    for checkpoint in checkpoints:
        main = collected.main(checkpoint)
        rows.append(
            quality_row(
                checkpoint.label,
                checkpoint.path,
                checkpoint.main_temperature,
                summarize_quality(main),
                semantic_score(main, truth, basis),
                checkpoint,
                checkpoint.seconds,
            )
        )
        if len(checkpoint.temperatures) < 2:
            continue
        for temperature in sorted(checkpoint.temperatures):
            quality = summarize_quality(collected.methods[(checkpoint.label, temperature)])
            sweep_rows.append(
                {
                    "task": SWEEP_TASK,
                    **common,
                    "method": checkpoint.label,
                    "ckpt": checkpoint.path,
                    "temperature": temperature,
                    "auc": _round(quality["auc"]),
                    "auc_rebal": _round(quality["auc_rebal"]),
                    "colorfulness": _round(quality["colorfulness"]),
                    "colorfulness_true": _round(true_colorfulness),
                    "colorfulness_gap": _round(quality["colorfulness"] - true_colorfulness),
                }
            )
    return rows, sweep_rows
