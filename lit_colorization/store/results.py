"""The results store: one JSON object per line (``results/transfer.jsonl``, ``results/colorization.jsonl``).

Every transfer task appends to ``results/transfer.jsonl`` and colorization evaluation to its own file; a row's ``task`` ("linear-probe", "voc-cls", ...) says which
fields it carries. Appends take a file lock and write all of a run's rows in one ``write`` followed by
``fsync``, so probes finishing at the same time never interleave or tear lines. Reading never fails on a bad
line: it is skipped and named, so one corrupt row cannot hide every other result. A run writes its own
``results.json`` before it appends (``publish_results``): a store that cannot be written costs a warning, never
the run's results; ``make compare`` shows each run's latest rows (``transfer.compare.latest_of_each_run``).

Units: a row's ``schema`` says how its numbers read. Schema 2 (``SCHEMA``, every writer's rows) stores every
rate -- top-1/top-5 accuracy, AP and mAP, AuC -- in percent (0-100), as the paper's tables give them; PSNR stays
in dB, SSIM in [0, 1] and colourfulness in its own units. Rows without ``schema`` were written before: their VOC
mAP and per-class AP were fractions in [0, 1] (every other rate was already percent). Readers take rows through
``in_current_units``, which converts those, so old and new rows compare alike.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from lit_colorization.store.atomic import write_text

log = logging.getLogger(__name__)
DEFAULT_RESULTS_PATH = Path("results/transfer.jsonl")
SCHEMA = 2
PERCENT = 100.0
# The fields that rows written before ``schema`` existed stored as fractions in [0, 1], by task.
_FRACTIONS_BEFORE_SCHEMA = {
    "voc-cls": ("map", "ap"),
    "voc-det": ("map", "map_torchmetrics", "ap"),
}


@dataclass(frozen=True)
class ResultRow:
    line: int  # 1-based line number in the file, to name the row in messages
    data: dict[str, Any]

    @property
    def task(self) -> str:
        return self.data["task"]


@dataclass(frozen=True)
class ResultsFile:
    rows: list[ResultRow]
    skipped: list[str] = field(default_factory=list)  # one message per unusable line


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """The lines to append; each row must be a mapping with a string ``task`` and JSON-serialisable values."""
    lines = []
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("task"), str) or not row["task"]:
            raise ValueError(
                f"result row {index}: expected a mapping with a non-empty string 'task', got {row!r}"
            )
        try:
            lines.append(json.dumps(dict(row), allow_nan=False) + "\n")
        except (TypeError, ValueError) as error:
            raise ValueError(f"result row {index} ({row['task']}): not storable as JSON: {error}") from None
    return "".join(lines).encode("utf-8")


def append_results(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append ``rows`` to the JSON-lines file ``path`` atomically with respect to other appenders."""
    path = Path(path)
    payload = encode_rows(rows)
    if not payload:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(path)):
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # A writer killed mid-line leaves no newline at the end: start on a fresh line so only that one is lost.
            if os.fstat(descriptor).st_size > 0 and not _ends_with_newline(path):
                payload = b"\n" + payload
            written = os.write(descriptor, payload)
            if written != len(payload):
                raise OSError(
                    f"{path}: short write ({written} of {len(payload)} bytes); the disk may be full"
                )
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def publish_results(rows: Sequence[Mapping[str, Any]], own_path: str | Path, store_path: str | Path) -> bool:
    """Write a run's ``rows`` to its own ``own_path`` (JSON), then append them to the shared store ``store_path``.

    The run's own file comes first: a store that cannot be written (read-only, full disk, a path that is a
    folder) is then a warning naming it, and the rows are not lost. Returns whether the rows reached the store.
    """
    encode_rows(rows)  # a row that cannot be stored fails here, before anything is written
    write_text(own_path, json.dumps([dict(row) for row in rows], indent=2) + "\n")
    try:
        append_results(store_path, rows)
    except OSError as error:
        log.warning(
            "%s: could not append this run's %d result row(s) (%s: %s); they are in %s",
            store_path,
            len(rows),
            type(error).__name__,
            error.strerror or error,
            own_path,
        )
        return False
    return True


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as stream:
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) == b"\n"


def _to_percent(value: Any) -> Any:
    """A fraction (or a mapping of them, as per-class AP) in percent; None and non-numbers stay as they are."""
    if isinstance(value, Mapping):
        return {key: _to_percent(one) for key, one in value.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return PERCENT * value
    return value


def in_current_units(row: ResultRow) -> ResultRow:
    """``row`` as a schema-``SCHEMA`` row: rows written before the schema get their fractions in percent."""
    if "schema" in row.data:
        return row
    data = dict(row.data)
    for name in _FRACTIONS_BEFORE_SCHEMA.get(row.task, ()):
        if name in data:
            data[name] = _to_percent(data[name])
    data["schema"] = SCHEMA
    return ResultRow(row.line, data)


def read_results(path: str | Path) -> ResultsFile:
    """Every well-formed row of ``path``, in file order; unusable lines are skipped and named in ``skipped``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no results file yet (run a transfer benchmark, e.g. make linear-probe)"
        )
    rows: list[ResultRow] = []
    skipped: list[str] = []
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as error:
                skipped.append(f"{path}:{number}: not valid JSON ({error.msg}), skipped")
                continue
            if not isinstance(data, dict) or not isinstance(data.get("task"), str):
                skipped.append(f"{path}:{number}: not a result object with a string 'task', skipped")
                continue
            if data.get("schema", SCHEMA) != SCHEMA:
                skipped.append(
                    f"{path}:{number}: row schema {data['schema']!r}, this version reads {SCHEMA}, skipped"
                )
                continue
            problem = out_of_range(in_current_units(ResultRow(number, data)))
            if problem:
                skipped.append(f"{path}:{number}: {problem}, skipped")
                continue
            rows.append(ResultRow(number, data))
    return ResultsFile(rows, skipped)


# The rates of each task's rows, in percent (schema 2): a value outside [0, 100] is not a result of this project.
PERCENT_FIELDS = {
    "linear-probe": ("top1", "top5"),
    "voc-cls": ("map", "ap"),
    "voc-det": ("map", "map_torchmetrics", "ap"),
    "voc-seg": ("miou",),
    "voc-svm-low-shot": ("map", "map_std"),
    "eval-color": ("auc", "auc_rebal", "top1"),
}


def out_of_range(row: ResultRow) -> str:
    """What makes ``row`` (in current units) unusable: a rate that is not a finite percentage; "" if none."""
    for name in PERCENT_FIELDS.get(row.task, ()):
        value = row.data.get(name)
        values = value.values() if isinstance(value, Mapping) else [value]  # per-class AP: a mapping
        for one in values:
            if one is None or isinstance(one, str | bool) or not isinstance(one, int | float):
                continue  # absent or not a number: each report names what it lacks
            if not 0.0 <= one <= PERCENT:  # NaN fails too
                return f"'{name}' is {value!r}, not a percentage in [0, 100]"
    return ""
