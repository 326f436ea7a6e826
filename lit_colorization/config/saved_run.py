"""``resume=auto`` continues a run with the settings it started with: every command's config is loaded here.

With ``resume=auto`` and a run folder that holds a ``config.yaml`` (``<runs_dir>/<run_prefix><run>``, the command's
``CommandConfig.run_prefix``), the config is the base file, then that saved config (which holds what the preset,
the network's recipe and the command line gave at the start; keys it holds that the schema does not know, such as
pretraining's ``scale``, are left out), then the command line. So ``make pretrain RUN=x RESUME=auto`` alone
continues run x with its preset, data and devices; the preset and ``--config`` files named on the command line are
not read.

A key given on the command line that differs from the saved run is applied where changing it is safe
(``SAFE_TO_CHANGE``: more steps or epochs, the logger, the dataloader workers, the progress bar and the checkpoint
cadence) and otherwise refused in one line naming the key and both values.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lit_colorization.config.commands import CommandConfig
from lit_colorization.config.loading import ConfigError, parse_overrides, read_yaml

log = logging.getLogger(__name__)
SAVED_CONFIG = "config.yaml"
# Keys (or, ending in ".", sections) a continued run may change: they alter how it runs, not what it computes.
SAFE_TO_CHANGE = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "logger.",
    "data.num_workers",
    "data.persistent_workers",
    "data.pin_memory",
    "data.index_cache",
    "trainer.progress_bar",
    "trainer.progress_bar_every_n_steps",
    "trainer.log_every_n_steps",
    "trainer.checkpoint_every_n_steps",
    "results",
)
# Of those, keys that may only grow: fewer steps would end the run before where it already is.
ONLY_MORE = ("trainer.max_steps", "trainer.max_epochs")
# Keys that find the run or ask to continue it, never compared.
RUN_KEYS = ("run", "runs_dir", "resume")


def is_safe_to_change(key: str) -> bool:
    return any(key == safe or (safe.endswith(".") and key.startswith(safe)) for safe in SAFE_TO_CHANGE)


def known_keys_only(saved: Any, schema_node: Any) -> Any:
    """``saved`` without the keys ``schema_node`` (a structured DictConfig) does not have, at every depth."""
    if not isinstance(saved, dict) or not isinstance(schema_node, DictConfig):
        return saved
    kept = {}
    for key, value in saved.items():
        if key not in schema_node:
            continue
        child = schema_node._get_node(key)
        # A schema section (a dataclass) is filtered; a free mapping (e.g. model.kwargs) is kept whole.
        is_section = (
            isinstance(child, DictConfig)
            and not child._is_none()
            and not child._is_missing()
            and dataclasses.is_dataclass(OmegaConf.get_type(child))
        )
        kept[key] = known_keys_only(value, child) if is_section and isinstance(value, dict) else value
    return kept


def same_setting(before: Any, after: Any) -> bool:
    """Equal values, or two spellings of one existing file or folder (relative and absolute)."""
    if before == after:
        return True
    if isinstance(before, str) and isinstance(after, str) and Path(before).exists():
        return Path(before).resolve() == Path(after).resolve()
    return False


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """The leaf keys of a nested mapping as ``a.b.c``."""
    if not isinstance(node, dict) or not node:
        return [prefix[:-1]] if prefix else []
    return [key for name, value in node.items() for key in dotted_keys(value, f"{prefix}{name}.")]


def saved_run_folder(command: CommandConfig, config: Any) -> Path | None:
    """Where a run of ``command`` with ``config`` keeps its ``config.yaml``; None where the command line does not
    name it (a transfer run without ``run=``: its name comes from the checkpoint)."""
    if command.run_prefix is None or getattr(config, "run", None) is None:
        return None
    return Path(config.runs_dir) / f"{command.run_prefix}{config.run}"


def load_command_config(
    command: CommandConfig, preset: str | None, overrides: Sequence[str], user_files: Sequence[Path] = ()
) -> Any:
    """``command``'s config from ``preset``, ``user_files`` (``--config``) and ``overrides``, or, with
    ``resume=auto`` on a run that has a saved ``config.yaml``, from that file and ``overrides`` (see the module's
    docstring)."""
    first = command.load(preset, overrides, user_files)
    if getattr(first, "resume", None) != "auto":
        return first
    run_dir = saved_run_folder(command, first)
    saved_path = None if run_dir is None else run_dir / SAVED_CONFIG
    if saved_path is None or not saved_path.is_file():
        return first
    schema = OmegaConf.structured(command.schema)
    saved = OmegaConf.create(known_keys_only(OmegaConf.to_container(read_yaml(saved_path)), schema))
    as_saved = command.load_saved((str(saved_path), saved), [])
    config = command.load_saved((str(saved_path), saved), overrides)
    given = dotted_keys(OmegaConf.to_container(parse_overrides(overrides)))
    for key in given:
        if key in RUN_KEYS:
            continue
        before, after = OmegaConf.select(as_saved, key), OmegaConf.select(config, key)
        if same_setting(before, after):
            continue
        if not is_safe_to_change(key):
            raise ConfigError(
                f"resume=auto: config key '{key}' is {_shown(after)} on the command line but {_shown(before)} in "
                f"{saved_path}; a continued run keeps it (start another run with another RUN to change it)"
            )
        if key in ONLY_MORE and before is not None and after is not None and 0 <= after < before:
            raise ConfigError(
                f"resume=auto: config key '{key}' is {after} on the command line but {before} in {saved_path}; "
                "a continued run can only be made longer"
            )
        log.info("resume=auto: %s changed from %s to %s", key, _shown(before), _shown(after))
    if preset is not None or user_files:
        log.info(
            "resume=auto: continuing with %s (the preset and --config files are not read again)", saved_path
        )
    return config


def _shown(value: Any) -> str:
    if isinstance(value, DictConfig):
        return repr(OmegaConf.to_container(value))
    return repr(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
