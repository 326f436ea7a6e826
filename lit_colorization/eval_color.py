"""Colorization quality over a validation set, the shape of the paper's Table 1: ``make eval-color``.

``python -m lit_colorization.eval_color --ckpt A.ckpt [B.ckpt ...] [--data ROOT] [--temperatures T ...]
[--classifier vgg16 --classifier-weights vgg16.pth] [--subset FILE] [key=value ...]``

Rows: ground truth, the gray baseline (ab = 0) and every checkpoint at ``temperature``: AuC plain and rebalanced,
PSNR, SSIM, colourfulness and its gap to the ground truth, and the top-1 of a fixed ImageNet classifier (on
ImageNet class folders; otherwise its agreement with its own prediction on the ground truth). ``sweep`` adds
AuC, rebalanced AuC and colourfulness per temperature for each checkpoint.

Writes ``<out_dir>/<name>/``: table.md (also printed), results.json, per_image.csv, examples_{best,median,worst}.png
(gray | each checkpoint | ground truth, ranked by the first checkpoint's per-image AuC), temperature_sweep.png,
config.yaml, and study/real + study/colorized (the first checkpoint) for ``make turing-test STUDY=<report>/study``;
appends its rows to ``results`` (default results/colorization.jsonl) and logs them (W&B: job_type eval-color).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_colorization.atomic import atomic_open, write_text
from lit_colorization.checkpoint import read_checkpoint
from lit_colorization.classifier import (
    ImageNetClassifier,
    agreement,
    list_classifiers,
    load_classifier,
    top1_accuracy,
    uses_imagenet_labels,
)
from lit_colorization.cli import run_cli
from lit_colorization.color import nongray_mask, rebalance_weights, uint8_to_lab
from lit_colorization.colorize import Colorizer, load_colorizer
from lit_colorization.config import (
    CONFIG_DIR,
    ConfigError,
    LoggerConfig,
    TargetConfig,
    load_config,
    require,
    to_container,
)
from lit_colorization.data import DataConfig, EmbeddedValDataset, ImageFolderDataset, SyntheticColorDataset
from lit_colorization.data.config import validate_data_config
from lit_colorization.data.datamodule import evenly_spaced_indices
from lit_colorization.data.embedded import load_embedded_photos
from lit_colorization.evaluate import (
    PERCENT,
    PerImageColumns,
    format_value,
    markdown_table,
    pixel_rebalance_weights,
    rank_examples,
    score_colorization,
    summarize_quality,
)
from lit_colorization.inference import output_to_ab, upsample_ab
from lit_colorization.loggers import build_logger
from lit_colorization.metrics import colorfulness
from lit_colorization.visualize import lab_batch_to_rgb, save_png, to_uint8_image
from transfer.results import append_results

CONFIG_FILE = CONFIG_DIR / "eval_color.yaml"
TASK = "eval-color"
SWEEP_TASK = "eval-color-sweep"
GROUND_TRUTH = "ground truth"
GRAY = "gray (ab = 0)"
METRIC_KEYS = {GROUND_TRUTH: "ground_truth", GRAY: "gray"}
EXAMPLE_KINDS = ("best", "median", "worst")
DATA_KEYS = frozenset(item.name for item in fields(DataConfig))
log = logging.getLogger(__name__)


@dataclass
class EvalColorConfig:
    ckpts: list[str] = field(default_factory=list)
    temperature: float = 0.38
    sweep: list[float] = field(default_factory=list)
    subset: str | None = None
    classifier: str = "vgg16"
    classifier_weights: str | None = None
    classifier_input_size: int = 224
    rebalance_lam: float | None = None
    gray_threshold: float = 5.0
    name: str | None = None
    out_dir: str = "runs/eval-color"
    results: str = "results/colorization.jsonl"
    num_examples: int = 4
    study_images: int = 100
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# --- configuration ---------------------------------------------------------------------------------------------


def load_eval_config(overrides: Sequence[str]) -> EvalColorConfig:
    """configs/eval_color.yaml, then the first checkpoint's ``data`` section, then ``overrides``; validated."""
    config = load_config(EvalColorConfig, [CONFIG_FILE], overrides)
    if not config.ckpts:
        raise ConfigError(
            "config key 'ckpts': no checkpoint given; pass --ckpt PATH [PATH ...] (make: CKPT=)"
        )
    run_data = read_checkpoint(config.ckpts[0]).config.get("data") or {}
    inherited = [f"data.{key}={json.dumps(value)}" for key, value in run_data.items() if key in DATA_KEYS]
    config = load_config(EvalColorConfig, [CONFIG_FILE], [*inherited, *overrides])
    validate_eval_config(config)
    return config


