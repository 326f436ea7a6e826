"""One live run per run folder: ``<run folder>/run.lock`` names the process that holds it (JSON: host, pid, ...).

The process of global rank 0 takes the lock before writing anything into the folder and removes it when the run
ends, however Python ends it; a SIGKILL or a crashed machine leaves it behind. While its holder lives, a second start
of the same run stops with one line naming the host and the process. A lock left behind is taken over with a
warning when this process can tell that its holder is gone: a process of this host that no longer runs, or an
earlier attempt of this very SLURM job (a requeued job keeps its id and counts ``SLURM_RESTART_COUNT`` up). A lock
of another host is never taken over: the message names the file to delete once that run is known to be gone.

The lock file appears with its whole content at once: written under a temporary name, then hard-linked to its own,
which fails when the name exists (an exclusive create, as ``O_EXCL``, that never shows a half-written file).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from lit_colorization.store.atomic import atomic_open

LOCK_NAME = "run.lock"
log = logging.getLogger(__name__)


MAX_PID = 2**22  # Linux's largest pid_max


class RunLockedError(ValueError):
    """The run folder belongs to another live run; the one-line message names its host and process."""


class RunFolderError(ValueError):
    """The run folder cannot be written (read-only, no permission); the one-line message names it."""


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), None where there is no such file."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None where /proc cannot tell: with the pid it names one
    process, even once the pid is reused."""
    fields = proc_stat(pid)
    return None if fields is None else int(fields[19])


def this_process() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "process_start": process_start_ticks(os.getpid()),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
        "token": secrets.token_hex(8),
    }


def process_running(pid: int, start_ticks: int | None) -> bool:
    """Whether process ``pid`` of this host runs and is the one that started at ``start_ticks`` (when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    fields = proc_stat(pid)
    if fields is None:  # no /proc here: the pid exists, that is all one can tell
        return True
    if fields[0] == "Z":  # exited, not yet reaped by its parent
        return False
    return start_ticks is None or int(fields[19]) == start_ticks


def left_behind(holder: dict[str, Any], me: dict[str, Any]) -> str | None:
    """Why ``holder`` cannot be running any more, as this process can tell; None when it may be."""
    same_job = holder.get("slurm_job_id") is not None and holder["slurm_job_id"] == me["slurm_job_id"]
    if same_job and int(holder.get("slurm_restart_count", 0)) < me["slurm_restart_count"]:
        return f"an earlier attempt of SLURM job {me['slurm_job_id']} (this job was requeued)"
    if holder.get("host") == me["host"] and not process_running(
        int(holder["pid"]), holder.get("process_start")
    ):
        return f"process {holder['pid']} of this host, which is no longer running"
    return None


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/run.lock`` for the block (see the module's docstring)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.me = this_process()
        self.created_run_dir = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        # Twice at most: a lock left behind is removed once; if another start takes it in between, it is theirs.
        for _ in range(2):
            if self._create():
                return
            holder = self._read()
            if not holder:
                continue
            reason = left_behind(holder, self.me)
            if reason is None:
                raise RunLockedError(self._refusal(holder))
            log.warning(
                "%s: taking over the lock left by %s (started %s)", self.path, reason, holder.get("started")
            )
            self._remove_if_held_by(holder)
        raise RunLockedError(self._refusal(self._read()))

    def release(self) -> None:
        """Remove the lock if it is still this process's, and the run folder if taking the lock made it and the
        run wrote nothing (a start refused for a bad config or checkpoint leaves no folder behind)."""
        with contextlib.suppress(RunLockedError):
            if self._read().get("token") == self.me["token"]:
                self.path.unlink(missing_ok=True)
        if self.created_run_dir:
            with contextlib.suppress(OSError):  # not empty: the run wrote something, which stays
                self.run_dir.rmdir()

    def _create(self) -> bool:
        draft = self.run_dir / f".{LOCK_NAME}.{self.me['token']}"
        try:
            if not self.run_dir.exists():
                self.run_dir.mkdir(parents=True)
                self.created_run_dir = True
            with atomic_open(draft, "w") as stream:
                json.dump(self.me, stream)
        except OSError as error:  # the run's first write: nothing is written when it fails
            raise RunFolderError(
                f"{self.run_dir}: cannot write the run folder ({error.strerror or error}); choose a writable "
                "runs_dir (RUNS_DIR) or another run"
            ) from None
        try:
            os.link(draft, self.path)
        except FileExistsError:
            return False
        finally:
            draft.unlink()
        return True

    def _read(self) -> dict[str, Any]:
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}  # released between our create and this read: the next create decides
        except (OSError, ValueError) as error:
            raise RunLockedError(
                f"{self.path}: unreadable run lock ({error}); delete it if no run uses {self.run_dir}"
            ) from None
        if not isinstance(holder, dict) or "pid" not in holder or "host" not in holder:
            raise RunLockedError(f"{self.path}: not a run lock; delete it if no run uses {self.run_dir}")
        pid, start = holder["pid"], holder.get("process_start")
        if not (is_count(pid) and 0 < pid <= MAX_PID) or not (start is None or is_count(start)):
            raise RunLockedError(
                f"{self.path}: not a run lock (pid {pid!r}, process_start {start!r}: a process id up to {MAX_PID} "
                f"and a tick count expected); delete it if no run uses {self.run_dir}"
            )
        restarts = holder.get("slurm_restart_count", 0)
        if not isinstance(holder["host"], str) or not is_count(restarts):
            raise RunLockedError(
                f"{self.path}: not a run lock (host {holder['host']!r}, slurm_restart_count {restarts!r}: a host "
                f"name and a count expected); delete it if no run uses {self.run_dir}"
            )
        return holder

    def _remove_if_held_by(self, holder: dict[str, Any]) -> None:
        """Remove the lock only if it is still ``holder``'s: moved aside first, so that a lock another start has
        just taken over is never deleted, but put back."""
        aside = self.run_dir / f".{LOCK_NAME}.stale.{self.me['token']}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if json.loads(aside.read_text()).get("token") != holder.get("token"):
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink()

    def _refusal(self, holder: dict[str, Any]) -> str:
        if not holder:
            return f"{self.path}: another start took this run's lock at the same moment; try again"
        return (
            f"{self.run_dir}: this run is in use by process {holder['pid']} on host {holder['host']} "
            f"(started {holder.get('started', '?')}); wait for it to end or choose another RUN "
            f"(delete {self.path} only once that process is gone)"
        )
