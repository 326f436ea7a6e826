"""Learning-rate schedules as picklable step functions, so their state survives checkpoints and resumes."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch


class PiecewiseConstant:
    """lr factor by optimizer step: 1 before the first milestone, then ``factors[i]`` from ``milestones[i]`` on."""

    def __init__(self, milestones: Sequence[int], factors: Sequence[float]) -> None:
        if list(milestones) != sorted(milestones):
            raise ValueError(f"lr milestones must be increasing, got {list(milestones)}")
        if len(milestones) != len(factors):
            raise ValueError(f"{len(milestones)} lr milestones but {len(factors)} factors")
        self.milestones = list(milestones)
        self.factors = [1.0, *factors]

    def __call__(self, step: int) -> float:
        return self.factors[bisect.bisect_right(self.milestones, step)]


def step_schedule(
    optimizer: torch.optim.Optimizer,
    base_lr: float,
    milestones: Sequence[int],
    gamma: float,
    milestone_lrs: Sequence[float] = (),
) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr after each milestone is ``milestone_lrs[i]`` when given, else ``base_lr * gamma ** (i + 1)``."""
    if milestone_lrs:
        factors = [lr / base_lr for lr in milestone_lrs]
    else:
        factors = [gamma ** (i + 1) for i in range(len(milestones))]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, PiecewiseConstant(milestones, factors))
