"""What every transfer command shares: the pretraining checkpoint it starts from, its run folder, its trainer.
Its results go through ``lit_colorization.store.results.publish_results``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_colorization.config.loading import ConfigError
from lit_colorization.runtime.resumption import (
    LAST_CHECKPOINT,
    checkpoint_to_resume,
    remove_stale_temporaries,
    resumable_callbacks,
)
from lit_colorization.runtime.trainer import lightning_trainer_args
from lit_colorization.store.checkpoint import AtomicCheckpointIO
from lit_colorization.store.run_lock import RunLock


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


def hold_run(run_dir: Path) -> contextlib.AbstractContextManager:
    """The run folder's lock (``store/run_lock.py``) for global rank 0; nothing for the other ranks."""
    return RunLock(run_dir) if rank_zero_only.rank == 0 else contextlib.nullcontext()


def start_resumable(run_dir: Path, resume: str | None) -> str | None:
    """The checkpoint this start of ``run_dir`` continues from (``resume``: None, "auto" or a path), after
    removing what an interrupted checkpoint write left."""
    if rank_zero_only.rank == 0:
        remove_stale_temporaries((run_dir / LAST_CHECKPOINT).parent)
    return checkpoint_to_resume(resume, run_dir)


def build_transfer_trainer(
    trainer: Any,
    run_dir: Path,
    logger: Logger | bool,
    lr_logging_interval: str,
    extra_callbacks: Sequence[Callback] = (),
    **schedule: Any,
) -> L.Trainer:
    """The Lightning trainer of a transfer run: ``schedule`` (its length and validation keywords) on the shared
    trainer settings (a ``BaseTrainerConfig`` with ``checkpoint_every_n_steps``). It writes only
    ``checkpoints/last.ckpt``, every ``trainer.checkpoint_every_n_steps`` steps, at the end and on a stop signal
    (then the process exits with status 75; ``resume=auto`` continues exactly)."""
    lr_monitor = [LearningRateMonitor(logging_interval=lr_logging_interval)] if logger else []
    callbacks = [
        *lr_monitor,
        *extra_callbacks,
        *resumable_callbacks(run_dir, trainer.checkpoint_every_n_steps),
    ]
    return L.Trainer(
        default_root_dir=run_dir,
        **lightning_trainer_args(trainer, callbacks=callbacks),
        **schedule,
        enable_checkpointing=False,  # no ModelCheckpoint: last.ckpt is StepCheckpoint's
        logger=logger,
        plugins=[AtomicCheckpointIO()],
    )
