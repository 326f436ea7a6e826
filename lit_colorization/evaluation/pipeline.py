"""The whole evaluation from a config: checkpoints and images in, rows and a report folder out."""

from __future__ import annotations

import logging
from typing import Any

from lit_colorization.evaluation.checkpoints import load_checkpoints
from lit_colorization.evaluation.classifier import load_classifier
from lit_colorization.evaluation.eval_config import EvalColorConfig, resolve_device
from lit_colorization.evaluation.report import Evaluation, report_directory, write_report
from lit_colorization.evaluation.rows import build_rows
from lit_colorization.evaluation.run import collect
from lit_colorization.evaluation.scoring import semantic_basis
from lit_colorization.evaluation.tables import semantic_note
from lit_colorization.evaluation.validation_set import select_positions, validation_set

log = logging.getLogger(__name__)


def evaluate_colorization(config: EvalColorConfig) -> list[dict[str, Any]]:
    """Run the evaluation ``config`` describes; returns the main rows (the sweep rows are appended too)."""
    device = resolve_device(config.device)
    report_dir = report_directory(config)
    checkpoints = load_checkpoints(config, device)
    eval_set = select_positions(validation_set(config.data), config.subset, config.data.max_val_images)
    classifier = None
    if config.classifier_weights is not None:
        classifier = load_classifier(
            config.classifier, config.classifier_weights, device, config.classifier_input_size
        )
    basis = semantic_basis(eval_set.classes, classifier)
    semantic = semantic_note(basis, config.classifier)
    if classifier is None:
        print(f"semantic interpretability {semantic}")

    log.info(
        "evaluating %s on %d images of %s",
        [c.label for c in checkpoints],
        len(eval_set.positions),
        eval_set.description,
    )
    collected = collect(checkpoints, eval_set, classifier, config, device, report_dir / "study")
    rows, sweep_rows = build_rows(checkpoints, collected, eval_set, basis, report_dir)
    evaluation = Evaluation(eval_set, checkpoints, collected, rows, sweep_rows, semantic)
    write_report(config, report_dir, evaluation, device)
    return rows
