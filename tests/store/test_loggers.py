"""Logger selection: W&B offline when not logged in, CSV when W&B is not configured, never a crash."""

import sys
from pathlib import Path

import pytest
import wandb
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lit_colorization.config.schema import LoggerConfig
from lit_colorization.store.loggers import WANDB_ID_FILE, build_logger, finish_wandb_run
from tests.helpers import run_module, tiny_pretrain_overrides


def test_auto_without_credentials_is_csv(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    logger = build_logger(LoggerConfig(kind="auto"), tmp_path, "run", "pretrain", {})
    assert isinstance(logger, CSVLogger)
    assert build_logger(LoggerConfig(kind="none"), tmp_path, "run", "pretrain", {}) is False


def test_wandb_without_login_goes_offline_and_offline_runs_get_new_ids(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = LoggerConfig(kind="wandb", group="g", tags=["a"])
    first = build_logger(config, tmp_path, "run", "pretrain", {"x": 1})
    assert isinstance(first, WandbLogger) and first._offline
    second = build_logger(config, tmp_path, "run", "pretrain", {"x": 1})
    assert first._id != second._id  # an offline W&B run cannot be resumed: a new one, said in a warning
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == second._id


def test_pretrain_with_wandb_offline_through_the_cli(tmp_path):
    result = run_module(
        "lit_colorization.cli.pretrain",
        *tiny_pretrain_overrides(tmp_path),
        "logger.kind=wandb",
        "trainer.max_steps=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wandb sync" in result.stderr
    assert list(Path(tmp_path / "tiny" / "wandb").glob("offline-run-*"))


def test_two_commands_in_one_process_get_two_wandb_runs_in_one_group(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    runs = []
    for name in ("pretrain", "probe"):
        logger = build_logger(LoggerConfig(kind="wandb"), tmp_path / name, name, name, {}, group="campaign")
        runs.append(logger.experiment)  # wandb.init
        finish_wandb_run()  # without it, Lightning's WandbLogger hands the next command the open run
    assert runs[0].id != runs[1].id and [run.group for run in runs] == ["campaign", "campaign"]
    assert wandb.run is None


def test_tensorboard_logger_writes_event_files_under_the_run(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (make setup installs it)")
    logger = build_logger(LoggerConfig(kind="tensorboard"), tmp_path, "run", "pretrain", {})
    logger.log_metrics({"train/loss": 1.5}, step=3)
    logger.finalize("success")
    events = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0


def test_tensorboard_without_the_extra_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: importing it fails
    with pytest.raises(ValueError, match=r"pip install -e '\.\[tensorboard\]'"):
        build_logger(LoggerConfig(kind="tensorboard"), tmp_path, "run", "pretrain", {})
