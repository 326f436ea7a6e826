"""The linear-probe config schema: ``configs/linear_probe.yaml``, an optional preset, then ``key=value`` overrides.

``protocol`` names the probe protocol (transfer/probe/protocols.py, docs/reference.md section 6.1): it fixes each
layer's reduction and BatchNorm, and fills every ``optim`` and ``schedule`` key left null; a key the config sets
overrides the protocol's value. The run's ``config.yaml`` records the values it trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_colorization.config.commands import CommandConfig, ExtraLayers, register_command
from lit_colorization.config.loading import (
    ConfigError,
    require,
    require_folder_name,
    require_results_path,
    to_container,
    validate_trainer_config,
)
from lit_colorization.config.schema import BaseTrainerConfig, LoggerConfig
from lit_colorization.data.data_config import DataConfig, validate_data_config
from transfer.transfer_config import TransferRunConfig, validate_resume

if TYPE_CHECKING:  # protocols import torch: the schema loads without it (the command's --help stays fast)
    from transfer.probe.protocols import ProbeOptimizer, ProbeSchedule

ALL_LAYERS = "all"
DEFAULT_PROTOCOL = "zhang16"  # the paper's table (docs/reference.md section 7), which this project reproduces


@dataclass
class ProbeOptimConfig:
    """SGD of the heads; every key left null takes the protocol's value."""

    lr: float | None = None  # per `reference_batch_size` images; scaled linearly by the global batch size
    reference_batch_size: int | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    decay_norm_and_bias: bool | None = None  # false: no weight decay on BatchNorm parameters and biases
    gamma: float | None = None  # lr factor at each milestone


@dataclass
class ProbeScheduleConfig:
    """The run's length and lr milestones; null keys take the protocol's (140000 steps, x0.1 at 40k/80k/120k).

    A length without milestones keeps the protocol's milestones at the same fractions of the run.
    """

    unit: str | None = None  # step | epoch
    length: int | None = None  # in units
    milestones: list[int] | None = None  # in units


@dataclass
class ProbeTrainerConfig(BaseTrainerConfig):
    """The probe's trainer; ``seed`` seeds Lightning and each head's initialisation."""

    check_val_every_n_epoch: int = 1
    limit_train_batches: Any = 1.0  # fraction of an epoch or a number of batches
    limit_val_batches: Any = 1.0
    checkpoint_every_n_steps: int = (
        1000  # steps between writes of last.ckpt (0: only at the end and on a stop)
    )


@dataclass
class ProbeDataConfig(DataConfig):
    """The probe's images; ``resize_mode`` null takes the protocol's (zhang16: squash, goyal19: shorter_side)."""

    resize_mode: str | None = None  # type: ignore[assignment]


