"""Stopping a run on SIGTERM or SIGUSR1 at the next step boundary, with ``last.ckpt`` written first.

Schedulers warn before they kill: SLURM sends SIGTERM to a preempted job before SIGKILL, and ``#SBATCH
--signal=USR1@<seconds>`` sends SIGUSR1 before the time limit (scripts/slurm/pretrain.sbatch requeues the job then).
The handler only records the signal. At the end of the step in flight (``on_train_batch_end``, where
``StepCheckpoint`` writes and from where a resumed run continues exactly) the ranks agree on whether any of them was
signalled, every rank calls the save (rank 0 writes ``last.ckpt`` atomically) and every rank raises ``RunPreempted``:
the process exits with status ``PREEMPTED_EXIT_CODE`` (75, EX_TEMPFAIL of sysexits.h: stopped, to be continued), but
for the processes Lightning's own launcher started (``GPUS=N`` on one machine), which exit with 0: its watchdog kills
rank 0 as soon as one of them ends otherwise, perhaps before rank 0 has exited with 75 itself. ``RESUME=auto``
continues the run exactly.

Lightning's own handlers are replaced while they would act: its SIGTERM handler stops only the ranks that got the
signal (the others would wait forever in the next all-reduce), and its SLURM requeue handler writes a checkpoint
from inside the signal handler, in the middle of a step. Ours are installed once a Trainer stage has registered
Lightning's (at the start of validation and of training) and Lightning's teardown puts back what was there before.
A signal during a validation is acted on at the end of the next training step. One before the first Trainer
stage (while the prior is computed, say: a full pass over the training data) ends the process at once with status
75 as well (``StopSignals``): there is nothing to save yet, the prior is written whole or not at all, the run lock
is released on the way out, and ``RESUME=auto`` starts the run again.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.environments import LightningEnvironment

from lit_colorization.runtime.guards import StepCheckpoint

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
PREEMPTED_EXIT_CODE = 75


class RunPreempted(SystemExit):
    """Raised on every rank after ``last.ckpt`` was written on a stop signal; exits with ``exit_code``."""

    def __init__(self, signum: int, step: int, exit_code: int) -> None:
        super().__init__(exit_code)
        self.signum = signum
        self.step = step


def exit_code_after_stop(trainer: L.Trainer) -> int:
    """``PREEMPTED_EXIT_CODE``, or 0 in a process that Lightning's launcher started (see the module's docstring)."""
    started_by_lightning = isinstance(
        getattr(trainer.strategy, "cluster_environment", None), LightningEnvironment
    )
    return 0 if started_by_lightning and trainer.global_rank > 0 else PREEMPTED_EXIT_CODE


class StopSignals:
    """``with StopSignals() as signals:`` the stop signals over a whole run (see the module's docstring).

    Until ``defer()`` (a Trainer stage has started) a signal raises ``RunPreempted`` at once; after it, a signal is
    only recorded in ``received``, for ``StopOnSignal`` to act on at a step's end.
    """

    def __init__(self) -> None:
        self.received = 0  # the largest signal number received, 0 while none came
        self.deferred = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python takes handlers there only
            self._previous = {signum: signal.signal(signum, self.handle) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def defer(self) -> None:
        """From now on, record signals for the step's end (and take them back from Lightning's handlers)."""
        self.deferred = True
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the main thread.
        self.received = max(self.received, signum)
        if self.deferred:
            return
        print(
            f"{signal.Signals(signum).name} before training started: nothing to save yet; exiting with status "
            f"{PREEMPTED_EXIT_CODE}, continue with RESUME=auto",
            file=sys.stderr,
            flush=True,
        )
        raise RunPreempted(signum, 0, PREEMPTED_EXIT_CODE)


class StopOnSignal(Callback):
    """On SIGTERM or SIGUSR1: ``checkpoint.save`` at the next step's end, then ``RunPreempted`` on every rank.

    ``signals``: the run's own (``StopSignals``), when it listens from before the Trainer; else one of its own.
    """

    def __init__(self, checkpoint: StepCheckpoint, signals: StopSignals | None = None) -> None:
        self.checkpoint = checkpoint
        self.signals = signals if signals is not None else StopSignals()
        self._group: Any = None  # the process group of the decision; None: the default one
        self._distributed = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._distributed or trainer.world_size == 1 or not dist.is_initialized():
            return
        # The decision travels on the CPU, so that asking it every step never waits for the device.
        if dist.get_backend() != "gloo":
            self._group = dist.new_group(backend="gloo")  # every rank runs setup: a collective call
        self._distributed = True

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_signals()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._take_over_signals()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        signum = self._agreed_signal()
        if not signum:
            return
        self.checkpoint.save(trainer, wait=True)  # on disk before the process exits
        if trainer.is_global_zero:
            print(
                f"{signal.Signals(signum).name}: saved {self.checkpoint.path} at step {trainer.global_step}; "
                f"exiting with status {PREEMPTED_EXIT_CODE}, continue with RESUME=auto",
                file=sys.stderr,
                flush=True,
            )
        raise RunPreempted(signum, trainer.global_step, exit_code_after_stop(trainer))

    def _take_over_signals(self) -> None:
        self.signals.defer()  # outside the main thread Python keeps Lightning's handlers

    def _agreed_signal(self) -> int:
        """The largest signal number any rank received (SIGTERM over SIGUSR1), 0 when none did."""
        if not self._distributed:
            return self.signals.received
        received = torch.tensor([self.signals.received], dtype=torch.int64)
        dist.all_reduce(received, op=dist.ReduceOp.MAX, group=self._group)
        return int(received.item())


class StopBetweenUnits:
    """SIGTERM/SIGUSR1 for work outside a Trainer (feature extraction, per-class SVMs): ``with`` it, the signal
    only is recorded; ``check(done)`` between two units of work that are already on disk raises
    ``RunPreempted`` (exit status 75) if one came. Outside the block the previous handlers are back."""

    def __init__(self) -> None:
        self.received = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopBetweenUnits:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = max(self.received, signum)

    def check(self, done: str, step: int = 0) -> None:
        """Raise ``RunPreempted`` if a stop signal came; ``done`` says what is saved (printed on stderr)."""
        if not self.received:
            return
        print(
            f"{signal.Signals(self.received).name}: {done}; exiting with status {PREEMPTED_EXIT_CODE}, "
            "continue with RESUME=auto",
            file=sys.stderr,
            flush=True,
        )
        raise RunPreempted(self.received, step, PREEMPTED_EXIT_CODE)
