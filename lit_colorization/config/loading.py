"""Strict loading of configuration: YAML files and ``key=value`` overrides merged onto a dataclass schema.

Every schema is a dataclass, so a misspelled key or a value of the wrong type is an error naming the file or the
command line before any work starts, never a silent default.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from lit_colorization.config.schema import BaseTrainerConfig

# The YAML presets: package data of lit_colorization (in a checkout, a link to the top-level configs/).
CONFIG_DIR = Path(str(resources.files("lit_colorization").joinpath("configs")))

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, with a one-line message naming the key or file."""


def available_presets(kind: str) -> list[str]:
    """The preset names of ``kind`` (configs/presets/<kind>/<name>.yaml), sorted."""
    return sorted(path.stem for path in (CONFIG_DIR / "presets" / kind).glob("*.yaml"))


def preset_path(kind: str, name: str) -> Path:
    """The file of preset ``name`` of ``kind``; an unknown name is an error listing the available ones."""
    path = CONFIG_DIR / "presets" / kind / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no preset '{name}' for {kind}; available: {available_presets(kind)}")
    return path


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


def read_yaml(path: Path) -> DictConfig:
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


def load_config(
    schema: type[T], files: Sequence[Path | tuple[str, DictConfig]] = (), overrides: Iterable[str] = ()
) -> T:
    """Merge ``files`` (in order; a file, or an (origin, config) pair already read) then ``overrides`` onto the
    dataclass ``schema``; return a typed DictConfig.

    Each source is merged on its own so an error names the file or the command line it came from.
    """
    config = OmegaConf.structured(schema)
    layers = [item if isinstance(item, tuple) else (str(item), read_yaml(Path(item))) for item in files]
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


MAX_FOLDER_NAME_BYTES = 100  # well under a filesystem's 255, leaving room for the prefixes commands add


def require_folder_name(key: str, value: str | None, expected: str = "a name") -> None:
    """``value`` names one folder under a runs directory, as a single safe path component (not '.' or '..', no
    separator or control character, at most ``MAX_FOLDER_NAME_BYTES`` bytes); None (the command picks it) passes."""
    safe = value is None or (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and not any(char in value for char in "/\\")
        and value.isprintable()
        and len(value.encode("utf-8", "surrogateescape")) <= MAX_FOLDER_NAME_BYTES
    )
    require(
        safe,
        key,
        f"{expected}: one folder name, not '.' or '..', without '/' or '\\', at most {MAX_FOLDER_NAME_BYTES} bytes",
        value if value is None or len(value) <= 120 else value[:60] + f"... ({len(value)} characters)",
    )


def require_results_path(results: str) -> None:
    require(bool(results), "results", "a path to a .jsonl file", results)


def validate_trainer_config(trainer: BaseTrainerConfig) -> None:
    """The checks of the trainer keys every command shares, made when its config is loaded."""
    every = trainer.progress_bar_every_n_steps
    require(
        every is None or every >= 1, "trainer.progress_bar_every_n_steps", "null or an integer >= 1", every
    )
