"""The Lightning Trainer arguments every command shares: devices, precision, logging cadence, progress bar."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_colorization.config.schema import BaseTrainerConfig
from lit_colorization.runtime.perf import device_type

CUDA_PROGRESS_BAR_STEPS = 25
log = logging.getLogger(__name__)


def requested_devices(devices: Any) -> int | None:
    """How many devices ``trainer.devices`` asks for (None: ``auto``, Lightning's choice)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()):
        return int(devices)
    return None


def warn_on_cpu_processes(trainer: BaseTrainerConfig) -> None:
    """``trainer.devices=N`` with ``accelerator=auto`` on a machine without GPUs runs N processes on the CPU:
    rarely what GPUS=N meant, so say so (an explicit ``accelerator=cpu`` asked for it)."""
    count = requested_devices(trainer.devices)
    if trainer.accelerator != "auto" or count is None or count < 2 or device_type("auto") != "cpu":
        return
    if rank_zero_only.rank == 0:
        log.warning(
            "trainer.devices=%s (GPUS) but no GPU is available: running %d processes on the CPU; "
            "set trainer.accelerator=cpu to mean it, or trainer.devices=1",
            trainer.devices,
            count,
        )


# Training losses the progress bar shows; logged without prog_bar (see TrainingLossProgressBar).
PROGRESS_BAR_LOSSES = ("train/loss", "voc/train_loss")


class TrainingLossProgressBar(TQDMProgressBar):
    """Lightning's bar, reading the training loss only when it refreshes (every ``refresh_rate`` steps).

    Lightning turns each metric logged with ``prog_bar=True`` into a Python number at every step, which makes the
    host wait for the device every step (seen on an H200); so the losses are logged without it and read here.
    """

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        for key in PROGRESS_BAR_LOSSES:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                metrics[key] = f"{float(value):.3f}"
        return metrics


def lightning_trainer_args(
    trainer: BaseTrainerConfig, precision: str | None = None, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """The ``L.Trainer`` keyword arguments of a trainer section's shared fields, ``callbacks`` included (with
    the progress bar); ``precision`` replaces the section's own where the command resolves it first
    (pretraining's ``auto``)."""
    warn_on_cpu_processes(trainer)
    every = trainer.progress_bar_every_n_steps
    if every is None:
        every = CUDA_PROGRESS_BAR_STEPS if device_type(trainer.accelerator) == "cuda" else 1
    progress_bar = [TrainingLossProgressBar(refresh_rate=every)] if trainer.progress_bar else []
    return {
        "accelerator": trainer.accelerator,
        "devices": trainer.devices,
        "num_nodes": trainer.num_nodes,
        "strategy": trainer.strategy,
        "precision": precision or trainer.precision,
        "log_every_n_steps": trainer.log_every_n_steps,
        "enable_progress_bar": trainer.progress_bar,
        "callbacks": [*callbacks, *progress_bar],
    }
