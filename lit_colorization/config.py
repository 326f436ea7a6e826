"""Strict, typed configuration: OmegaConf structured configs merged from YAML files and ``key=value`` overrides.

Every schema is a dataclass, so a misspelled key or a value of the wrong type is an error before any work starts,
never a silent default. ``load_config`` is shared by pretraining and every transfer command.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from lit_colorization.data.config import DataConfig
from lit_colorization.perf import device_type

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the key or file."""


@dataclass
class ModelConfig:
    name: str = "eccv16"
    # Constructor arguments of the network (e.g. ``width``), stored in checkpoints to rebuild it.
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TargetConfig:
    bins_path: str | None = None  # a (Q, 2) .npy of ab bin centres; None = the canonical 313
    prior_path: str | None = (
        None  # a (Q,) .npy prior; None = the run folder's prior.npy, computed first if absent
    )
    k: int = 5
    sigma: float = 5.0
    lam: float = 0.5
    rebalance: bool = True
    gray_threshold: float = 5.0
    temperature: float = 0.38


@dataclass
class OptimConfig:
    lr: float = 3e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 1e-3
    milestones: list[int] = field(
        default_factory=lambda: [200_000]
    )  # optimizer steps at which the lr changes
    gamma: float = 0.1  # lr factor at each milestone, unless milestone_lrs gives the lr after each one
    milestone_lrs: list[float] = field(default_factory=list)
    fused: bool | None = None  # fused Adam; None: on CUDA, not elsewhere (lit_colorization/perf.py)


@dataclass
class BaseTrainerConfig:
    """The Lightning Trainer settings of every command: where it runs, in what precision, how it reports."""

    accelerator: str = "auto"
    devices: Any = "auto"  # int, list of ids or "auto" (Makefile: GPUS)
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    log_every_n_steps: int = 50
    seed: int = 0
    progress_bar: bool = True
    # Steps between progress-bar updates; each update waits for the device to show the loss. None: every
    # step on a CPU, every CUDA_PROGRESS_BAR_STEPS steps on CUDA.
    progress_bar_every_n_steps: int | None = None


CUDA_PROGRESS_BAR_STEPS = 25


def validate_trainer_config(trainer: BaseTrainerConfig) -> None:
    """The checks of the trainer keys every command shares, made when its config is loaded."""
    every = trainer.progress_bar_every_n_steps
    require(
        every is None or every >= 1, "trainer.progress_bar_every_n_steps", "null or an integer >= 1", every
    )


def lightning_trainer_args(
    trainer: BaseTrainerConfig, precision: str | None = None, callbacks: Sequence[Callback] = ()
) -> dict[str, Any]:
    """The ``L.Trainer`` keyword arguments of a trainer section's shared fields, ``callbacks`` included (with
    the progress bar); ``precision`` replaces the section's own where the command resolves it first
    (pretraining's ``auto``)."""
    every = trainer.progress_bar_every_n_steps
    if every is None:
        every = CUDA_PROGRESS_BAR_STEPS if device_type(trainer.accelerator) == "cuda" else 1
    progress_bar = [TQDMProgressBar(refresh_rate=every)] if trainer.progress_bar else []
    return {
        "accelerator": trainer.accelerator,
        "devices": trainer.devices,
        "num_nodes": trainer.num_nodes,
        "strategy": trainer.strategy,
        "precision": precision or trainer.precision,
        "log_every_n_steps": trainer.log_every_n_steps,
        "enable_progress_bar": trainer.progress_bar,
        "callbacks": [*callbacks, *progress_bar],
    }


