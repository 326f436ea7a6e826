"""lit_colorization.store.results: append under a lock in one write, read back skipping and naming corrupt lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from filelock import FileLock, Timeout

from lit_colorization.store import results as results_store
from lit_colorization.store.results import SCHEMA, append_results, in_current_units, lock_path, read_results
from tests.paths import REPO


def probe_row(layer: str, top1: float, **extra) -> dict:
    return {
        "task": "linear-probe",
        "model": "alexnet",
        "layer": layer,
        "top1": top1,
        "top5": top1 + 10,
        **extra,
    }


def test_rows_come_back_in_order_with_their_line_numbers(tmp_path):
    path = tmp_path / "results" / "transfer.jsonl"
    append_results(path, [probe_row("conv1", 12.5), probe_row("conv2", 24.5)])
    append_results(path, [{"task": "voc-cls", "schema": 2, "map": 61.5}])
    results = read_results(path)
    assert [row.data for row in results.rows] == [
        probe_row("conv1", 12.5),
        probe_row("conv2", 24.5),
        {"task": "voc-cls", "schema": 2, "map": 61.5},
    ]
    assert [row.line for row in results.rows] == [1, 2, 3] and results.skipped == []
    assert path.read_text().count("\n") == 3


def test_corrupt_lines_are_skipped_and_named_and_a_torn_last_line_does_not_swallow_the_next_row(tmp_path):
    path = tmp_path / "transfer.jsonl"
    append_results(path, [probe_row("conv1", 1.0)])
    with path.open("a") as stream:
        stream.write("{not json\n")
        stream.write('["a list"]\n')
        stream.write('{"task": "linear-probe", "layer": "con')  # a writer killed mid-line
    append_results(path, [probe_row("conv3", 3.0)])
    results = read_results(path)
    assert [row.data["layer"] for row in results.rows] == ["conv1", "conv3"]
    assert [row.line for row in results.rows] == [1, 5]
    assert len(results.skipped) == 3
    assert results.skipped[0].startswith(f"{path}:2: not valid JSON")
    assert results.skipped[1].startswith(f"{path}:3: not a result object")
    assert results.skipped[2].startswith(f"{path}:4: not valid JSON")


def test_bad_rows_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "transfer.jsonl"
    with pytest.raises(ValueError, match="row 1: expected a mapping with a non-empty string 'task'"):
        append_results(path, [probe_row("conv1", 1.0), {"layer": "conv2"}])
    with pytest.raises(ValueError, match=r"row 0 \(linear-probe\): not storable as JSON"):
        append_results(path, [probe_row("conv1", float("nan"))])
    assert not path.exists()
    with pytest.raises(FileNotFoundError, match="no results file yet"):
        read_results(path)


APPENDER = """
import sys
from lit_colorization.store.results import append_results
path, name = sys.argv[1], sys.argv[2]
for index in range(60):
    # Rows far larger than a pipe buffer, so unlocked appends would interleave visibly.
    append_results(path, [{"task": "stress", "writer": name, "index": index, "part": part, "pad": name * 30000}
                          for part in range(3)])
