"""Logger faults never stop training: wandb not installed or W&B unreachable falls back to CSV with one warning.

Each case runs ``build_logger`` in a fresh Python process, as a training command would at its start, so that
hiding the wandb package or starting a W&B run cannot leak into the test process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from lit_colorization.store.loggers import WANDB_ID_FILE, wandb_run_id
from tests.paths import REPO

BUILD_LOGGER = """
import sys
{prelude}
from pathlib import Path
from lit_colorization.config.schema import LoggerConfig
from lit_colorization.store.loggers import build_logger
for kind in sys.argv[2:]:
    logger = build_logger(LoggerConfig(kind=kind), Path(sys.argv[1]), "run", "pretrain", {{"x": 1}})
    print("LOGGER", type(logger).__name__)
"""
HIDE_WANDB = "sys.modules['wandb'] = None  # import wandb now raises ImportError, as when it is not installed"
DUMMY_KEY = "0123456789abcdef0123456789abcdef01234567"


def build_loggers_in_subprocess(
    run_dir, kinds: list[str], env: dict[str, str], prelude: str = ""
) -> tuple[list[str], str]:
    """(logger class name per kind, W&B lines logged) of build_logger in a new process."""
    result = subprocess.run(
        [sys.executable, "-c", BUILD_LOGGER.format(prelude=prelude), str(run_dir), *kinds],
        cwd=run_dir,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("LOGGER ")]
    warnings = [line for line in result.stderr.splitlines() if "W&B" in line or "wandb" in line.lower()]
    return names, "\n".join(warnings)


def test_wandb_not_installed_falls_back_to_csv_with_one_warning(tmp_path) -> None:
    names, warnings = build_loggers_in_subprocess(
        tmp_path, ["wandb", "auto"], {"WANDB_API_KEY": DUMMY_KEY}, HIDE_WANDB
    )
    # auto means W&B only when installed and logged in: its CSV is the expected choice, not a fault to warn about.
    assert names == ["CSVLogger", "CSVLogger"]
    assert warnings.count("wandb is not installed") == 1


def test_wandb_unreachable_with_a_login_falls_back_to_csv_with_one_warning(tmp_path) -> None:
    unreachable = {
        "WANDB_API_KEY": DUMMY_KEY,
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # the discard port: nothing listens, connections are refused
        "WANDB_INIT_TIMEOUT": "3",
        "WANDB_MODE": "online",
    }
    started = time.monotonic()
    names, warnings = build_loggers_in_subprocess(tmp_path, ["wandb"], unreachable)
    assert names == ["CSVLogger"]
    assert warnings.count("could not start an online run") == 1 and "logging to CSV" in warnings
    assert time.monotonic() - started < 120


def test_online_runs_keep_their_wandb_id_and_offline_runs_get_a_new_one(tmp_path, caplog) -> None:
    first = wandb_run_id(tmp_path, offline=False)
    assert wandb_run_id(tmp_path, offline=False) == first  # a resumed online run continues the same W&B run
    with caplog.at_level(logging.WARNING, logger="lit_colorization.store.loggers"):
        offline = wandb_run_id(tmp_path, offline=True)
    assert offline != first and (tmp_path / WANDB_ID_FILE).read_text().strip() == offline
    assert "offline runs cannot be resumed" in caplog.text and "new W&B run" in caplog.text
