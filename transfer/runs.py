"""What every transfer command shares: the pretraining checkpoint it starts from, its run folder, its trainer.
Its results go through ``lit_colorization.store.results.publish_results``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger

from lit_colorization.config.loading import ConfigError
from lit_colorization.config.schema import BaseTrainerConfig
from lit_colorization.runtime.trainer import lightning_trainer_args


def latest_pretrain_checkpoint(runs_dir: str | Path) -> Path:
    """The most recently modified ``<runs_dir>/*/checkpoints/last.ckpt``."""
    found = sorted(Path(runs_dir).glob("*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise FileNotFoundError(
            f"no pretraining checkpoint found as {runs_dir}/*/checkpoints/last.ckpt; run `make pretrain` first, "
            "or pass ckpt=PATH (or ckpt=random for the untrained baseline)"
        )
    return found[-1]


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


def build_transfer_trainer(
    trainer: BaseTrainerConfig,
    run_dir: Path,
    logger: Logger | bool,
    lr_logging_interval: str,
    **schedule: Any,
) -> L.Trainer:
    """The Lightning trainer of a transfer run: ``schedule`` (its length and validation keywords) on the shared
    trainer settings; no checkpoints (a checkpoint would copy the whole trunk, and the results are the product)."""
    return L.Trainer(
        default_root_dir=run_dir,
        **lightning_trainer_args(
            trainer, callbacks=[LearningRateMonitor(logging_interval=lr_logging_interval)] if logger else []
        ),
        **schedule,
        enable_checkpointing=False,
        logger=logger,
    )
