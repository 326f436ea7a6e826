"""One live run per run folder: the lock refuses a second start while its holder lives and takes over one left
behind by a process that is gone."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys

import pytest

from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.store.run_lock import LOCK_NAME, RunLock, RunLockedError
from tests.helpers import tiny_pretrain_overrides
from tests.paths import REPO

# A second process that takes the lock, says so, then waits for its stdin to close (or leaves without releasing).
HOLDER = """
import os, sys
from lit_colorization.store.run_lock import RunLock
lock = RunLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
if sys.argv[2] == "vanish":
    os._exit(0)
sys.stdin.read()
lock.release()
"""


def holder(run_dir, mode: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir), mode],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline() == "locked\n"
    return process


def test_a_second_start_while_the_holder_lives_names_its_host_and_process(tmp_path) -> None:
    run_dir = tmp_path / "run"
    process = holder(run_dir, "hold")
    try:
        with pytest.raises(RunLockedError) as refused:
            RunLock(run_dir).acquire()
        message = str(refused.value)
        assert f"in use by process {process.pid} on host {socket.gethostname()}" in message
        assert "\n" not in message and str(run_dir / LOCK_NAME) in message
    finally:
        process.communicate("")  # the holder releases and ends
    with RunLock(run_dir):  # free again
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] != process.pid
    assert not (run_dir / LOCK_NAME).exists()


def test_the_pretrain_command_refuses_a_run_in_use_in_one_line_before_writing(tmp_path, capsys) -> None:
    run_dir = tmp_path / "tiny"
    process = holder(run_dir, "hold")
    try:
        with pytest.raises(SystemExit) as exit_status:
            pretrain_main([*tiny_pretrain_overrides(tmp_path), "resume=auto"])
    finally:
        process.communicate("")
    assert exit_status.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        f"error: {run_dir}: this run is in use by process {process.pid} on host {socket.gethostname()} (started "
    )
    assert not run_dir.exists()  # nothing written: the holder removed its lock and the folder it had made


def test_a_lock_left_by_a_dead_process_of_this_host_is_taken_over_with_a_warning(tmp_path, caplog) -> None:
    run_dir = tmp_path / "run"
    process = holder(run_dir, "vanish")
    process.communicate()
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == process.pid  # left behind
    with caplog.at_level(logging.WARNING), RunLock(run_dir) as lock:
        assert json.loads((run_dir / LOCK_NAME).read_text())["token"] == lock.me["token"]
    assert (
        f"taking over the lock left by process {process.pid} of this host, which is no longer running"
        in caplog.text
    )
    assert sorted(p.name for p in run_dir.iterdir()) == []  # no drafts or set-aside copies either


def write_lock(run_dir, **holder_fields) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    fields = {"pid": 1, "process_start": None, "started": "earlier", "token": "theirs", **holder_fields}
    (run_dir / LOCK_NAME).write_text(json.dumps(fields))


def test_a_lock_of_another_host_is_never_taken_over(tmp_path) -> None:
    write_lock(tmp_path, host="some-other-node", pid=4321)
    with pytest.raises(RunLockedError, match="in use by process 4321 on host some-other-node"):
        RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "theirs"


def test_a_requeued_slurm_job_takes_over_the_lock_of_its_earlier_attempt(
    tmp_path, monkeypatch, caplog
) -> None:
    write_lock(tmp_path, host="node-a", slurm_job_id="777", slurm_restart_count=0)
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level(logging.WARNING), RunLock(tmp_path):
        pass
    assert "an earlier attempt of SLURM job 777" in caplog.text
    monkeypatch.setenv("SLURM_JOB_ID", "778")  # another job on another node: refused
    write_lock(tmp_path, host="node-a", slurm_job_id="777", slurm_restart_count=0)
    with pytest.raises(RunLockedError, match="on host node-a"):
        RunLock(tmp_path).acquire()


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path) -> None:
    lock = RunLock(tmp_path)
    lock.acquire()
    write_lock(tmp_path, host="some-other-node")
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] == "theirs"


def test_an_unreadable_lock_is_a_one_line_error(tmp_path) -> None:
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(RunLockedError, match="unreadable run lock .* delete it if no run uses"):
        RunLock(tmp_path).acquire()
