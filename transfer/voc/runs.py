"""What the VOC command lines share: run folders, data loaders, the Lightning trainer and result rows.

A run writes ``<runs_dir>/<task>-<run>/``: ``config.yaml`` (resolved), metrics (CSV or W&B) and
``results.json`` (this run's rows, also appended to the results store); a finished run is never overwritten.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from lit_colorization.atomic import write_text
from lit_colorization.config import ConfigError
from lit_colorization.results import append_results
from transfer.backbone import BackboneSource
from transfer.probe import latest_pretrain_checkpoint
from transfer.voc.data import VOCSource

AP_DECIMALS = 6


def resolve_ckpt(ckpt: str | None, runs_dir: str) -> str:
    """``ckpt`` as given, or the most recent pretraining checkpoint under ``runs_dir``."""
    return ckpt or str(latest_pretrain_checkpoint(runs_dir))


def run_directory(runs_dir: str, task: str, name: str) -> Path:
    """``<runs_dir>/<task>-<name>``; refused if that run already finished (it has a results.json)."""
    run_dir = Path(runs_dir) / f"{task}-{name}"
    if (run_dir / "results.json").exists():
        raise ConfigError(
            f"{run_dir}: this {task} run has already finished (results.json); pick another name with run=NAME (RUN=)"
        )
    return run_dir


def write_run_config(run_dir: Path, resolved: dict[str, Any]) -> None:
    if rank_zero_only.rank == 0:
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))


def data_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader:
    # A partial last training batch is dropped so BatchNorm never sees a batch of one image.
    drop_last = shuffle and len(dataset) > batch_size  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        collate_fn=collate_fn,
    )


def build_trainer(trainer: Any, run_dir: Path, logger: Logger | bool) -> L.Trainer:
    """The Lightning trainer of a ``VOCTrainerConfig``; no checkpoints (the results are the product)."""
    periodic_validation = trainer.val_check_interval is not None
    return L.Trainer(
        default_root_dir=run_dir,
        max_steps=trainer.max_steps,
        max_epochs=trainer.max_epochs,
        accelerator=trainer.accelerator,
        devices=trainer.devices,
        num_nodes=trainer.num_nodes,
        strategy=trainer.strategy,
        precision=trainer.precision,
        # An int interval counts optimizer steps across epochs only with check_val_every_n_epoch=None.
        val_check_interval=trainer.val_check_interval if periodic_validation else None,
        check_val_every_n_epoch=None if periodic_validation else 1,
        num_sanity_val_steps=0,
        log_every_n_steps=trainer.log_every_n_steps,
        enable_progress_bar=trainer.progress_bar,
        enable_checkpointing=False,
        callbacks=[LearningRateMonitor(logging_interval="step")] if logger else [],
        logger=logger,
    )


def feature_device(accelerator: str) -> torch.device:
    """The device of a single-process job (the SVM protocol) for ``trainer.accelerator``."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("gpu", "cuda"):
        raise ValueError(
            f"config key 'trainer.accelerator': {accelerator!r} asked for, but CUDA is not available"
        )
    return torch.device("cpu")


def per_class_ap(classes: Sequence[str], values: Sequence[float]) -> dict[str, float | None]:
    """Class name -> AP rounded for the results store; None for a class without a positive test image."""
    return {
        name: None if math.isnan(value) else round(float(value), AP_DECIMALS)
        for name, value in zip(classes, values, strict=True)
    }


def base_row(task: str, run_dir: Path, source: BackboneSource, voc: VOCSource, seed: int) -> dict[str, Any]:
    """The fields every VOC result row carries, before the task's own."""
    return {
        "task": task,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": run_dir.name,
        "ckpt": source.ckpt,
        "pretrain_run": source.pretrain_run,
        "pretrain_step": source.pretrain_step,
        "model": source.model_name,
        "dataset": voc.label,
        "data_root": str(voc.root),
        "classes": list(voc.classes),
        "seed": seed,
    }


def log_per_class(logger: Logger | bool, ap: dict[str, float | None], step: int) -> None:
    if logger:
        logger.log_metrics(
            {f"voc/ap/{name}": value for name, value in ap.items() if value is not None}, step=step
        )
        logger.save()


def publish(results_path: str, rows: list[dict[str, Any]], run_dir: Path) -> None:
    """Append ``rows`` to the results store and write them to ``run_dir/results.json`` (rank 0 only)."""
    if rank_zero_only.rank != 0:
        return
    append_results(results_path, rows)
    write_text(run_dir / "results.json", json.dumps(rows, indent=2) + "\n")
