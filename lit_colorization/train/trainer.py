"""The Lightning Trainer arguments every command shares: devices, precision, logging cadence, progress bar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from lit_colorization.config.schema import BaseTrainerConfig
from lit_colorization.train.perf import device_type

CUDA_PROGRESS_BAR_STEPS = 25


def lightning_trainer_args(
    trainer: BaseTrainerConfig, precision: str | None = None, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """The ``L.Trainer`` keyword arguments of a trainer section's shared fields, ``callbacks`` included (with
    the progress bar); ``precision`` replaces the section's own where the command resolves it first
    (pretraining's ``auto``)."""
    every = trainer.progress_bar_every_n_steps
    if every is None:
        every = CUDA_PROGRESS_BAR_STEPS if device_type(trainer.accelerator) == "cuda" else 1
    progress_bar = [TQDMProgressBar(refresh_rate=every)] if trainer.progress_bar else []
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
