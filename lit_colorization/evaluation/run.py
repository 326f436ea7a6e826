"""The data pass: one streamed sweep over the validation set, scoring the ground truth, the gray baseline
and every checkpoint at every temperature; it keeps per-image scalars only and writes the study pairs."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lit_colorization.color import nongray_mask, uint8_to_lab
from lit_colorization.color.metrics import colorfulness
from lit_colorization.evaluation.checkpoints import EvaluatedCheckpoint, predict_ab
from lit_colorization.evaluation.classifier import ImageNetClassifier
from lit_colorization.evaluation.eval_config import EvalColorConfig
from lit_colorization.evaluation.scoring import PerImageColumns, score_colorization
from lit_colorization.evaluation.study_folder import study_positions, write_study_pair
from lit_colorization.evaluation.validation_set import EvalSet, batches


@dataclass
class Collected:
    truth: PerImageColumns = field(default_factory=PerImageColumns)
    gray: PerImageColumns = field(default_factory=PerImageColumns)
    methods: dict[tuple[str, float | None], PerImageColumns] = field(default_factory=dict)
    skipped: int = 0
    study_pairs: int = 0

    def main(self, checkpoint: EvaluatedCheckpoint) -> PerImageColumns:
        """The columns of ``checkpoint`` at its main temperature."""
        return self.methods[(checkpoint.label, checkpoint.main_temperature)]


@torch.inference_mode()
def collect(
    checkpoints: Sequence[EvaluatedCheckpoint],
    eval_set: EvalSet,
    classifier: ImageNetClassifier | None,
    config: EvalColorConfig,
    device: torch.device,
    study_dir: Path,
) -> Collected:
    """One streamed pass: per-image scores of the ground truth, the gray baseline and every checkpoint and T."""
    in_study = study_positions(eval_set.positions, config.study_images)
    collected = Collected()
    first = checkpoints[0]
    for batch in batches(eval_set, config.data.batch_size, config.data.num_workers):
        collected.skipped += int(batch["skipped"])
        if batch["rgb"].shape[0] == 0:
            continue
        rgb = batch["rgb"].to(device)
        lab = uint8_to_lab(rgb)
        lightness, true_ab = lab[:, :1], lab[:, 1:]
        true_rgb = rgb.float() / 255
        size = tuple(true_ab.shape[-2:])
        scored = nongray_mask(true_ab, config.gray_threshold).cpu()
        truth = {"position": batch["position"], "label": batch["label"], "scored": scored}
        truth["colorfulness"] = colorfulness(true_rgb).double().cpu()
        if classifier is not None:
            truth["prediction"] = classifier.predict(true_rgb).cpu()
        collected.truth.append(truth)

        pixel_weights = [checkpoint.pixel_weights(true_ab) for checkpoint in checkpoints]
        gray, gray_rgb = score_colorization(
            lightness,
            torch.zeros_like(true_ab),
            true_ab,
            true_rgb,
            scored,
            pixel_weights[0],
            with_fidelity=True,
        )
        if classifier is not None:
            gray["prediction"] = classifier.predict(gray_rgb).cpu()
        collected.gray.append(gray)

        for checkpoint, weights in zip(checkpoints, pixel_weights, strict=True):
            start = time.perf_counter()
            output = checkpoint.colorizer.network(lightness)
            for temperature in checkpoint.temperatures:
                is_main = temperature == checkpoint.main_temperature
                pred_ab = predict_ab(checkpoint, output, temperature, size)
                scores, pred_rgb = score_colorization(
                    lightness, pred_ab, true_ab, true_rgb, scored, weights, with_fidelity=is_main
                )
                if is_main and classifier is not None:
                    scores["prediction"] = classifier.predict(pred_rgb).cpu()
                collected.methods.setdefault((checkpoint.label, temperature), PerImageColumns()).append(
                    scores
                )
                if is_main and checkpoint is first:
                    for row, position in enumerate(batch["position"].tolist()):
                        if position in in_study and bool(scored[row]):
                            write_study_pair(study_dir, eval_set.names[position], rgb[row], pred_rgb[row])
                            collected.study_pairs += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            checkpoint.seconds += time.perf_counter() - start
    if "position" not in collected.truth:
        raise ValueError(f"no readable images in the validation set {eval_set.description}")
    return collected