@dataclass
class ProbeConfig(TransferRunConfig):
    # run=None names the run folder <pretraining run>-<layer>
    layer: str = (
        ALL_LAYERS  # "all" (the network's standard probe layers), one layer, or a comma-separated list
    )
    protocol: str = DEFAULT_PROTOCOL  # zhang16 | goyal19
    # The number of class folders data.root must hold (e.g. 205 for Places205); None: whatever it holds.
    expected_classes: int | None = None
    # The dataset's name in results rows, the W&B config (Config('dataset')) and make compare's sections;
    # None: data.root's folder name (data.source=folder), else the source (embedded, synthetic).
    dataset: str | None = None
    data: ProbeDataConfig = field(default_factory=ProbeDataConfig)
    optim: ProbeOptimConfig = field(default_factory=ProbeOptimConfig)
    schedule: ProbeScheduleConfig = field(default_factory=ProbeScheduleConfig)
    trainer: ProbeTrainerConfig = field(default_factory=ProbeTrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def dataset_name(config: ProbeConfig) -> str:
    """The probe's dataset as its rows, W&B and ``make compare`` name it: ``dataset``, else data.root's folder
    name (data.source=folder), else the data's source."""
    if config.dataset is not None:
        return config.dataset
    data = config.data
    return Path(data.root).resolve().name if data.source == "folder" else data.source


def probe_schedule(config: ProbeConfig) -> ProbeSchedule:
    """The schedule the run follows: the protocol's, with what ``config.schedule`` sets."""
    from transfer.probe.protocols import get_protocol, resolve_schedule

    schedule = config.schedule
    milestones = None if schedule.milestones is None else list(schedule.milestones)
    try:
        return resolve_schedule(
            get_protocol(config.protocol).schedule, schedule.unit, schedule.length, milestones
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None


def protocol_resize_mode(config: ProbeConfig) -> ExtraLayers:
    """The protocol's ``data.resize_mode`` (zhang16: squash, goyal19: shorter_side) where the config leaves it
    null, as a layer under the command line's overrides; an unknown protocol is left to validation."""
    from transfer.probe.protocols import PROTOCOLS

    if config.data.resize_mode is not None or config.protocol not in PROTOCOLS:
        return ExtraLayers()
    return ExtraLayers(overrides=[f"data.resize_mode={PROTOCOLS.get(config.protocol).resize_mode}"])


def probe_optimizer(config: ProbeConfig, model_name: str) -> ProbeOptimizer:
    """The SGD settings the run follows on ``model_name``: the protocol's, with what ``config.optim`` sets."""
    from transfer.probe.protocols import get_protocol, resolve_optimizer

    return resolve_optimizer(
        get_protocol(config.protocol).optimizer_for(model_name), to_container(config.optim)
    )


def validate_probe_config(config: ProbeConfig) -> None:
    from transfer.probe.protocols import PROTOCOLS, SCHEDULE_UNITS

    trainer, schedule = config.trainer, config.schedule
    require(
        bool(config.layer.strip()), "layer", "'all', a layer name or a comma-separated list", config.layer
    )
    require(config.protocol in PROTOCOLS, "protocol", f"one of {sorted(PROTOCOLS)}", config.protocol)
    require_folder_name("run", config.run)
    require_results_path(config.results)
    validate_trainer_config(trainer)
    validate_resume(config)
    require(
        schedule.unit is None or schedule.unit in SCHEDULE_UNITS,
        "schedule.unit",
        f"null or one of {list(SCHEDULE_UNITS)}",
        schedule.unit,
    )
    require(
        schedule.length is None or schedule.length > 0,
        "schedule.length",
        "null or a positive integer",
        schedule.length,
    )
    # The values the run would use (a null key is the protocol's; only weight decay depends on the network).
    resolved = probe_schedule(config)
    optim = probe_optimizer(config, model_name="")
    milestones = list(resolved.milestones)
    require(
        all(m > 0 for m in milestones) and milestones == sorted(set(milestones)),
        "schedule.milestones",
        f"increasing positive {resolved.unit} numbers",
        milestones,
    )
    require(optim.lr > 0, "optim.lr", "a positive number", optim.lr)
    require(0 <= optim.momentum < 1, "optim.momentum", "a number in [0, 1)", optim.momentum)
    require(optim.weight_decay >= 0, "optim.weight_decay", "a number >= 0", optim.weight_decay)
    require(optim.gamma > 0, "optim.gamma", "a positive number", optim.gamma)
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
    require(
        trainer.check_val_every_n_epoch > 0,
        "trainer.check_val_every_n_epoch",
        "a positive integer",
        trainer.check_val_every_n_epoch,
    )
    require(
        config.dataset is None or (bool(config.dataset.strip()) and "/" not in config.dataset),
        "dataset",
        "null or a name without '/' (e.g. imagenet, places205)",
        config.dataset,
    )
    require(
        config.expected_classes is None or config.expected_classes > 0,
        "expected_classes",
        "a positive integer or null",
        config.expected_classes,
    )
    require(
        config.data.source != "shards",
        "data.source",
        "folder, embedded or synthetic (a probe needs class names, which shards do not keep)",
        config.data.source,
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
        run_prefix="probe-",
        extra_layers=protocol_resize_mode,
    )
)