"""


def test_two_processes_appending_at_once_never_corrupt_a_line(tmp_path):
    path = tmp_path / "transfer.jsonl"
    writers = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), name], cwd=REPO) for name in ("a", "b")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    results = read_results(path)
    assert results.skipped == []
    assert len(results.rows) == 2 * 60 * 3
    for name in ("a", "b"):
        rows = [row.data for row in results.rows if row.data["writer"] == name]
        assert [(row["index"], row["part"]) for row in rows] == [(i, p) for i in range(60) for p in range(3)]
        assert all(row["pad"] == name * 30000 for row in rows)
    # Each call's rows are contiguous: one write per call.
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for start in range(0, len(lines), 3):
        group = lines[start : start + 3]
        assert len({(row["writer"], row["index"]) for row in group}) == 1 and [r["part"] for r in group] == [
            0,
            1,
            2,
        ]


def test_rows_written_before_the_schema_are_read_in_percent(tmp_path):
    path = tmp_path / "transfer.jsonl"
    before = {"task": "voc-cls", "run": "a", "map": 0.583, "ap": {"cat": 0.5, "dog": None}}
    now = {"task": "voc-cls", "run": "a", "schema": SCHEMA, "map": 58.3, "ap": {"cat": 50.0, "dog": None}}
    detection = {"task": "voc-det", "map": 0.31, "map_torchmetrics": 0.305, "ap": {"cat": 0.25}, "steps": 3}
    append_results(path, [before, now, detection, probe_row("conv1", 12.5)])
    with path.open("a") as stream:
        stream.write(json.dumps({**now, "schema": SCHEMA + 1}) + "\n")  # from a newer version
    results = read_results(path)
    assert [row.data for row in results.rows[:2]] == [before, now]  # read as written
    old, new, det, probe = (in_current_units(row).data for row in results.rows)
    assert old["map"] == pytest.approx(new["map"]) and old["ap"]["cat"] == pytest.approx(new["ap"]["cat"])
    assert old["ap"]["dog"] is None and old["schema"] == new["schema"] == SCHEMA
    assert new == now
    assert (det["map"], det["map_torchmetrics"], det["steps"]) == pytest.approx((31.0, 30.5, 3))
    assert det["ap"] == {"cat": 25.0}
    assert (probe["top1"], probe["top5"]) == (12.5, 22.5)  # probe accuracies were always percent
    assert results.skipped == [f"{path}:5: row schema {SCHEMA + 1}, this version reads {SCHEMA}, skipped"]


def test_the_lock_is_held_at_every_write_of_an_append(tmp_path, monkeypatch):
    # At the moment the rows are written, an independent handle on the same lock file must find it taken.
    path = tmp_path / "transfer.jsonl"
    append_results(path, [probe_row("conv1", 1.0)])
    held_at_write: list[bool] = []
    write = os.write

    def observed_write(descriptor: int, data: bytes) -> int:
        probe = FileLock(lock_path(path))
        try:
            probe.acquire(timeout=0)
        except Timeout:
            held_at_write.append(True)
        else:
            probe.release()
            held_at_write.append(False)
        return write(descriptor, data)

    monkeypatch.setattr(results_store.os, "write", observed_write)
    append_results(path, [probe_row("conv2", 2.0), probe_row("conv3", 3.0)])
    monkeypatch.undo()
    assert held_at_write and all(held_at_write)
    assert [row.data["layer"] for row in read_results(path).rows] == ["conv1", "conv2", "conv3"]


def test_an_append_is_flushed_to_disk_before_it_returns(tmp_path, monkeypatch):
    # fsync after the write: a probe that returned has its row on disk even if the machine then loses power.
    path = tmp_path / "transfer.jsonl"
    calls: list[tuple[str, int]] = []
    write, fsync = os.write, os.fsync

    def observed_write(descriptor: int, data: bytes) -> int:
        calls.append(("write", descriptor))
        return write(descriptor, data)

    def observed_fsync(descriptor: int) -> None:
        calls.append(("fsync", descriptor))
        fsync(descriptor)

    monkeypatch.setattr(results_store.os, "write", observed_write)
    monkeypatch.setattr(results_store.os, "fsync", observed_fsync)
    append_results(path, [probe_row("conv1", 1.0)])
    monkeypatch.undo()
    written = {descriptor for name, descriptor in calls if name == "write"}
    assert written and calls[-1][0] == "fsync" and calls[-1][1] in written


ONE_APPEND = """
import sys
from lit_colorization.store.results import append_results
print("appending", flush=True)
append_results(sys.argv[1], [{"task": "linear-probe", "layer": "conv1"}])
"""


def test_an_append_in_another_process_waits_while_the_lock_is_held(tmp_path):
    path = tmp_path / "transfer.jsonl"
    with FileLock(lock_path(path)):
        appender = subprocess.Popen(
            [sys.executable, "-c", ONE_APPEND, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        try:
            assert appender.stdout.readline().strip() == "appending"
            # An append takes milliseconds: still running two seconds later, it can only be waiting.
            with pytest.raises(subprocess.TimeoutExpired):
                appender.wait(timeout=2.0)
            assert not path.exists()
        except BaseException:
            appender.kill()
            raise
    assert appender.wait(timeout=60) == 0
    appender.stdout.close()
    assert [row.data["layer"] for row in read_results(path).rows] == ["conv1"]


@pytest.mark.parametrize("value", [150, -5, float("inf"), float("nan"), {"car": 101.0}])
def test_a_rate_outside_0_to_100_is_skipped_and_named_and_the_other_rows_stay(tmp_path, value):
    path = tmp_path / "transfer.jsonl"
    field = "ap" if isinstance(value, dict) else "map"
    append_results(path, [{"task": "voc-cls", "schema": 2, "map": 50.0, "ap": {"car": 50.0}}])
    with path.open("a") as stream:  # written by hand or another tool: the store's writer refuses NaN and inf
        stream.write(
            json.dumps({"task": "voc-cls", "schema": 2, "map": 50.0, "ap": {"car": 50.0}, field: value})
        )
        stream.write("\n")
    append_results(path, [probe_row("conv1", 12.5), {**probe_row("conv2", 20.0), "top1": 250}])
    results = read_results(path)
    assert [row.line for row in results.rows] == [1, 3]
    assert results.skipped == [
        f"{path}:2: '{field}' is {value!r}, not a percentage in [0, 100], skipped",
        f"{path}:4: 'top1' is 250, not a percentage in [0, 100], skipped",
    ]
