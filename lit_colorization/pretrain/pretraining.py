"""A colorization pretraining run, as `make pretrain` starts it (command line: ``lit_colorization.cli.pretrain``).

Writes ``runs/<run>/``: ``config.yaml``, ``prior.npy``, ``checkpoints/`` (``last.ckpt`` and the best by val loss),
validation image grids in ``images/``, metrics (CSV or W&B) and, with ``online_eval`` on (the default),
``online_eval.json`` and ``online_eval.png``: per-layer online probe and kNN top-1 over the steps.

``last.ckpt`` is written every ``trainer.checkpoint_every_n_steps`` steps or ``trainer.checkpoint_every_minutes``
minutes (in a thread with ``trainer.async_checkpoint``), at ``max_steps`` and at the end of the
step in which SIGTERM or SIGUSR1 came (then the process exits with status 75: ``runtime/preemption.py``), atomically,
from inside the epoch: a run killed at any moment continues with ``resume=auto`` exactly as if it had not stopped
(same weights, optimizer state, lr schedule and order of batches and crops).

The batch, lr and schedule follow from the recipe and the number of processes (``runtime/scaling.py``); the run
prints them in one line at start and records them under ``scale`` in ``config.yaml``, the logger's hyperparameters
and every checkpoint. The folder belongs to one live run at a time (``store/run_lock.py``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO, async_plugin
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import OmegaConf

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import to_container
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.data import build_datamodule
from lit_colorization.online_eval.callback import OnlineEvaluation
from lit_colorization.pretrain.initialisation import initialise
from lit_colorization.pretrain.module import ColorizationModule, batch_images
from lit_colorization.pretrain.priors import load_prior, prior_from_datamodule, save_prior
from lit_colorization.runtime.guards import NoColourGuard, NonFiniteLossGuard, StepCheckpoint
from lit_colorization.runtime.perf import device_type, settings_for
from lit_colorization.runtime.preemption import StopOnSignal, StopSignals
from lit_colorization.runtime.resumption import checkpoint_to_resume, fit_resumable, remove_stale_temporaries
from lit_colorization.runtime.scaling import RunScale, WorldSizeCheck, resolve_scale, sync_batchnorm
from lit_colorization.runtime.throughput import ImagesPerSecond
from lit_colorization.runtime.trainer import lightning_trainer_args
from lit_colorization.store.atomic import write_text
from lit_colorization.store.checkpoint import AtomicCheckpointIO, CheckpointError, read_checkpoint
from lit_colorization.store.loggers import build_logger
from lit_colorization.store.run_lock import RunLock

log = logging.getLogger(__name__)
JOB_TYPE = "pretrain"  # the W&B job type of pretraining runs (transfer/dashboard.py selects runs by it)
PRIOR_WAIT_SECONDS = 24 * 3600
# What a resumed run takes from the checkpoint whatever the config says (the optimizer's lr, the schedule's
# milestones and lrs after them) or needs unchanged to continue the epoch's order of samples (global batch, processes).
RESUMED_SCALE_KEYS = ("global_batch", "world_size", "lr", "milestones", "milestone_lrs")


def check_resumable(path: str, config: PretrainConfig, scale: RunScale) -> None:
    """Fail before any work when ``path`` cannot continue this run: unreadable, not ours, another network, or
    another global batch, number of processes, lr or lr schedule."""
    stored = read_checkpoint(path).config
    current = to_container(config)
    for key in ("model", "loss"):
        if stored.get(key) != current[key]:
            raise CheckpointError(
                f"{path}: checkpoint was trained with {key}={stored.get(key)!r} but this run has "
                f"{key}={current[key]!r}; resume with the checkpoint's settings or start another run (RUN=)"
            )
    stored_scale, current_scale = stored.get("scale"), scale.as_dict()
    for key in RESUMED_SCALE_KEYS if stored_scale is not None else ():
        if stored_scale[key] != current_scale[key]:
            raise CheckpointError(
                f"{path}: checkpoint was trained with {key} {stored_scale[key]!r} but this run has "
                f"{current_scale[key]!r} ({scale.summary()}); resume with the checkpoint's data.batch_size, "
                "trainer.devices x trainer.num_nodes and optim settings, or start another run (RUN=)"
            )


def prepare_prior(config: PretrainConfig, run_dir: Path, datamodule, bins: torch.Tensor) -> torch.Tensor:
    """The given prior, else the run's, else computed now by rank 0 (other ranks wait for its file)."""
    if config.targets.prior_path:
        return load_prior(config.targets.prior_path, bins.shape[0])
    path = run_dir / "prior.npy"
    if not path.exists():
        if rank_zero_only.rank == 0:
            log.info("no prior given: computing it from the training data into %s", path)
            save_prior(prior_from_datamodule(datamodule, config, bins), path)
        else:
            deadline = time.monotonic() + PRIOR_WAIT_SECONDS
            while not path.exists():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}: rank 0 did not write the prior in time")
                time.sleep(5)
    return load_prior(path, bins.shape[0])


def checkpoint_writer(asynchronous: bool) -> CheckpointIO:
    """The atomic writer (store/checkpoint.py), in a thread of Lightning's ``AsyncCheckpointIO`` if asked.

    ``AsyncCheckpointIO`` copies every tensor of the checkpoint on the caller's thread before handing it over
    (lightning/pytorch/plugins/io/async_plugin.py, ``_clone_tensor``, in the Lightning this project installs),
    so training may go on changing the weights; a Lightning without that copy would write weights of a later
    step, so there the write stays synchronous.
    """
    if not asynchronous:
        return AtomicCheckpointIO()
    if not hasattr(async_plugin, "_clone_tensor"):
        log.warning(
            "trainer.async_checkpoint: this Lightning's AsyncCheckpointIO does not copy the state before writing "
            "it; checkpoints are written synchronously (upgrade lightning to write them in a thread)"
        )
        return AtomicCheckpointIO()
    return AsyncCheckpointIO(AtomicCheckpointIO())


