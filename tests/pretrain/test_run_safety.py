"""Where a run writes and how it stops: run names are one safe folder name, checked before anything is written; an
unwritable run folder or a damaged run lock is one line naming it; a stop signal while the prior is computed
(before any Trainer stage) exits with status 75, releases the lock, and ``resume=auto`` runs it again."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket

import pytest

import lit_colorization.pretrain.priors as priors
from lit_colorization.config.loading import ConfigError
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.runtime.preemption import PREEMPTED_EXIT_CODE, RunPreempted
from lit_colorization.store.run_lock import RunFolderError, RunLock, RunLockedError
from tests.helpers import tiny_pretrain_overrides
from transfer.probe.probe_config import PROBE


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "x" * 101, "tab\there"])
def test_a_run_name_must_be_one_safe_folder_name(tmp_path, name) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "config.yaml").write_text("kept\n")  # what run=.. would have overwritten
    for loader, key in ((PRETRAIN, "run"), (PROBE, "run")):
        with pytest.raises(
            ConfigError, match=f"config key '{key}': expected a .*one folder name, not"
        ) as raised:
            loader.load(
                "sample" if loader is PRETRAIN else None, [f"runs_dir={tmp_path / 'runs'}", f"{key}={name}"]
            )
        assert "\n" not in str(raised.value) and len(str(raised.value)) < 400
    assert (tmp_path / "config.yaml").read_text() == "kept\n" and os.listdir(tmp_path / "runs") == []


def test_names_of_100_bytes_and_unicode_pass(tmp_path) -> None:
    for name in ("x" * 100, "photos-été", "run.2"):
        assert PRETRAIN.load("sample", [f"runs_dir={tmp_path}", f"run={name}"]).run == name


def test_an_unwritable_runs_dir_is_one_line_naming_the_run_folder(tmp_path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder would be")
    with pytest.raises(RunFolderError) as raised:
        RunLock(blocker / "r").acquire()
    assert str(raised.value).startswith(f"{blocker / 'r'}: cannot write the run folder (")
    assert "runs_dir" in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("pid", ["abc", 10**30, -3, 0, True, None])
def test_a_run_lock_with_a_bad_pid_is_one_line_naming_it(tmp_path, pid) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with pytest.raises(RunLockedError) as raised:
        RunLock(run).acquire()
    assert str(raised.value).startswith(f"{run / 'run.lock'}: not a run lock (pid {pid!r}")
    assert "delete it if no run uses" in str(raised.value)


def test_a_stop_signal_while_the_prior_is_computed_exits_75_and_resume_auto_continues(
    tmp_path, monkeypatch
) -> None:
    real_batches = priors.training_rgb_batches

    def signalled_after_the_first_batch(datamodule, device):
        batches, total = real_batches(datamodule, device)

        def batches_then_signal():
            for number, batch in enumerate(batches):
                if number == 1:
                    os.kill(os.getpid(), signal.SIGTERM)  # as SLURM signals a job step, during the pass
                yield batch

        return batches_then_signal(), total

    overrides = [*tiny_pretrain_overrides(tmp_path, "early"), "logger.kind=none", "trainer.max_steps=1"]
    monkeypatch.setattr(priors, "training_rgb_batches", signalled_after_the_first_batch)
    with pytest.raises(RunPreempted) as raised:
        pretrain(PRETRAIN.load("sample", overrides))
    assert raised.value.code == PREEMPTED_EXIT_CODE and raised.value.step == 0
    run = tmp_path / "early"
    assert not (run / "run.lock").exists() and not (run / "prior.npy").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the run's handler is gone with it

    monkeypatch.setattr(priors, "training_rgb_batches", real_batches)
    saves = logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector")
    records: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: records.append(record.getMessage())
    saves.addHandler(handler)
    try:
        pretrain(PRETRAIN.load("sample", [*overrides, "resume=auto"]))
    finally:
        saves.removeHandler(handler)
    assert (run / "prior.npy").exists() and (run / "checkpoints" / "last.ckpt").exists()
    # last.ckpt says it holds the whole training state: Lightning no longer logs that it defaulted to it.
    assert not [message for message in records if "weights_only" in message]


def test_a_run_lock_with_a_bad_restart_count_or_host_is_one_line_naming_it(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for fields in ({"slurm_restart_count": "two"}, {"host": ["a", "list"]}):
        lock = {"pid": 1, "host": socket.gethostname(), **fields}
        (run / "run.lock").write_text(json.dumps(lock))
        with pytest.raises(RunLockedError, match=r"not a run lock \(host .*a host name and a count expected"):
            RunLock(run).acquire()
