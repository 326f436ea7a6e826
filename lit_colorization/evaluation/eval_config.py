"""The eval-color configuration: its schema (configs/eval_color.yaml), how it is merged, and its checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from lit_colorization.config.commands import CommandConfig, ExtraLayers, register_command
from lit_colorization.config.loading import (
    ConfigError,
    require,
    require_folder_name,
    require_results_path,
)
from lit_colorization.config.schema import LoggerConfig
from lit_colorization.data import DataConfig
from lit_colorization.data.data_config import validate_data_config
from lit_colorization.evaluation.classifier import list_classifiers
from lit_colorization.store.checkpoint import read_checkpoint

DATA_KEYS = frozenset(item.name for item in fields(DataConfig))


@dataclass
class EvalColorConfig:
    ckpts: list[str] = field(default_factory=list)
    temperature: float = 0.38
    sweep: list[float] = field(default_factory=list)
    subset: str | None = None
    classifier: str = "vgg16"
    classifier_weights: str | None = None
    classifier_input_size: int = 224
    rebalance_lam: float | None = None
    gray_threshold: float = 5.0
    name: str | None = None
    out_dir: str = "runs/eval-color"
    results: str = "results/colorization.jsonl"
    num_examples: int = 4
    study_images: int = 100
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def inherited_data(config: EvalColorConfig) -> ExtraLayers:
    """The first checkpoint's ``data`` section, under the command line's overrides."""
    if not config.ckpts:
        raise ConfigError(
            "config key 'ckpts': no checkpoint given; pass --ckpt PATH [PATH ...] (make: CKPT=)"
        )
    run_data = read_checkpoint(config.ckpts[0]).config.get("data") or {}
    return ExtraLayers(
        overrides=[f"data.{key}={json.dumps(value)}" for key, value in run_data.items() if key in DATA_KEYS]
    )


def validate_eval_config(config: EvalColorConfig) -> None:
    require(config.temperature > 0, "temperature", "a positive number", config.temperature)
    require(all(t > 0 for t in config.sweep), "sweep", "positive temperatures", list(config.sweep))
    require(config.num_examples >= 0, "num_examples", "an integer >= 0", config.num_examples)
    require(config.study_images >= 0, "study_images", "an integer >= 0", config.study_images)
    require(
        config.rebalance_lam is None or 0 <= config.rebalance_lam <= 1,
        "rebalance_lam",
        "null or a number in [0, 1]",
        config.rebalance_lam,
    )
    require(config.gray_threshold >= 0, "gray_threshold", "a number >= 0", config.gray_threshold)
    require(
        config.classifier_input_size > 0,
        "classifier_input_size",
        "a positive integer",
        config.classifier_input_size,
    )
    require_folder_name("name", config.name, "a folder name")
    require_results_path(config.results)
    if config.classifier not in list_classifiers():
        raise ConfigError(
            f"config key 'classifier': unknown torchvision classifier {config.classifier!r}; "
            f"expected one of {', '.join(list_classifiers())}"
        )
    for key in ("subset", "classifier_weights"):
        value = getattr(config, key)
        if value is not None and not Path(value).is_file():
            raise FileNotFoundError(f"config key '{key}': file not found: {value}")
    require(
        config.data.source != "shards",
        "data.source",
        "an image folder (the run trained from shards: pass --data <image folder>, make eval-color DATA=...)",
        config.data.source,
    )
    validate_data_config(config.data)


def resolve_device(name: str) -> torch.device:
    """The ``device`` key as a torch device: ``auto`` picks CUDA when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config key 'device': expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device': {name!r} requested but CUDA is not available")
    return device


EVAL_COLOR = register_command(
    CommandConfig(
        name="eval-color",
        schema=EvalColorConfig,
        base_file="eval_color.yaml",
        preset_kind=None,
        validate=validate_eval_config,
        extra_layers=inherited_data,
    )
)
