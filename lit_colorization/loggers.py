"""Experiment loggers: Weights & Biases when configured (offline when not logged in), else CSV, or none.

Logger faults never stop training: a missing or unusable wandb falls back to CSV with one warning.
Only rank 0 touches run files; Lightning's loggers already restrict experiment creation to rank 0.
"""

from __future__ import annotations

import logging
import netrc
import os
import secrets
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_colorization.atomic import write_text

LOGGER_KINDS = ("auto", "wandb", "csv", "none")
WANDB_ID_FILE = "wandb_run_id.txt"
log = logging.getLogger(__name__)


def wandb_logged_in() -> bool:
    """Credentials for W&B exist (an API key in the environment or in ~/.netrc), without any network call."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_installed() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def _wandb_run_id(run_dir: Path, offline: bool) -> str:
    """Online runs keep one W&B id across resumes; offline runs cannot be resumed by W&B, so each gets a new one."""
    id_file = run_dir / WANDB_ID_FILE
    if not offline and id_file.is_file():
        return id_file.read_text().strip()
    if offline and id_file.is_file():
        log.warning("W&B is offline: offline runs cannot be resumed, this attempt logs to a new W&B run")
    run_id = secrets.token_hex(4)
    if rank_zero_only.rank == 0:
        write_text(id_file, run_id + "\n")
    return run_id


def build_logger(
    logger_config: Any,
    run_dir: Path,
    run_name: str,
    job_type: str,
    config: dict[str, Any],
    group: str | None = None,
) -> Logger | bool:
    """The Lightning logger for ``logger_config.kind``; ``False`` for none."""
    kind = logger_config.kind
    if kind not in LOGGER_KINDS:
        raise ValueError(f"config key 'logger.kind': expected one of {LOGGER_KINDS}, got {kind!r}")
    if kind == "none":
        return False
    if kind == "auto":
        kind = "wandb" if wandb_installed() and wandb_logged_in() else "csv"
    if kind == "wandb" and not wandb_installed():
        log.warning(
            "logger.kind=wandb but wandb is not installed: logging to CSV in %s instead", run_dir / "csv"
        )
        kind = "csv"
    if kind == "csv":
        return CSVLogger(save_dir=str(run_dir), name="csv")
    offline = not wandb_logged_in() or os.environ.get("WANDB_MODE") in ("offline", "dryrun")
    if offline and rank_zero_only.rank == 0:
        log.warning(
            "W&B: not logged in (or WANDB_MODE=offline): logging offline under %s; upload later with "
            "`wandb sync %s/wandb/offline-run-*`",
            run_dir,
            run_dir,
        )
    return WandbLogger(
        name=logger_config.name or run_name,
        save_dir=str(run_dir),
        offline=offline,
        id=_wandb_run_id(run_dir, offline),
        resume="allow",
        project=logger_config.project,
        entity=logger_config.entity,
        group=group if group is not None else logger_config.group,
        tags=list(logger_config.tags),
        job_type=job_type,
        config=config,
    )