def build_trainer(
    config: PretrainConfig,
    scale: RunScale,
    run_dir: Path,
    logger,
    extra_callbacks: Sequence[Callback] = (),
    sync_batchnorm: bool = False,
    signals: StopSignals | None = None,
) -> L.Trainer:
    trainer = config.trainer
    checkpoint_dir = run_dir / "checkpoints"
    last = StepCheckpoint(
        checkpoint_dir / "last.ckpt", trainer.checkpoint_every_n_steps, trainer.checkpoint_every_minutes
    )
    # Before StepCheckpoint: the heads' step on a batch is in the checkpoint written at that batch's end.
    online = (
        [OnlineEvaluation(config.online_eval, config.data.crop_size, run_dir)]
        if config.online_eval.enabled
        else []
    )
    callbacks = [
        WorldSizeCheck(scale),
        NonFiniteLossGuard(checkpoint_dir),
        NoColourGuard(config.targets.gray_threshold),
        *online,
        last,
        *extra_callbacks,
        ModelCheckpoint(
            dirpath=checkpoint_dir,
            filename="best-step{step:07d}",
            auto_insert_metric_name=False,
            monitor="val/loss",
            mode="min",
            save_top_k=1,
        ),
    ]
    if logger:
        # Global training images per second at the logging cadence (runtime/throughput.py).
        callbacks += [LearningRateMonitor(logging_interval="step"), ImagesPerSecond(batch_images)]
    callbacks.append(StopOnSignal(last, signals))  # last: the other callbacks finish the step it stops after
    return L.Trainer(
        default_root_dir=run_dir,
        max_steps=scale.max_steps,
        max_epochs=-1,
        **lightning_trainer_args(
            trainer, precision=settings_for(trainer, config.optim).precision, callbacks=callbacks
        ),
        val_check_interval=trainer.val_check_interval,
        check_val_every_n_epoch=trainer.check_val_every_n_epoch,
        limit_val_batches=trainer.limit_val_batches,
        gradient_clip_val=trainer.gradient_clip_val,
        sync_batchnorm=sync_batchnorm,
        logger=logger,
        plugins=[checkpoint_writer(trainer.async_checkpoint)],
        # no_grad, not inference_mode: metric states first made by the validation before training must stay
        # updatable by the validations inside fit.
        inference_mode=False,
    )


def pretrain(config: PretrainConfig, extra_callbacks: Sequence[Callback] = ()) -> Path:
    """Train a colorizer as ``config`` says; returns the run folder. ``extra_callbacks`` join the Trainer's own.

    Global rank 0 holds the run folder's lock from before its first write to the end, however the run ends.
    """
    run_dir = Path(config.runs_dir) / config.run
    with RunLock(run_dir) if rank_zero_only.rank == 0 else contextlib.nullcontext(), StopSignals() as signals:
        return train_in(run_dir, config, extra_callbacks, signals)


def train_in(
    run_dir: Path, config: PretrainConfig, extra_callbacks: Sequence[Callback], signals: StopSignals
) -> Path:
    scale = resolve_scale(config)
    synced = sync_batchnorm(
        config.trainer.sync_batchnorm, device_type(config.trainer.accelerator), scale.world_size
    )
    resume = checkpoint_to_resume(config.resume, run_dir)
    if resume is not None:
        check_resumable(resume, config, scale)
    L.seed_everything(config.trainer.seed, workers=True)
    resolved = {**to_container(config), "scale": scale.as_dict()}
    if rank_zero_only.rank == 0:
        print(scale.summary(), flush=True)
        remove_stale_temporaries(run_dir / "checkpoints")
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    bins = ab_bins(config.targets.bins_path)
    datamodule = build_datamodule(config.data, batch_size=scale.per_device_batch)
    prior = prepare_prior(config, run_dir, datamodule, bins)
    module = ColorizationModule(config, bins, prior, image_dir=run_dir / "images", scale=scale)
    if resume is None:
        initialise(module.net, config.model, datamodule, config.trainer.seed)
    # One W&B group per pretraining run: its probes and VOC runs join it (group = their pretraining run).
    logger = build_logger(
        config.logger,
        run_dir,
        config.run,
        job_type=JOB_TYPE,
        config=resolved,
        group=config.logger.group or config.run,
    )
    if logger:
        logger.log_hyperparams(
            resolved
        )  # W&B has them from its start; the CSV logger's hparams.yaml from here
    if synced:
        log.info("BatchNorm statistics over the global batch of %d (SyncBatchNorm)", scale.global_batch)
    trainer = build_trainer(
        config, scale, run_dir, logger, extra_callbacks, sync_batchnorm=synced, signals=signals
    )
    if resume is None and config.trainer.validate_before_training:
        # The untrained network's scores, logged at step 0, are what training is measured against.
        trainer.validate(module, datamodule=datamodule, verbose=False)
    fit_resumable(trainer, module, resume, datamodule=datamodule)
    if trainer.is_global_zero:
        print(f"run folder: {run_dir}  (last checkpoint: {run_dir / 'checkpoints' / 'last.ckpt'})")
    return run_dir
