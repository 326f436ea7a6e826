"""Callbacks that keep a long run recoverable: a periodic mid-epoch checkpoint, a stop on a non-finite loss and a
stop on training data without colour."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import AsyncCheckpointIO


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss; the one-line message names the step."""


ADVICE = "lower optim.lr, set trainer.gradient_clip_val or check the data"


class NoColourError(ValueError):
    """Training batches without a single coloured image: nothing to learn; the one-line message says why."""


# Steps between looks at the clock for ``every_minutes``: under DDP each look is a broadcast of rank 0's answer.
CLOCK_CHECK_STEPS = 10


class StepCheckpoint(Callback):
    """Writes ``path`` every ``every_n_steps`` optimizer steps and every ``every_minutes`` minutes (0: never on
    that schedule), whichever comes first, and at ``max_steps``.

    It saves from ``on_train_batch_end``, inside the epoch, so the checkpoint records how far into the epoch the
    run was and a resumed run continues with the very next batch. Saving at ``max_steps`` from there (not
    after ``fit`` returns, when Lightning has already closed the epoch) lets a run stopped by ``max_steps``
    be extended later as if it had never stopped.

    A cadence in minutes costs the same share of the run at any speed (every 1,000 steps was every 13 s at
    3,000 images/s). The clock is read every ``CLOCK_CHECK_STEPS`` steps, rank 0's answer for every rank (a
    save is collective). With an asynchronous checkpoint writer (``trainer.async_checkpoint``) the step only
    pays for the copy of the state; ``save(wait=True)`` returns once the file is on disk.
    """

    def __init__(self, path: str | Path, every_n_steps: int, every_minutes: float = 0.0) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps: expected an integer >= 0, got {every_n_steps}")
        if every_minutes < 0:
            raise ValueError(f"every_minutes: expected a number >= 0, got {every_minutes}")
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.every_minutes = every_minutes
        self._last_saved_step = -1
        self._last_saved_time = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_saved_time = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        scheduled = self.every_n_steps > 0 and step % self.every_n_steps == 0
        # max_steps is -1 in a run limited by epochs only.
        if scheduled or 0 <= trainer.max_steps <= step or self._minutes_due(trainer, step):
            self.save(trainer)

    def _minutes_due(self, trainer: L.Trainer, step: int) -> bool:
        if self.every_minutes <= 0 or step % CLOCK_CHECK_STEPS:
            return False
        due = time.monotonic() - self._last_saved_time >= 60 * self.every_minutes
        return bool(trainer.strategy.broadcast(due, src=0)) if trainer.world_size > 1 else due

    def save(self, trainer: L.Trainer, wait: bool = False) -> None:
        """Write ``path`` now, from ``on_train_batch_end``, unless it already holds this step; every rank calls it,
        rank 0 writes. ``wait``: return only once the file is written (an asynchronous writer finishes first)."""
        if trainer.global_step != self._last_saved_step:  # an optimizer step since the last save
            # The whole training state (optimizer, loops, loader position): what resume needs. Said explicitly,
            # or Lightning logs at every save that it defaulted to it.
            trainer.save_checkpoint(self.path, weights_only=False)
            self._last_saved_step = trainer.global_step
            self._last_saved_time = time.monotonic()
        if wait:
            wait_for_checkpoint_writes(trainer)


def wait_for_checkpoint_writes(trainer: L.Trainer) -> None:
    """Return once every checkpoint handed to an asynchronous writer is on disk; its errors are raised here."""
    checkpoint_io = trainer.strategy.checkpoint_io
    if isinstance(checkpoint_io, AsyncCheckpointIO):
        checkpoint_io.teardown()  # waits for the queued writes; the next save starts a new writer thread


