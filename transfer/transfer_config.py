"""What every transfer command's config shares: the checkpoint it starts from, its run folder, its results, and
the checks of an SGD section."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lit_colorization.config.loading import require


@dataclass
class TransferRunConfig:
    """What every transfer command starts from and where it writes (probe, VOC classification, VOC detection)."""

    # A pretraining checkpoint, "random" (the same network freshly initialised: the Gaussian baseline), or None
    # for the most recently modified <runs_dir>/*/checkpoints/last.ckpt.
    ckpt: str | None = None
    # Network for ckpt=random (None: alexnet, the paper's transfer network); with a checkpoint it must match it.
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # The run folder is <runs_dir>/<task>-<run>; None: a name made from the pretraining run and the settings.
    run: str | None = None
    runs_dir: str = "runs"
    results: str = "results/transfer.jsonl"
    # "auto": continue the run folder's checkpoints/last.ckpt if there is one (its config.yaml is read first:
    # lit_colorization/config/saved_run.py); a path: continue that checkpoint; None: a fresh run (refused where
    # the folder already has a last.ckpt).
    resume: str | None = None


def validate_resume(config: TransferRunConfig) -> None:
    """``resume`` is null, "auto" or a checkpoint path; ``trainer.checkpoint_every_n_steps`` an integer >= 0."""
    require(
        config.resume is None or bool(config.resume),
        "resume",
        "null, 'auto' or a checkpoint path",
        config.resume,
    )
    every = config.trainer.checkpoint_every_n_steps  # type: ignore[attr-defined]
    require(every >= 0, "trainer.checkpoint_every_n_steps", "an integer >= 0", every)


def validate_sgd(optim: Any, milestone_unit: str) -> None:
    """The checks every transfer SGD section shares: lr, momentum, weight decay and a step-wise lr schedule
    whose ``milestones`` count ``milestone_unit``s (epochs or steps)."""
    require(optim.lr > 0, "optim.lr", "a positive number", optim.lr)
    require(0 <= optim.momentum < 1, "optim.momentum", "a number in [0, 1)", optim.momentum)
    require(optim.weight_decay >= 0, "optim.weight_decay", "a number >= 0", optim.weight_decay)
    milestones = list(optim.milestones)
    require(
        all(m > 0 for m in milestones) and milestones == sorted(set(milestones)),
        "optim.milestones",
        f"increasing positive {milestone_unit} numbers",
        milestones,
    )
    require(optim.gamma > 0, "optim.gamma", "a positive number", optim.gamma)
