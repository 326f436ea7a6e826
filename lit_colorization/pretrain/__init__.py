"""Colorization pretraining: the LightningModule, losses, schedules, priors, initialisation and ``pretrain()``."""

__all__ = [
    "initialisation",
    "losses",
    "module",
    "pretrain_config",
    "pretraining",
    "priors",
    "schedules",
    "target_setup",
]
