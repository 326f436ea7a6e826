"""``make reproduce``: every stage of the paper's table in sequence, resumable, preemptible (``reproduce()``).

Each stage is one call of its command's library function in this process, on the processes the launcher gave it
(Lightning, torchrun or srun: every rank runs the same pipeline and makes the same decisions; only global rank 0
writes ``pipeline.json``). Before a stage runs, its config is loaded as its command would load it and hashed
with the sha256 of its input file (the prior, the pretraining checkpoint):

- ``done`` with the same hash: skipped;
- ``running`` (killed or preempted) or ``failed`` with the same hash: run again with ``resume=auto``, so it
  continues from its own ``last.ckpt``;
- a different hash, or a stage it reads from that was rerun now: its old folder is moved aside
  (``<folder>.superseded-<n>``, nothing is deleted) and it runs from scratch, after one line saying why.

SIGTERM or SIGUSR1: inside a training loop the stage's own handler saves ``last.ckpt`` at the end of the step in
flight and exits with status 75; anywhere else the pipeline stops at once with status 75 (there is nothing of the
stage to save yet, or it is saved). The stage stays ``running``; the same command continues it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import OmegaConf

from lit_colorization.config.loading import to_container
from lit_colorization.runtime.preemption import PREEMPTED_EXIT_CODE, STOP_SIGNALS
from lit_colorization.store.atomic import write_text
from lit_colorization.store.loggers import finish_wandb_run
from transfer.reproduce.plan import print_plan
from transfer.reproduce.report import write_report
from transfer.reproduce.reproduce_config import ReproduceConfig, campaign_config_path
from transfer.reproduce.stages import (
    RUNNERS,
    PreparedStage,
    campaign_folder,
    prepare_stage,
    stage_specs,
)
from transfer.reproduce.state import (
    DONE,
    FAILED,
    RUNNING,
    STATE_FILE,
    PipelineState,
    StageRecord,
    changed_keys,
    config_hash,
    file_sha256,
    load_state,
)


class PipelineStopped(SystemExit):
    """A stop signal outside a training loop: the pipeline exits with status 75 at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.signum = signum


