"""Experiment loggers: Weights & Biases when configured (offline when not logged in), else CSV, or none.

Logger faults never stop training: wandb missing, or W&B unreachable with a login present, falls back to CSV
with one warning. An online W&B run is started here, not at Lightning's first log call, so that a
connection failure (bounded by ``WANDB_INIT_TIMEOUT``, default ``WANDB_INIT_TIMEOUT_S``) is caught before
training. Only rank 0 touches run files; Lightning's loggers already restrict experiment creation to rank 0.
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

from lit_colorization.store.atomic import write_text

LOGGER_KINDS = ("auto", "wandb", "csv", "tensorboard", "none")
WANDB_ID_FILE = "wandb_run_id.txt"
WANDB_INIT_TIMEOUT_S = 60.0  # W&B's own default (90 s) is long to wait for before falling back
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


def wandb_run_id(run_dir: Path, offline: bool) -> str:
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
        return csv_logger(run_dir)
    if kind == "tensorboard":
        return tensorboard_logger(run_dir)
    offline = not wandb_logged_in() or os.environ.get("WANDB_MODE") in ("offline", "dryrun")
    if offline and rank_zero_only.rank == 0:
        log.warning(
            "W&B: not logged in (or WANDB_MODE=offline): logging offline under %s; upload later with "
            "`wandb sync %s/wandb/offline-run-*`",
            run_dir,
            run_dir,
        )
    logger = WandbLogger(
        name=logger_config.name or run_name,
        save_dir=str(run_dir),
        offline=offline,
        id=wandb_run_id(run_dir, offline),
        resume="allow",
        project=logger_config.project,
        entity=logger_config.entity,
        group=group if group is not None else logger_config.group,
        tags=list(logger_config.tags),
        job_type=job_type,
        config=config,
        **_init_timeout_setting(),
    )
    if offline or rank_zero_only.rank != 0:
        return logger
    try:
        _ = logger.experiment  # wandb.init: connects to the server now
    # W&B raises many types on a bad connection (CommError, UsageError, TimeoutError...): any of them means CSV.
    except Exception as error:
        reason = " ".join(str(error).split())[:300]
        log.warning(
            "W&B: could not start an online run (%s: %s); logging to CSV in %s instead",
            type(error).__name__,
            reason,
            run_dir / "csv",
        )
        return csv_logger(run_dir)
    return logger


def csv_logger(run_dir: Path) -> CSVLogger:
    return CSVLogger(save_dir=str(run_dir), name="csv")


def tensorboard_logger(run_dir: Path) -> Logger:
    """Event files under ``<run_dir>/tensorboard/`` (``tensorboard --logdir runs``); needs the tensorboard extra."""
    try:
        import tensorboard  # noqa: F401  (Lightning's TensorBoardLogger writes through it)
    except ImportError:
        raise ValueError(
            "logger.kind=tensorboard needs the optional 'tensorboard' extra: pip install -e '.[tensorboard]'"
        ) from None
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", default_hp_metric=False)


def _init_timeout_setting() -> dict[str, Any]:
    """``settings`` for wandb.init bounding its connection time, unless ``WANDB_INIT_TIMEOUT`` already does."""
    if os.environ.get("WANDB_INIT_TIMEOUT"):
        return {}
    import wandb

    return {"settings": wandb.Settings(init_timeout=WANDB_INIT_TIMEOUT_S)}


def finish_wandb_run() -> None:
    """End this process's W&B run, if one is open: Lightning's WandbLogger reuses an open run, so a process that
    runs several commands one after another (make reproduce) ends each one's before the next starts its own."""
    if not wandb_installed():
        return
    import wandb

    if wandb.run is not None:
        wandb.finish()
