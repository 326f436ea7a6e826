"""Shared plumbing of the command-line entry points: config loading per preset and one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lit_colorization.checkpoint import CheckpointError
from lit_colorization.config import (
    CONFIG_DIR,
    ConfigError,
    PretrainConfig,
    load_config,
    require,
    require_folder_name,
    validate_trainer_config,
)
from lit_colorization.data.config import validate_data_config
from lit_colorization.models import create_model, list_models
from lit_colorization.perf import settings_for

WORKER_TRACEBACK_MARKER = "\nOriginal Traceback"
# Errors a user can fix from the message alone: printed as one line, without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, FileNotFoundError, ValueError)


def preset_path(kind: str, name: str) -> Path:
    path = CONFIG_DIR / "presets" / kind / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"{path}: no preset '{name}' for {kind}; available: {available}")
    return path


def load_pretrain_config(preset: str, overrides: Sequence[str]) -> PretrainConfig:
    """configs/pretrain.yaml, then the network's paper recipe (configs/models/<name>.yaml), the preset, the overrides.

    The network is the one the overrides or the preset name, so its recipe sits under both.
    """
    base, preset_file = CONFIG_DIR / "pretrain.yaml", preset_path("pretrain", preset)
    model_name = load_config(PretrainConfig, [base, preset_file], overrides).model.name
    if model_name not in list_models():
        raise ConfigError(f"config key 'model.name': unknown model {model_name!r}; valid: {list_models()}")
    config = load_config(
        PretrainConfig, [base, CONFIG_DIR / "models" / f"{model_name}.yaml", preset_file], overrides
    )
    validate_pretrain_config(config)
    return config


def validate_pretrain_config(config: PretrainConfig) -> None:
    require(config.loss in ("classification", "l2"), "loss", "'classification' or 'l2'", config.loss)
    require(config.targets.k >= 1, "targets.k", "an integer >= 1", config.targets.k)
    require(config.targets.sigma > 0, "targets.sigma", "a positive number", config.targets.sigma)
    require(0 <= config.targets.lam <= 1, "targets.lam", "a number in [0, 1]", config.targets.lam)
    require(
        config.targets.temperature > 0, "targets.temperature", "a positive number", config.targets.temperature
    )
    require(config.trainer.max_steps > 0, "trainer.max_steps", "a positive integer", config.trainer.max_steps)
    require(
        config.trainer.checkpoint_every_n_steps >= 0,
        "trainer.checkpoint_every_n_steps",
        "an integer >= 0",
        config.trainer.checkpoint_every_n_steps,
    )
    validate_trainer_config(config.trainer)
    settings_for(config.trainer, config.optim)  # an unknown precision is an error before any work
    require(config.optim.lr > 0, "optim.lr", "a positive number", config.optim.lr)
    require(
        not config.optim.milestone_lrs or len(config.optim.milestone_lrs) == len(config.optim.milestones),
        "optim.milestone_lrs",
        f"one lr per milestone ({len(config.optim.milestones)}) or an empty list",
        list(config.optim.milestone_lrs),
    )
    require(len(config.optim.betas) == 2, "optim.betas", "two numbers", list(config.optim.betas))
    require_folder_name("run", config.run, "a run name without '/'")
    for optional_file in ("bins_path", "prior_path"):
        value = getattr(config.targets, optional_file)
        if value is not None and not Path(value).is_file():
            raise ConfigError(f"config key 'targets.{optional_file}': file not found: {value}")
    validate_data_config(config.data)
    stride = create_model(config.model.name, **config.model.kwargs).output_stride
    require(
        config.data.crop_size % stride == 0,
        "data.crop_size",
        f"a multiple of {config.model.name}'s output stride {stride}",
        config.data.crop_size,
    )


def one_line(error: BaseException) -> str:
    """The message of ``error``; for an error re-raised from a DataLoader worker, the original one's message."""
    message = str(error)
    if (
        WORKER_TRACEBACK_MARKER in message
    ):  # "Caught X in DataLoader worker ...\nOriginal Traceback ...\nX: msg"
        last_line = message.rstrip().splitlines()[-1]
        return last_line.split(": ", 1)[-1]
    return message


def run_cli(main: Callable[[], None]) -> None:
    """Run ``main``; a user error ends the process with one line on stderr and exit status 2.

    ``LIT_COLORIZATION_DEBUG=1`` shows the traceback instead.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except USER_ERRORS as error:
        if os.environ.get("LIT_COLORIZATION_DEBUG"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)


def run_preset_command(
    description: str,
    preset_help: str,
    command: Callable[[str | None, list[str]], Any],
    argv: Sequence[str] | None = None,
    default_preset: str | None = None,
) -> None:
    """Parse ``[--preset NAME] key=value ...`` from ``argv`` and run ``command(preset, overrides)`` via ``run_cli``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--preset", default=default_preset, help=preset_help)
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)
    run_cli(lambda: command(args.preset, args.overrides))