def validate_eval_config(config: EvalColorConfig) -> None:
    require(config.temperature > 0, "temperature", "a positive number", config.temperature)
    require(all(t > 0 for t in config.sweep), "sweep", "positive temperatures", list(config.sweep))
    require(config.num_examples >= 0, "num_examples", "an integer >= 0", config.num_examples)
    require(config.study_images >= 0, "study_images", "an integer >= 0", config.study_images)
    require(
        config.rebalance_lam is None or 0 <= config.rebalance_lam <= 1,
        "rebalance_lam",
        "null or a number in [0, 1]",
        config.rebalance_lam,
    )
    require(config.gray_threshold >= 0, "gray_threshold", "a number >= 0", config.gray_threshold)
    require(
        config.classifier_input_size > 0,
        "classifier_input_size",
        "a positive integer",
        config.classifier_input_size,
    )
    require(
        config.name is None or (bool(config.name) and "/" not in config.name),
        "name",
        "a folder name without '/'",
        config.name,
    )
    require(bool(config.results), "results", "a path to a .jsonl file", config.results)
    if config.classifier not in list_classifiers():
        raise ConfigError(
            f"config key 'classifier': unknown torchvision classifier {config.classifier!r}; "
            f"expected one of {', '.join(list_classifiers())}"
        )
    for key in ("subset", "classifier_weights"):
        value = getattr(config, key)
        if value is not None and not Path(value).is_file():
            raise FileNotFoundError(f"config key '{key}': file not found: {value}")
    validate_data_config(config.data)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config key 'device': expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device': {name!r} requested but CUDA is not available")
    return device


# --- the validation set ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSet:
    dataset: Dataset  # items: (uint8 3 x S x S, label), or None for an unreadable file
    names: list[str]  # per dataset item: a flat file name stem for the study and the per-image table
    files: list[str]  # per dataset item: the relative file path (folder) or the name
    classes: list[str]
    description: str
    positions: list[int] = field(default_factory=list)  # the items evaluated, in order
    subset: str | None = None  # the file that listed them, if any


def flat_name(relative_path: str) -> str:
    """``n01440764/ILSVRC2012_val_00000293.JPEG`` -> ``n01440764__ILSVRC2012_val_00000293``."""
    return os.path.splitext(relative_path)[0].replace(os.sep, "__").replace("/", "__")


def validation_set(data: DataConfig) -> EvalSet:
    """The validation split ``data`` describes (only that split is read: no training folder is needed)."""
    if data.source == "embedded":
        photos = load_embedded_photos()
        dataset = EmbeddedValDataset(photos, data.crop_size, data.val_crops, data.resize)
        names = [f"{photo.name}_{k}" for photo in photos for k in range(data.val_crops)]
        return EvalSet(dataset, names, names, dataset.classes, "embedded")
    if data.source == "synthetic":
        dataset = SyntheticColorDataset(
            data.synthetic_val_images,
            image_size=data.synthetic_size,
            crop_size=data.crop_size,
            split="val",
            seed=data.seed,
            resize=data.resize,
        )
        names = [f"synthetic_{index:05d}" for index in range(len(dataset))]
        return EvalSet(dataset, names, names, dataset.classes, "synthetic")
    dataset = ImageFolderDataset(
        data.root,
        data.val_split,
        data.crop_size,
        data.resize,
        train=False,
        seed=data.seed,
        strict=data.strict,
    )
    files = [os.path.relpath(dataset.path(index), dataset.split_path) for index in range(len(dataset))]
    return EvalSet(
        dataset,
        [flat_name(f) for f in files],
        files,
        dataset.classes,
        str(Path(dataset.split_path).resolve()),
    )


