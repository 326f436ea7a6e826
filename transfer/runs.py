"""What every transfer command shares: the pretraining checkpoint it starts from, its run folder, its trainer,
where its results go."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_colorization.config.loading import ConfigError
from lit_colorization.config.schema import BaseTrainerConfig
from lit_colorization.store.atomic import write_text
from lit_colorization.store.results import append_results
from lit_colorization.train.trainer import lightning_trainer_args


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


def publish(results_path: str, rows: list[dict[str, Any]], run_dir: Path) -> None:
    """Append ``rows`` to the results store and write them to ``run_dir/results.json`` (rank 0 only).

    The append comes first: a run killed in between has its rows in the store and is rerun, and ``make
    compare`` shows the rerun's rows; the other order could finish a run whose rows were never stored.
    """
    if rank_zero_only.rank != 0:
        return
    append_results(results_path, rows)
    write_text(run_dir / "results.json", json.dumps(rows, indent=2) + "\n")