def takes_skip_flag(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` honours a ``found_inf`` tensor, skipping the update on the device when it is 1.

    PyTorch's fused Adam, AdamW and SGD do (mixed precision's GradScaler relies on it); they say so with the
    attribute read here.
    """
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


class NonFiniteLossGuard(Callback):
    """Stops training on a NaN or infinite loss, and no weight is ever updated from one.

    With optimizers that take a skip flag (``takes_skip_flag``: fused Adam, the CUDA default) and no gradient
    scaler, the host never waits for the device: a flag on the device (the loss on any rank, or a gradient after
    the all-reduce, not finite) makes the optimizer skip that update, and the flag is read one step later, when
    the device has long produced it; the run then stops, naming the skipped step. A per-step wait would stall
    the device between steps (while the next batch is decoded, for one). With any other optimizer the loss is
    read before the backward pass, a wait that costs nothing on a CPU.

    The decision is the same on all ranks (one rank stopping alone would leave the others waiting forever in the
    gradient all-reduce). Checkpoints already written are kept; ``checkpoint.AtomicCheckpointIO`` refuses to
    write one whose weights are not finite.
    """

    def __init__(self, checkpoint_dir: str | Path | None = None) -> None:
        self.checkpoint_dir = checkpoint_dir
        self._on_device = False
        self._loss_flag: torch.Tensor | None = None
        self._unread: tuple[int, int, torch.Tensor, torch.cuda.Event | None] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        scaled = getattr(trainer.precision_plugin, "scaler", None) is not None  # its flag would overrule ours
        self._on_device = not scaled and all(takes_skip_flag(optimizer) for optimizer in trainer.optimizers)
        self._loss_flag, self._unread = None, None

    def on_before_backward(
        self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor
    ) -> None:
        self._stop_if_an_update_was_skipped(trainer)
        if self._on_device:
            flag = (~torch.isfinite(loss.detach())).any().to(torch.float32)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            # Micro-batches of one update (gradient accumulation) all count.
            self._loss_flag = flag if self._loss_flag is None else torch.maximum(self._loss_flag, flag)
            return
        value = float(loss.detach())
        if not trainer.strategy.reduce_boolean_decision(not math.isfinite(value), all=False):
            return
        raise NonFiniteLossError(
            f"training stopped at step {trainer.global_step} (epoch {trainer.current_epoch}): the loss is not "
            f"finite (this rank: {value}) and no weight was updated from it{self._kept()}; {ADVICE}"
        )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._on_device or self._loss_flag is None:
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flag = self._loss_flag
        if grads:
            all_finite = torch.stack([torch.isfinite(grad).all() for grad in grads]).all()
            flag = torch.maximum(flag, (~all_finite).to(torch.float32))
        optimizer.found_inf = flag
        self._loss_flag = None
        host_flag = flag.to("cpu", non_blocking=True)
        event = None
        if flag.is_cuda:
            event = torch.cuda.Event()
            event.record()  # after the copy: when it has happened, the copy has landed
        self._unread = (trainer.global_step, trainer.current_epoch, host_flag, event)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # The forward of a skipped step has already moved BatchNorm's running statistics: stop before they
        # reach a file. A save waits for the device anyway.
        self._stop_if_an_update_was_skipped(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_an_update_was_skipped(trainer)

    def _stop_if_an_update_was_skipped(self, trainer: L.Trainer) -> None:
        if self._unread is None:
            return
        step, epoch, host_flag, event = self._unread
        self._unread = None
        if event is not None:
            event.synchronize()  # the flag of a step ago: ready by now, or nearly
        if not host_flag.item():
            return
        raise NonFiniteLossError(
            f"training stopped after step {step} (epoch {epoch}): the loss or a gradient was not finite, so that "
            f"update was skipped and no weight was updated from it{self._kept()}; {ADVICE}"
        )

    def _kept(self) -> str:
        return f"; checkpoints so far are kept in {self.checkpoint_dir}" if self.checkpoint_dir else ""


class NoColourGuard(Callback):
    """Stops a run whose training images carry no colour: every one gray (``targets.gray_threshold``), so every
    pixel is masked out of the loss, the loss is exactly 0 and the network learns nothing.

    Without ``targets.prior_path`` the prior pass refuses such data before training; with one, only the batches
    can tell. Their count of coloured images stays on the device and is read where the host waits anyway (at
    the end of a validation inside fit, and of training) until a coloured image has been seen.
    """

    def __init__(self, gray_threshold: float) -> None:
        self.gray_threshold = gray_threshold
        self._coloured: torch.Tensor | None = None
        self._images = 0
        self._seen_colour = False

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._seen_colour:
            return
        coloured = batch["targets"].colored
        count = coloured.sum()
        self._coloured = count if self._coloured is None else self._coloured + count
        self._images += coloured.numel()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        # Every rank trains the same number of batches, so all of them reach the all-reduce or none does.
        if self._seen_colour or self._coloured is None or trainer.sanity_checking:
            return
        if float(trainer.strategy.reduce(self._coloured.float(), reduce_op="sum")) > 0:
            self._seen_colour = True
            return
        raise NoColourError(
            f"training stopped at step {trainer.global_step}: no colour in the training data: each of the "
            f"{self._images * trainer.world_size} images trained on so far is gray (targets.gray_threshold="
            f"{self.gray_threshold}), so the loss is 0 and nothing is learned; train on colour photos "
            "(targets.prior_path skips the prior pass, which would have said so before training)"
        )