def read_subset(path: str | Path, eval_set: EvalSet) -> list[int]:
    """Dataset positions listed in ``path``: one per line, an index or a file name ('#' starts a comment).

    A name may be the relative path, the file name, its stem, or the flat name used in reports.
    """
    aliases: dict[str, set[int]] = {}
    for position, (name, file) in enumerate(zip(eval_set.names, eval_set.files, strict=True)):
        base = os.path.basename(file)
        for alias in {name, file, base, os.path.splitext(base)[0]}:
            aliases.setdefault(alias, set()).add(position)
    positions: list[int] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.isdigit():
            position = int(entry)
            if position >= len(eval_set.names):
                raise ValueError(
                    f"{path}:{number}: index {position} is out of range: the validation set has "
                    f"{len(eval_set.names)} images (indices 0..{len(eval_set.names) - 1})"
                )
        else:
            matches = aliases.get(entry, set())
            if len(matches) != 1:
                problem = "matches no image" if not matches else f"is ambiguous ({len(matches)} images)"
                raise ValueError(
                    f"{path}:{number}: {entry!r} {problem} of the validation set {eval_set.description}"
                )
            (position,) = matches
        positions.append(position)
    if not positions:
        raise ValueError(f"{path}: lists no images (expected one index or file name per line)")
    return list(dict.fromkeys(positions))


def select_positions(eval_set: EvalSet, subset: str | None, max_images: int | None) -> EvalSet:
    positions = read_subset(subset, eval_set) if subset else list(range(len(eval_set.names)))
    if max_images is not None:
        positions = [positions[i] for i in evenly_spaced_indices(len(positions), max_images)]
    return replace(eval_set, positions=positions, subset=subset)


class _Positioned(Dataset):
    """The items at ``positions``, each tagged with its position (so names and labels survive skipped files)."""

    def __init__(self, dataset: Dataset, positions: Sequence[int]) -> None:
        self.dataset = dataset
        self.positions = list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        position = self.positions[index]
        return position, self.dataset[position]


def _collate(items: Sequence[tuple[int, Any]]) -> dict[str, Tensor]:
    kept = [(position, sample) for position, sample in items if sample is not None]
    if not kept:
        return {"rgb": torch.empty(0, 3, 1, 1, dtype=torch.uint8), "skipped": torch.tensor(len(items))}
    return {
        "position": torch.tensor([position for position, _ in kept]),
        "rgb": torch.stack([sample[0] for _, sample in kept]),
        "label": torch.tensor([int(sample[1]) for _, sample in kept]),
        "skipped": torch.tensor(len(items) - len(kept)),
    }


# --- the checkpoints -------------------------------------------------------------------------------------------


@dataclass
class EvaluatedCheckpoint:
    label: str
    path: str
    colorizer: Colorizer
    class_weights: Tensor | None  # (Q,) rebalancing weights from the checkpoint's prior; None without a prior
    lam: float | None
    temperatures: tuple[float | None, ...]  # the main temperature first; (None,) for a regression network
    seconds: float = 0.0

    @property
    def main_temperature(self) -> float | None:
        return self.temperatures[0]


