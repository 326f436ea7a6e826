"""What every resumable command shares: which checkpoint a start continues, the random state a step leaves for the
next, and the callbacks that write ``last.ckpt`` on a cadence and on SIGTERM/SIGUSR1.

Pretraining (lit_colorization/pretrain/pretraining.py), the linear probe and the VOC tasks (transfer/) all continue
a run with ``resume=auto`` from ``<run folder>/checkpoints/last.ckpt``, written atomically at the end of a step;
a stop signal writes it at the end of the step in flight and exits with status 75 (``preemption.py``).
"""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from lit_colorization.config.loading import ConfigError
from lit_colorization.runtime.guards import StepCheckpoint
from lit_colorization.runtime.preemption import StopOnSignal

log = logging.getLogger(__name__)
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"
# Lightning warns on every mid-epoch resume unless the DataLoader has state_dict(); the samplers of
# lit_colorization.data.sampling resume exactly without one (they start after the batches already trained on).
NOT_RESUMABLE_WARNING = "You're resuming from a checkpoint that ended before the epoch ended"


def checkpoint_to_resume(resume: str | None, run_dir: Path) -> str | None:
    """The checkpoint a start of ``run_dir`` continues from (``resume``: None, "auto" or a path); refuses to start
    over a run that already has a ``last.ckpt`` unless asked to continue it."""
    last = run_dir / LAST_CHECKPOINT
    if resume is None:
        if last.exists() and rank_zero_only.rank == 0:
            raise ConfigError(
                f"{run_dir}: this run already has checkpoints; continue it with RESUME=auto (resume=auto) "
                "or start a new one with another RUN"
            )
        return None
    if resume == "auto":
        if last.exists():
            return str(last)
        log.info("resume=auto: no checkpoint in %s yet, starting from scratch", last.parent)
        return None
    if not Path(resume).is_file():
        raise ConfigError(f"config key 'resume': checkpoint not found: {resume}")
    return resume


def remove_stale_temporaries(checkpoint_dir: Path) -> None:
    """Delete the temporary files of checkpoint writes cut short by a kill (each as large as a checkpoint)."""
    for stale in checkpoint_dir.glob(".*.ckpt.*.tmp"):  # the names atomic_open gives them
        log.info("removing %s, left by a checkpoint write that was interrupted", stale)
        stale.unlink(missing_ok=True)


def numpy_state() -> dict[str, Any]:
    """NumPy's global generator state in types that ``torch.load(weights_only=True)`` reads back."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(
        (state["name"], keys, state["position"], state["has_gauss"], state["cached_gaussian"])
    )


class RandomState(Callback):
    """Keeps the process's random generators (Python, NumPy, torch CPU and CUDA) in every checkpoint and puts them
    back on resume, so that what draws from them during steps (dropout, Faster R-CNN's proposal sampling) draws
    after a resume what it would have drawn without the stop. Data order and augmentation take their numbers
    from (seed, epoch, index) instead (lit_colorization/data/sampling.py, crops.py)."""

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": numpy_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        set_numpy_state(state_dict["numpy"])
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def resumable_callbacks(run_dir: Path, every_n_steps: int) -> list[Callback]:
    """``last.ckpt`` every ``every_n_steps`` steps and at the end, the random state in it, and the stop on
    SIGTERM/SIGUSR1 (last: the other callbacks finish the step it stops after)."""
    last = StepCheckpoint(run_dir / LAST_CHECKPOINT, every_n_steps)
    return [RandomState(), last, StopOnSignal(last)]


def fit_resumable(trainer: L.Trainer, module: L.LightningModule, resume: str | None, **data: Any) -> None:
    """``trainer.fit(module, **data)``, continuing from ``resume`` (a checkpoint path or None).

    The resumed file is data: read as plain containers and tensors (store/checkpoint.py writes it so).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NOT_RESUMABLE_WARNING, category=PossibleUserWarning)
        trainer.fit(module, ckpt_path=resume, weights_only=True, **data)