def say(message: str) -> None:
    """One line of the pipeline's own, on rank 0."""
    if rank_zero_only.rank == 0:
        print(f"reproduce: {message}", flush=True)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM/SIGUSR1 end the pipeline with status 75 (a stage's training loop installs its own meanwhile)."""
    owner = os.getpid()

    def stop(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            return  # a DataLoader worker forked with this handler: its parent decides
        raise PipelineStopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def rerun_reason(
    record: StageRecord,
    config: dict[str, Any],
    inputs: dict[str, str],
    new_hash: str,
    rerun_upstream: str | None,
) -> str | None:
    """Why a stage with a record must start over (None: it is new, finished with this hash, or resumable)."""
    if record.config_hash is None:
        return None
    if record.config_hash != new_hash:
        if record.config != config:
            return f"its config changed: {changed_keys(record.config, config)}"
        changed = [name for name in inputs if record.inputs.get(name) != inputs[name]]
        because = f"{rerun_upstream} was rerun: " if rerun_upstream is not None else ""
        return f"{because}its input {', '.join(changed) or 'files'} changed (sha256 {_short(record.inputs)} -> {_short(inputs)})"
    if rerun_upstream is not None and record.status == DONE:
        return f"{rerun_upstream} was rerun"
    return None


def _short(inputs: dict[str, str]) -> str:
    return ",".join(digest[:12] for digest in inputs.values()) or "none"


def supersede(folder: Path) -> Path | None:
    """Move a stage's old folder aside as ``<folder>.superseded-<n>`` (the first free n); None if absent."""
    if not folder.exists() or rank_zero_only.rank != 0:
        return None
    number = 1
    while (aside := folder.with_name(f"{folder.name}.superseded-{number}")).exists():
        number += 1
    folder.rename(aside)
    return aside


def finished_rows(stage: PreparedStage) -> list[dict[str, Any]] | None:
    """The rows of a transfer run that finished after the pipeline last saved its state (its results.json)."""
    own = stage.folder / "results.json"
    if not (stage.spec.task_folder and own.is_file()):
        return None
    try:
        rows = json.loads(own.read_text())
    except ValueError as error:
        raise ValueError(f"{own}: not the JSON list of rows a finished run writes ({error})") from None
    if not (isinstance(rows, list) and all(isinstance(row, dict) for row in rows)):
        raise ValueError(f"{own}: expected the JSON list of rows a finished run writes")
    return rows


def run_stage(stage: PreparedStage, record: StageRecord, state: PipelineState) -> None:
    """Run one stage's command and record the outcome; a stop signal leaves it ``running``."""
    record.status, record.folder, record.error = RUNNING, str(stage.folder), None
    record.starts += 1
    state.save()
    started = time.monotonic()
    try:
        outputs, rows = RUNNERS[stage.spec.name](stage)
    except SystemExit as stop:
        finish_wandb_run()
        record.wall_seconds += time.monotonic() - started
        state.save()
        if stop.code == PREEMPTED_EXIT_CODE:
            say(
                f"{stage.spec.name}: stopped by a signal, saved; run the same command to continue (status 75)"
            )
        raise
    except BaseException as error:
        finish_wandb_run()
        record.status, record.error = FAILED, f"{type(error).__name__}: {error}".splitlines()[0]
        record.wall_seconds += time.monotonic() - started
        state.save()
        raise
    finish_wandb_run()  # the next stage's W&B run is its own, in the group RUN
    record.wall_seconds += time.monotonic() - started
    record.status, record.outputs, record.rows = DONE, outputs, rows
    if "checkpoint" in outputs:
        record.outputs["sha256"] = file_sha256(outputs["checkpoint"])
    state.save()


def reproduce(config: ReproduceConfig) -> Path | None:
    """Run the campaign ``config`` describes (with ``plan``: print the plan, write nothing); the report folder."""
    specs = stage_specs(config)
    if config.plan:
        print_plan(config, specs)
        return None
    root = campaign_folder(config)
    state = load_state(root / STATE_FILE)
    # Every stage's config is checked before the first one starts; each is loaded again, with the files the
    # stages before it wrote, just before it runs.
    staged = [spec for spec in specs if spec.command is not None]
    for spec in staged:
        prepare_stage(spec, config, inputs_written=False)
    if rank_zero_only.rank == 0:
        write_text(campaign_config_path(config), OmegaConf.to_yaml({**to_container(config), "plan": False}))
    say(f"campaign {config.run} ({config.scale} scale, {config.model}) in {root}/: {len(specs)} stages")
    rerun: set[str] = set()  # the stages that ran from scratch in this invocation
    with stop_on_signals():
        for spec in staged:
            run_or_skip(prepare_stage(spec, config), state, rerun)
        started = time.monotonic()
        report = write_report(config, specs, state)
        record = state.record("report")
        record.status, record.folder, record.starts = DONE, str(report), record.starts + 1
        record.wall_seconds += time.monotonic() - started
        state.save()
    say(f"report: {report / 'report.md'}")
    return report


@dataclass(frozen=True)
class Decision:
    """What to do with a stage: ``skip`` (done), ``resume`` (interrupted), ``rerun`` (changed) or ``start``."""

    action: str
    reason: str | None = None  # why a rerun


def decide(
    record: StageRecord,
    config: dict[str, Any],
    inputs: dict[str, str],
    new_hash: str,
    rerun_upstream: str | None,
) -> Decision:
    """The state machine of one stage, from its record and its config and inputs now."""
    reason = rerun_reason(record, config, inputs, new_hash, rerun_upstream)
    if reason is not None:
        return Decision("rerun", reason)
    if record.status == DONE:
        return Decision("skip")
    if record.status in (RUNNING, FAILED):
        return Decision("resume")
    return Decision("start")


def run_or_skip(stage: PreparedStage, state: PipelineState, rerun: set[str]) -> None:
    """Decide for one stage (skip, resume, start over, start) and act; ``rerun`` collects the stages that ran
    from scratch, whose dependents must not keep results of the old ones."""
    spec = stage.spec
    inputs = {name: file_sha256(path) for name, path in stage.inputs.items()}
    hashed = stage.hashed_config()
    new_hash = config_hash(hashed, inputs)
    record = state.record(spec.name)
    upstream = spec.needs if spec.needs in rerun else None
    decision = decide(record, hashed, inputs, new_hash, upstream)
    if decision.action == "skip":
        say(f"{spec.name}: done, skipped ({record.folder})")
        return
    if decision.action == "rerun":
        aside = supersede(stage.folder)
        moved = f"; its old folder is now {aside}" if aside else ""
        say(f"{spec.name}: rerun: {decision.reason}{moved}")
        record.starts, record.wall_seconds, record.rows, record.outputs = 0, 0.0, [], {}
    elif decision.action == "resume":
        say(f"{spec.name}: {record.status} before, resuming in {stage.folder} (start {record.starts + 1})")
    else:
        say(f"{spec.name}: starting: {spec.summary}")
    if decision.action != "resume":
        rerun.add(spec.name)
    record.config_hash, record.config, record.inputs = new_hash, hashed, inputs
    adopted = finished_rows(stage) if decision.action == "resume" else None
    if adopted is not None:
        record.status, record.folder, record.rows = DONE, str(stage.folder), adopted
        state.save()
        say(f"{spec.name}: had finished before the state was saved; took its rows from {stage.folder}")
        return
    run_stage(stage, record, state)
