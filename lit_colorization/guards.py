"""Callbacks that keep a long run recoverable: a periodic mid-epoch checkpoint and a stop on a non-finite loss."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss; the one-line message names the step."""


class StepCheckpoint(Callback):
    """Writes ``path`` every ``every_n_steps`` optimizer steps (0: never on a schedule) and at ``max_steps``.

    It saves from ``on_train_batch_end``, inside the epoch, so the checkpoint records how far into the epoch the
    run was and a resumed run continues with the very next batch. Saving at ``max_steps`` from there (not
    after ``fit`` returns, when Lightning has already closed the epoch) lets a run stopped by ``max_steps``
    be extended later as if it had never stopped.
    """

    def __init__(self, path: str | Path, every_n_steps: int) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps: expected an integer >= 0, got {every_n_steps}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._last_saved_step = -1

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_saved_step:  # no optimizer step since the last save
            return
        scheduled = self.every_n_steps > 0 and step % self.every_n_steps == 0
        if scheduled or step >= trainer.max_steps:
            trainer.save_checkpoint(self.path)  # every rank calls it; rank 0 writes
            self._last_saved_step = step


class NonFiniteLossGuard(Callback):
    """Stops training on a NaN or infinite loss before the backward pass, so no weight is ever updated from it.

    The decision is shared by all ranks (one rank stopping alone would leave the others waiting forever in the
    gradient all-reduce). Checkpoints already written are kept; ``checkpoint.AtomicCheckpointIO`` refuses to
    write one whose weights are not finite.
    """

    def __init__(self, checkpoint_dir: str | Path | None = None) -> None:
        self.checkpoint_dir = checkpoint_dir

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        value = float(loss.detach())
        if not trainer.strategy.reduce_boolean_decision(not math.isfinite(value), all=False):
            return
        kept = f"; checkpoints so far are kept in {self.checkpoint_dir}" if self.checkpoint_dir else ""
        raise NonFiniteLossError(
            f"training stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): the loss is not "
            f"finite (this rank: {value}) and no weight was updated from it{kept}; lower optim.lr, set "
            "trainer.gradient_clip_val or check the data"
        )
