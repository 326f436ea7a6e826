"""The linear-probe config schema: ``configs/linear_probe.yaml``, an optional preset, then ``key=value`` overrides.

Defaults are the paper's ImageNet probe protocol (REFERENCE.md section 6); every value can be overridden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lit_colorization.cli import preset_path
from lit_colorization.config import (
    CONFIG_DIR,
    BaseTrainerConfig,
    LoggerConfig,
    load_config,
    require,
    require_folder_name,
    require_results_path,
    validate_trainer_config,
)
from lit_colorization.data.config import DataConfig, validate_data_config

ALL_LAYERS = "all"


@dataclass
class ProbeOptimConfig:
    lr: float = 0.01  # per `reference_batch_size` images; scaled linearly by the global batch size
    reference_batch_size: int = 256
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [8, 16, 24])  # epochs at which the lr is multiplied
    gamma: float = 0.1


@dataclass
class ProbeTrainerConfig(BaseTrainerConfig):
    """The probe's trainer; ``seed`` seeds Lightning and each head's initialisation."""

    max_epochs: int = 28
    check_val_every_n_epoch: int = 1
    limit_train_batches: Any = 1.0  # fraction of an epoch or a number of batches
    limit_val_batches: Any = 1.0


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


@dataclass
class ProbeConfig(TransferRunConfig):
    # run=None names the run folder <pretraining run>-<layer>
    layer: str = (
        ALL_LAYERS  # "all" (the network's standard probe layers), one layer, or a comma-separated list
    )
    data: DataConfig = field(default_factory=DataConfig)
    optim: ProbeOptimConfig = field(default_factory=ProbeOptimConfig)
    trainer: ProbeTrainerConfig = field(default_factory=ProbeTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def load_probe_config(preset: str | None, overrides: Sequence[str]) -> ProbeConfig:
    """configs/linear_probe.yaml, then configs/presets/probe/<preset>.yaml (if given), then the overrides."""
    files = [CONFIG_DIR / "linear_probe.yaml"]
    if preset is not None:
        files.append(preset_path("probe", preset))
    config = load_config(ProbeConfig, files, overrides)
    validate_probe_config(config)
    return config


def validate_probe_config(config: ProbeConfig) -> None:
    optim, trainer = config.optim, config.trainer
    require(
        bool(config.layer.strip()), "layer", "'all', a layer name or a comma-separated list", config.layer
    )
    require_folder_name("run", config.run)
    require_results_path(config.results)
    validate_trainer_config(trainer)
    validate_sgd(optim, milestone_unit="epoch")
    require(
        optim.reference_batch_size > 0,
        "optim.reference_batch_size",
        "a positive integer",
        optim.reference_batch_size,
    )
    require(
        not optim.nesterov or optim.momentum > 0,
        "optim.nesterov",
        "false when optim.momentum is 0",
        optim.nesterov,
    )
    require(trainer.max_epochs > 0, "trainer.max_epochs", "a positive integer", trainer.max_epochs)
    require(
        trainer.check_val_every_n_epoch > 0,
        "trainer.check_val_every_n_epoch",
        "a positive integer",
        trainer.check_val_every_n_epoch,
    )
    validate_data_config(config.data)


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
