"""The pipeline's state, ``runs/<RUN>/pipeline.json``: per stage its status, run folder, resolved config and its
hash, outputs and results rows; written atomically by global rank 0 only.

A stage is ``pending`` until it starts, ``running`` from its start until it returns (a stage killed or preempted
stays ``running``: the next run resumes it), then ``done``, or ``failed`` when it raised an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_colorization.store.atomic import write_text

STATE_FILE = "pipeline.json"
STATE_VERSION = 1
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATUSES = (PENDING, RUNNING, DONE, FAILED)
HASH_CHUNK = 1 << 22


@dataclass
class StageRecord:
    """What the pipeline knows of one stage."""

    status: str = PENDING
    folder: str | None = None
    config_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the hashed part of the resolved config
    inputs: dict[str, str] = field(default_factory=dict)  # input file -> its sha256
    outputs: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    starts: int = 0  # how many times the stage was started (a resume counts)
    wall_seconds: float = 0.0  # summed over its starts
    error: str | None = None


@dataclass
class PipelineState:
    """Every stage's record, in pipeline order, and where they are stored."""

    path: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)

    def record(self, name: str) -> StageRecord:
        return self.stages.setdefault(name, StageRecord())

    def save(self) -> None:
        """Write the state atomically (global rank 0 only: every rank runs the pipeline)."""
        if rank_zero_only.rank != 0:
            return
        payload = {
            "version": STATE_VERSION,
            "stages": {name: asdict(one) for name, one in self.stages.items()},
        }
        write_text(self.path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def load_state(path: Path) -> PipelineState:
    """The state at ``path``; an absent file is a pipeline not started; a damaged one a one-line error."""
    if not path.exists():
        return PipelineState(path)
    try:
        payload = json.loads(path.read_text())
        stages = {name: StageRecord(**record) for name, record in payload["stages"].items()}
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path}: not a pipeline state written by make reproduce ({error}); move it away to start over"
        ) from None
    for name, record in stages.items():
        if record.status not in STATUSES:
            raise ValueError(
                f"{path}: stage {name!r} has status {record.status!r}, expected one of {STATUSES}"
            )
    return PipelineState(path, stages)


def config_hash(config: dict[str, Any], inputs: dict[str, str]) -> str:
    """The sha256 of a stage's hashed config and its input files' checksums, as canonical JSON."""
    text = json.dumps({"config": config, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (a checkpoint, a prior): what says an input changed."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of nested dicts (lists are leaves)."""
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}{key}."))
    return {key.rstrip("."): value for key, value in flat.items()}


def changed_keys(before: dict[str, Any], after: dict[str, Any], limit: int = 3) -> str:
    """``key old -> new`` for the first ``limit`` keys whose value differs (and how many more)."""
    old, new = flatten(before), flatten(after)
    keys = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    shown = [f"{key} {old.get(key)!r} -> {new.get(key)!r}" for key in keys[:limit]]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(shown) + more