def checkpoint_labels(paths: Sequence[str]) -> list[str]:
    """Short unique names: the file stem, or ``<run>/<stem>`` when stems repeat (``runs/<run>/checkpoints/x``)."""

    def run_and_stem(path: Path) -> str:
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return f"{folder.name}/{path.stem}"

    stems = [Path(path).stem for path in paths]
    labels = stems if len(set(stems)) == len(stems) else [run_and_stem(Path(path)) for path in paths]
    return [label if labels.count(label) == 1 else f"{label}#{i + 1}" for i, label in enumerate(labels)]


def load_checkpoints(config: EvalColorConfig, device: torch.device) -> list[EvaluatedCheckpoint]:
    checkpoints = []
    for label, path in zip(checkpoint_labels(config.ckpts), config.ckpts, strict=True):
        colorizer = load_colorizer(path, device=str(device))
        stored = read_checkpoint(path)
        stride = colorizer.network.output_stride
        if config.data.crop_size % stride:
            raise ConfigError(
                f"config key 'data.crop_size': expected a multiple of {path}'s output stride {stride}, "
                f"got {config.data.crop_size}"
            )
        lam = config.rebalance_lam
        if lam is None:
            lam = stored.config.get("targets", {}).get("lam", TargetConfig.lam)
        weights = None if stored.prior is None else rebalance_weights(stored.prior.float(), lam).to(device)
        temperatures = (
            (None,) if colorizer.regression else tuple(dict.fromkeys([config.temperature, *config.sweep]))
        )
        checkpoints.append(EvaluatedCheckpoint(label, path, colorizer, weights, lam, temperatures))
    return checkpoints


def predict_ab(
    checkpoint: EvaluatedCheckpoint, output: Tensor, temperature: float | None, size: tuple[int, int]
) -> Tensor:
    colorizer = checkpoint.colorizer
    # A regression network ignores the temperature; any positive value does.
    ab = output_to_ab(output, colorizer.bins, temperature or 1.0, colorizer.regression)
    return upsample_ab(ab, size)


# --- the pass over the data ------------------------------------------------------------------------------------


@dataclass
class Collected:
    truth: PerImageColumns = field(default_factory=PerImageColumns)
    gray: PerImageColumns = field(default_factory=PerImageColumns)
    methods: dict[tuple[str, float | None], PerImageColumns] = field(default_factory=dict)
    skipped: int = 0
    study_pairs: int = 0


def _write_study_pair(study_dir: Path, name: str, real: Tensor, colorized: Tensor) -> None:
    save_png(real.permute(1, 2, 0).cpu().numpy(), study_dir / "real" / f"{name}.png")
    save_png(to_uint8_image(colorized), study_dir / "colorized" / f"{name}.png")


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
    loader = DataLoader(
        _Positioned(eval_set.dataset, eval_set.positions),
        batch_size=config.data.batch_size,
        num_workers=config.data.num_workers,
        collate_fn=_collate,
    )
    study_positions = (
        {eval_set.positions[i] for i in evenly_spaced_indices(len(eval_set.positions), config.study_images)}
        if config.study_images
        else set()
    )
    collected = Collected()
    first = checkpoints[0]
    for batch in loader:
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

        pixel_weights = [
            None
            if checkpoint.class_weights is None
            else pixel_rebalance_weights(true_ab, checkpoint.colorizer.bins, checkpoint.class_weights)
            for checkpoint in checkpoints
        ]
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
                        if position in study_positions and bool(scored[row]):
                            _write_study_pair(study_dir, eval_set.names[position], rgb[row], pred_rgb[row])
                            collected.study_pairs += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            checkpoint.seconds += time.perf_counter() - start
    if "position" not in collected.truth:
        raise ValueError(f"no readable images in the validation set {eval_set.description}")
    return collected


# --- rows and tables -------------------------------------------------------------------------------------------


def semantic_basis(classes: Sequence[str], classifier: ImageNetClassifier | None) -> str | None:
    if classifier is None:
        return None
    return "imagenet-top1" if uses_imagenet_labels(classes) else "agreement-with-ground-truth"