@dataclass
class TrainerConfig(BaseTrainerConfig):
    """Pretraining's trainer. Its ``precision`` also takes ``auto`` (bf16-mixed on CUDA, else 32-true); off CUDA,
    mixed precision and compile fall back to fp32 eager (lit_colorization/perf.py says so once)."""

    max_steps: int = 450_000
    val_check_interval: Any = 1.0  # fraction of an epoch or a number of steps
    check_val_every_n_epoch: int | None = 1
    limit_val_batches: Any = 1.0
    checkpoint_every_n_steps: int = 1000  # steps between writes of last.ckpt (0: only at max_steps)
    validate_before_training: bool = True  # a fresh run first scores the untrained network (logged at step 0)
    gradient_clip_val: float | None = None
    channels_last: bool = False
    compile: bool = False  # torch.compile of the network, in place (CUDA only)
    tf32: bool = True  # TF32 for what stays fp32 on CUDA (matmuls and convolutions)


@dataclass
class LoggerConfig:
    kind: str = "auto"  # auto (wandb when configured, else csv) | wandb | csv | none
    project: str = "lit-colorization"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    name: str | None = None  # defaults to the run name


@dataclass
class PretrainConfig:
    run: str = "sample"
    runs_dir: str = "runs"
    resume: str | None = None  # "auto" (the run's last checkpoint, if any) or a checkpoint path
    loss: str = "classification"  # classification | l2 (the paper's regression baseline)
    num_val_images_logged: int = 8
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, DictConfig):
        return []
    keys = []
    for key in node:
        full = f"{prefix}{key}"
        keys.append(full)
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            keys.extend(_all_keys(child, f"{full}."))
    return keys


def _explain(error: OmegaConfBaseException, schema: DictConfig, origin: str) -> ConfigError:
    full_key = getattr(error, "full_key", None) or "?"
    if isinstance(error, ConfigKeyError):
        close = difflib.get_close_matches(full_key, _all_keys(schema), n=3, cutoff=0.6)
        hint = f" (did you mean: {', '.join(close)}?)" if close else ""
        return ConfigError(f"{origin}: unknown config key '{full_key}'{hint}")
    if isinstance(error, ValidationError):
        reason = str(error).splitlines()[0]
        return ConfigError(f"{origin}: bad value for config key '{full_key}': {reason}")
    return ConfigError(f"{origin}: {str(error).splitlines()[0]}")


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = OmegaConf.load(path)
    except Exception as error:  # YAML syntax errors come in several types
        raise ConfigError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from error
    if isinstance(loaded, ListConfig):
        raise ConfigError(f"{path}: expected a mapping of config keys, found a list")
    return loaded


def parse_overrides(overrides: Iterable[str]) -> DictConfig:
    items = list(overrides)
    for item in items:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"command line: override '{item}' is not of the form key=value")
    return OmegaConf.from_dotlist(items)


def load_config(schema: type[T], files: Sequence[Path] = (), overrides: Iterable[str] = ()) -> T:
    """Merge ``files`` (in order) then ``overrides`` onto the dataclass ``schema``; return a typed DictConfig.

    Each source is merged on its own so an error names the file or the command line it came from.
    """
    config = OmegaConf.structured(schema)
    layers = [(str(path), _read_yaml(Path(path))) for path in files]
    layers.append(("command line", parse_overrides(overrides)))
    for origin, layer in layers:
        try:
            config = OmegaConf.merge(config, layer)
        except OmegaConfBaseException as error:
            raise _explain(error, OmegaConf.structured(schema), origin) from None
    OmegaConf.set_readonly(config, True)
    return config  # type: ignore[return-value]


def to_container(config: Any) -> dict[str, Any]:
    """A resolved plain-``dict`` copy: what checkpoints and loggers store (no OmegaConf objects)."""
    return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]


def require(condition: bool, key: str, expected: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}': expected {expected}, got {value!r}")


def require_folder_name(key: str, value: str | None, expected: str = "a name without '/'") -> None:
    """``value`` names one folder under a runs directory; None (the command picks the name) passes."""
    require(value is None or (bool(value) and "/" not in value), key, expected, value)


def require_results_path(results: str) -> None:
    require(bool(results), "results", "a path to a .jsonl file", results)
