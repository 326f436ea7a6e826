"""The linear-probe config schema: ``configs/linear_probe.yaml``, an optional preset, then ``key=value`` overrides.

Defaults are the paper's ImageNet probe protocol (docs/reference.md section 6); every value can be overridden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lit_colorization.config.commands import CommandConfig, register_command
from lit_colorization.config.loading import (
    require,
    require_folder_name,
    require_results_path,
    validate_trainer_config,
)
from lit_colorization.config.schema import BaseTrainerConfig, LoggerConfig
from lit_colorization.data.config import DataConfig, validate_data_config
from transfer.config import TransferRunConfig, validate_sgd

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
class ProbeConfig(TransferRunConfig):
    # run=None names the run folder <pretraining run>-<layer>
    layer: str = (
        ALL_LAYERS  # "all" (the network's standard probe layers), one layer, or a comma-separated list
    )
    # The number of class folders data.root must hold (e.g. 205 for Places205); None: whatever it holds.
    expected_classes: int | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: ProbeOptimConfig = field(default_factory=ProbeOptimConfig)
    trainer: ProbeTrainerConfig = field(default_factory=ProbeTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


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
    require(
        config.expected_classes is None or config.expected_classes > 0,
        "expected_classes",
        "a positive integer or null",
        config.expected_classes,
    )
    validate_data_config(config.data)


def check_class_count(config: ProbeConfig, classes: Sequence[str]) -> None:
    """Refuse a dataset whose class folders are not the ``expected_classes`` the preset was written for."""
    expected = config.expected_classes
    if expected is not None and len(classes) != expected:
        shown = ", ".join(list(classes)[:5]) + (", ..." if len(classes) > 5 else "")
        raise ValueError(
            f"config key 'expected_classes': {config.data.root}/{config.data.train_split} holds {len(classes)} "
            f"class folders ({shown}), expected {expected}: one folder per class, e.g. "
            f"{config.data.train_split}/<class>/<image>.jpg"
        )


PROBE = register_command(
    CommandConfig(
        name="linear-probe",
        schema=ProbeConfig,
        base_file="linear_probe.yaml",
        preset_kind="probe",
        validate=validate_probe_config,
    )
)