def semantic_score(columns: PerImageColumns, truth: PerImageColumns, basis: str | None) -> float | None:
    """Top-1 (percent) of ``columns``' predictions against the ImageNet labels, or their agreement with the
    prediction on the ground truth; None without a classifier."""
    if basis is None:
        return None
    predictions = columns.column("prediction")
    if basis == "imagenet-top1":
        return PERCENT * top1_accuracy(predictions, truth.column("label"))
    return PERCENT * agreement(predictions, truth.column("prediction"))


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
            "rebalance_prior": None if prior_of is None or prior_of.class_weights is None else prior_of.path,
            "rebalance_lam": None if prior_of is None or prior_of.class_weights is None else prior_of.lam,
            "colorfulness_true": _round(true_colorfulness),
            "colorfulness_gap": _round(quality["colorfulness"] - true_colorfulness),
            "top1": _round(top1),
            **semantic,
            "seconds": _round(seconds, 2),
        }

    has_prior = first.class_weights is not None
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
        main = collected.methods[(checkpoint.label, checkpoint.main_temperature)]
        top1 = semantic_score(main, truth, basis)
        rows.append(
            quality_row(
                checkpoint.label,
                checkpoint.path,
                checkpoint.main_temperature,
                summarize_quality(main),
                top1,
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


MAIN_COLUMNS = ("method", "T", "AuC %", "AuC rebal %", "PSNR dB", "SSIM", "colourfulness", "gap", "top-1 %")
SWEEP_COLUMNS = ("method", "T", "AuC %", "AuC rebal %", "colourfulness", "gap")


def main_table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [
        [
            row["method"],
            format_value(row["temperature"]),
            format_value(row["auc"]),
            format_value(row["auc_rebal"]),
            "inf" if row["method"] == GROUND_TRUTH else format_value(row["psnr"]),
            format_value(row["ssim"], 4),
            format_value(row["colorfulness"]),
            format_value(row["colorfulness_gap"]),
            format_value(row["top1"]),
        ]
        for row in rows
    ]
    return markdown_table(MAIN_COLUMNS, cells)


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [
        [
            row["method"],
            format_value(row["temperature"]),
            format_value(row["auc"]),
            format_value(row["auc_rebal"]),
            format_value(row["colorfulness"]),
            format_value(row["colorfulness_gap"]),
        ]
        for row in rows
    ]
    return markdown_table(SWEEP_COLUMNS, cells)


def report_text(
    rows: Sequence[dict[str, Any]],
    sweep_rows: Sequence[dict[str, Any]],
    checkpoints: Sequence[EvaluatedCheckpoint],
    collected: Collected,
    semantic_note: str,
) -> str:
    first_row = rows[0]
    lines = [
        "# Colorization quality (Table 1 of Zhang, Isola, Efros 2016)",
        "",
        f"Dataset: {first_row['dataset']}: {first_row['n_images']} images, {first_row['n_color_images']} with "
        f"colour (AuC counts those){f'; {collected.skipped} unreadable skipped' if collected.skipped else ''}.",
        "",
        main_table(rows),
        "AuC: area under the curve of the fraction of pixels within an ab distance t, t = 0..150 (percent). "
        "PSNR / SSIM: RGB in [0, 1] against the ground truth (PSNR capped at 100 dB per image). "
        "Colourfulness: Hasler-Suesstrunk; gap = method minus ground truth.",
    ]
    for checkpoint in checkpoints:
        if checkpoint.class_weights is None:
            lines.append(f"Rebalanced AuC of {checkpoint.label}: n/a (its checkpoint stores no prior).")
        else:
            lines.append(
                f"Rebalanced AuC of {checkpoint.label}: each pixel weighted by rebalance_weights(prior, "
                f"lam={checkpoint.lam}) of its true nearest bin, prior from {checkpoint.path}."
            )
    if checkpoints[0].class_weights is not None:
        lines.append(f"Gray and ground-truth rows use the prior of {checkpoints[0].label}.")
    lines += [f"Semantic interpretability: {semantic_note}", ""]
    if sweep_rows:
        lines += ["## Temperature sweep (annealed mean)", "", sweep_table(sweep_rows)]
    labels = " | ".join(checkpoint.label for checkpoint in checkpoints)
    lines.append(
        f"Example grids (examples_*.png), ranked by {checkpoints[0].label}'s per-image AuC: gray | {labels} | ground truth."
    )
    return "\n".join(lines) + "\n"


# --- pictures and files ----------------------------------------------------------------------------------------


def tile(rows: Sequence[Sequence[Tensor]], gap: int = 2) -> np.ndarray:
    """Equal-size 3 x H x W images in [0, 1], one list per row, on a white background -> H x W x 3 uint8."""
    height, width = rows[0][0].shape[-2:]
    columns = len(rows[0])
    canvas = torch.ones(3, len(rows) * (height + gap) - gap, columns * (width + gap) - gap)
    for r, images in enumerate(rows):
        for c, image in enumerate(images):
            top, left = r * (height + gap), c * (width + gap)
            canvas[:, top : top + height, left : left + width] = image.float().cpu()
    return to_uint8_image(canvas)


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
    columns = [lab_batch_to_rgb(lightness, torch.zeros_like(true_ab))]
    for checkpoint in checkpoints:
        output = checkpoint.colorizer.network(lightness)
        pred_ab = predict_ab(checkpoint, output, checkpoint.main_temperature, tuple(true_ab.shape[-2:]))
        columns.append(lab_batch_to_rgb(lightness, pred_ab))
    columns.append(rgb.float() / 255)
    return tile([[column[row] for column in columns] for row in range(len(positions))])


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
            axis.axhline(gray_row[key], linestyle="--", color="gray", label="gray (ab = 0)")
        if key == "colorfulness":
            axis.axhline(gray_row["colorfulness_true"], linestyle="--", color="black", label="ground truth")
        axis.set_xscale("log")
        axis.set_xlabel("annealed-mean temperature T")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    axes[-1].legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=100)
    return path


def per_image_csv(eval_set: EvalSet, collected: Collected, checkpoints: Sequence[EvaluatedCheckpoint]) -> str:
    truth = collected.truth
    methods = [("gray", collected.gray)] + [
        (checkpoint.label, collected.methods[(checkpoint.label, checkpoint.main_temperature)])
        for checkpoint in checkpoints
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


def report_directory(config: EvalColorConfig) -> Path:
    name = config.name or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    report_dir = Path(config.out_dir) / name
    if (report_dir / "table.md").exists():
        raise ConfigError(
            f"{report_dir}: this evaluation already exists (table.md); pick another name= (or --name)"
        )
    return report_dir


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
        for key, table in (("eval_color/table", rows), ("eval_color/sweep", sweep_rows)):
            if table:
                columns = list(table[0])
                logger.log_table(key=key, columns=columns, data=[[row[c] for c in columns] for row in table])
        for key, path in pictures.items():
            logger.log_image(key=f"eval_color/{key}", images=[str(path)])
    logger.finalize("success")


# --- the command -----------------------------------------------------------------------------------------------


def evaluate_colorization(config: EvalColorConfig) -> list[dict[str, Any]]:
    """Run the evaluation ``config`` describes; returns the main rows (the sweep rows are appended too)."""
    device = resolve_device(config.device)
    report_dir = report_directory(config)
    checkpoints = load_checkpoints(config, device)
    eval_set = select_positions(validation_set(config.data), config.subset, config.data.max_val_images)
    classifier = None
    if config.classifier_weights is None:
        semantic_note = (
            "skipped: no classifier weights given (--classifier-weights PATH, a local torchvision "
            f"{config.classifier} state dict; nothing is ever downloaded)."
        )
        print(f"semantic interpretability {semantic_note}")
    else:
        classifier = load_classifier(
            config.classifier, config.classifier_weights, device, config.classifier_input_size
        )
    basis = semantic_basis(eval_set.classes, classifier)
    if basis == "imagenet-top1":
        semantic_note = f"top-1 of {config.classifier} against the ImageNet labels of the class folders."
    elif basis is not None:
        semantic_note = (
            f"the data set's classes are not ImageNet's, so top-1 is the agreement of {config.classifier}'s "
            "prediction on each image with its prediction on the ground truth (ground truth: 100 by definition)."
        )

    log.info(
        "evaluating %s on %d images of %s",
        [c.label for c in checkpoints],
        len(eval_set.positions),
        eval_set.description,
    )
    collected = collect(checkpoints, eval_set, classifier, config, device, report_dir / "study")
    rows, sweep_rows = build_rows(checkpoints, collected, eval_set, basis, report_dir)

    pictures: dict[str, Path] = {}
    ranking = rank_examples(
        collected.methods[(checkpoints[0].label, checkpoints[0].main_temperature)].column("auc"),
        config.num_examples,
    )
    positions = collected.truth.column("position")
    for kind in EXAMPLE_KINDS:
        if ranking[kind]:
            grid = example_grid([int(positions[i]) for i in ranking[kind]], eval_set, checkpoints, device)
            pictures[f"examples_{kind}"] = save_png(grid, report_dir / f"examples_{kind}.png")
    if sweep_rows:
        pictures["temperature_sweep"] = plot_sweep(sweep_rows, rows[1], report_dir / "temperature_sweep.png")

    text = report_text(rows, sweep_rows, checkpoints, collected, semantic_note)
    write_text(report_dir / "per_image.csv", per_image_csv(eval_set, collected, checkpoints))
    write_text(report_dir / "config.yaml", OmegaConf.to_yaml(to_container(config)))
    write_text(report_dir / "results.json", json.dumps([*rows, *sweep_rows], indent=2) + "\n")
    append_results(config.results, [*rows, *sweep_rows])
    log_to_logger(config, report_dir, rows, sweep_rows, pictures)
    write_text(report_dir / "table.md", text)
    print(text)
    study = (
        f"; study folder ({collected.study_pairs} pairs): {report_dir / 'study'}"
        if collected.study_pairs
        else ""
    )
    print(f"report: {report_dir}{study}; appended {len(rows) + len(sweep_rows)} rows to {config.results}")
    return rows


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The --flags as config overrides (values JSON-quoted, so any path or number survives)."""
    overrides = []
    if args.ckpt:
        overrides.append(f"ckpts={json.dumps(args.ckpt)}")
    if args.data:
        overrides += ["data.source=folder", f"data.root={json.dumps(args.data)}"]
    if args.temperatures:
        overrides.append(f"sweep={json.dumps(args.temperatures)}")
    for key in ("classifier", "classifier_weights", "subset", "name"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (configs/eval_color.yaml)")
    parser.add_argument(
        "--ckpt", nargs="+", help="pretraining checkpoint(s); the first drives examples and study"
    )
    parser.add_argument(
        "--data", help="image folder root holding <data.val_split>/ (default: the run's own data)"
    )
    parser.add_argument(
        "--temperatures", nargs="+", type=float, help="temperature sweep, e.g. 0.01 0.2 0.38 0.7 1.0"
    )
    parser.add_argument("--classifier", help="torchvision classifier name (vgg16)")
    parser.add_argument(
        "--classifier-weights", help="its local state-dict file; none: semantic metric skipped"
    )
    parser.add_argument("--subset", help="text file: validation indices or file names, one per line")
    parser.add_argument("--name", help="report folder name under out_dir (default: a timestamp)")
    args = parser.parse_intermixed_args(argv)
    run_cli(lambda: evaluate_colorization(load_eval_config([*flag_overrides(args), *args.overrides])))


if __name__ == "__main__":
    main()
