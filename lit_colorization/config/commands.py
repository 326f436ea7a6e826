"""The registry of commands: each command's config is its schema, its YAML files and its checks, loaded one way.

A command registers one ``CommandConfig``; every entry point loads its config with ``CommandConfig.load``
(base file, the command's extra layers, the preset, then ``key=value`` overrides, then the checks), so there is
one loader for pretraining, colorization evaluation and every transfer task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_colorization.config.loading import CONFIG_DIR, ConfigError, load_config, preset_path
from lit_colorization.registry import Registry


@dataclass(frozen=True)
class ExtraLayers:
    """What a command adds once the base, preset and overrides are known (e.g. the network's paper recipe)."""

    files: list[Path] = field(default_factory=list)  # merged after the base file, before the preset
    overrides: list[str] = field(default_factory=list)  # merged before the command line's overrides


@dataclass(frozen=True)
class CommandConfig:
    name: str  # the command, as ``python -m`` and the Makefile name it
    schema: type
    base_file: str  # under configs/
    preset_kind: str | None  # configs/presets/<preset_kind>/<preset>.yaml; None: the command takes no preset
    validate: Callable[[Any], None]
    # Given a first merge of base, preset and overrides: the layers that depend on it.
    extra_layers: Callable[[Any], ExtraLayers] | None = None
    # A run's folder is <runs_dir>/<run_prefix><run>, where resume=auto finds its config.yaml
    # (lit_colorization/config/saved_run.py); None: the command has no resumable runs.
    run_prefix: str | None = None

    def load(self, preset: str | None, overrides: Sequence[str], user_files: Sequence[Path] = ()) -> Any:
        """Base file, extra layers, the preset, the user's files (``--config``), then ``overrides``; checked."""
        base = [CONFIG_DIR / self.base_file]
        if preset is not None and self.preset_kind is None:
            raise ConfigError(f"command line: {self.name} takes no preset, got --preset {preset}")
        presets = [preset_path(self.preset_kind, preset)] if preset is not None else []
        layers = [*presets, *user_files]
        extra = ExtraLayers()
        if self.extra_layers is not None:
            extra = self.extra_layers(load_config(self.schema, [*base, *layers], overrides))
        config = load_config(self.schema, [*base, *extra.files, *layers], [*extra.overrides, *overrides])
        self.validate(config)
        return config

    def load_saved(self, saved: tuple[str, Any], overrides: Sequence[str]) -> Any:
        """The config of a run continued with ``resume=auto``: the base file, the run's saved config (``(origin,
        DictConfig)``; it holds what the preset and the extra layers gave), then ``overrides``; checked."""
        config = load_config(self.schema, [CONFIG_DIR / self.base_file, saved], overrides)
        self.validate(config)
        return config


COMMANDS: Registry[CommandConfig] = Registry("command")


def register_command(command: CommandConfig) -> CommandConfig:
    """Register ``command`` under its name; a re-import (python -m, test reloads) replaces the same entry."""
    return COMMANDS.register(command.name, command, replace=True)
