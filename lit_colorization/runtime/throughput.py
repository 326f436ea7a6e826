"""Training throughput as a logged metric: ``perf/images_per_second``, global, at the logging cadence.

The rate of a window (the steps since the last logged step) is this process's training images over the wall
time between the ends of the window's first and last steps, times the number of processes: every process takes
the same per-device batch (runtime/scaling.py), so no collective is needed to count the others'. Validation
inside the window (and the online evaluation it runs) is left out of the time; data loading, the optimizer
step and checkpoint writes are in it: it is what training runs at. No device sync is added: the clock is read
only at a logged step, so on CUDA a window's end may stand up to the few steps the device is behind the host,
which over a window of ``trainer.log_every_n_steps`` steps (50 by default) is a small part.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

IMAGES_PER_SECOND_KEY = "perf/images_per_second"


class ImagesPerSecond(Callback):
    """Logs ``IMAGES_PER_SECOND_KEY`` at each step Lightning writes to the logger; ``images_in`` counts a
    training batch's images (without reading the device)."""

    def __init__(self, images_in: Callable[[Any], int]) -> None:
        self.images_in = images_in
        self._window_start: float | None = None
        self._images = 0
        self._paused = 0.0
        self._validation_start: float | None = None

    def _start_window(self) -> None:
        self._window_start = time.perf_counter()
        self._images = 0
        self._paused = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_window()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._window_start is not None and trainer.state.fn == "fit":
            self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._validation_start is not None:
            self._paused += time.perf_counter() - self._validation_start
            self._validation_start = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += self.images_in(batch)
        every = trainer.log_every_n_steps
        # Lightning writes a step's logged values when the step count is a multiple of log_every_n_steps
        # (its LoggerConnector.should_update_logs; this project trains without gradient accumulation).
        if self._window_start is None or every <= 0 or trainer.global_step % every:
            return
        seconds = time.perf_counter() - self._window_start - self._paused
        if seconds > 0:
            rate = self._images * trainer.world_size / seconds
            # A host tensor: a plain number would be copied to the device from pageable memory.
            pl_module.log(IMAGES_PER_SECOND_KEY, torch.tensor(rate), on_step=True, on_epoch=False)
        self._start_window()
