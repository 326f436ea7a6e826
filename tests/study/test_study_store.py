"""Study store: schema, answers, Wilson interval, fooling rates, CSV export, durability across a killed writer."""

import csv
import math
import signal
import sqlite3
import subprocess
import sys

import pytest
from scipy.stats import binomtest

from lit_colorization.study import store

PLAN = [("cat", "left"), ("dog", "right"), ("owl", "left")]


@pytest.fixture
def conn(tmp_path):
    connection = store.open_store(tmp_path / "study.sqlite")
    yield connection
    connection.close()


def test_wilson_interval_32_of_100_matches_closed_form_and_scipy():
    low, high = store.wilson_interval(32, 100)
    z = 1.959963984540054
    n, p = 100, 0.32
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (low, high) == pytest.approx((0.236691, 0.416626), abs=1e-6)
    reference = binomtest(32, 100).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-12)


@pytest.mark.parametrize("successes, n", [(0, 10), (10, 10), (1, 3), (323, 1000)])
def test_wilson_interval_matches_scipy_including_the_extremes(successes, n):
    reference = binomtest(successes, n).proportion_ci(confidence_level=0.9, method="wilson")
    assert store.wilson_interval(successes, n, confidence=0.9) == pytest.approx(
        (reference.low, reference.high), abs=1e-12
    )


@pytest.mark.parametrize("successes, n", [(1, 0), (-1, 5), (6, 5)])
def test_wilson_interval_rejects_impossible_counts(successes, n):
    with pytest.raises(ValueError, match="successes"):
        store.wilson_interval(successes, n)


def test_store_uses_wal_and_schema_creation_is_idempotent(tmp_path):
    path = tmp_path / "study.sqlite"
    first = store.open_store(path)
    store.create_session(first, "s1", "agent", PLAN)
    store.record_answer(first, "s1", 0, "right", 640)
    first.close()
    second = store.open_store(path)
    assert second.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.session_progress(second, "s1") == store.Progress(answered=1, total=3)
    second.close()


def test_open_store_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_folder"):
        store.open_store(tmp_path / "missing_folder" / "study.sqlite")
    with pytest.raises(FileNotFoundError, match="absent.sqlite"):
        store.open_store(tmp_path / "absent.sqlite", create=False)


def test_answers_record_fooled_from_the_planned_real_side(conn):
    store.create_session(conn, "s1", "agent", PLAN)
    assert store.next_trial(conn, "s1") == store.Trial(0, "cat", "left")
    assert store.record_answer(conn, "s1", 0, "left", 500)  # picked the real one
    assert store.record_answer(conn, "s1", 1, "left", 700)  # real was right: fooled
    assert store.next_trial(conn, "s1") == store.Trial(2, "owl", "left")
    rows = conn.execute(
        "SELECT trial, image_id, real_side, chosen_side, fooled, response_ms FROM answers"
    ).fetchall()
    assert [tuple(row) for row in rows] == [
        (0, "cat", "left", "left", 0, 500),
        (1, "dog", "right", "left", 1, 700),
    ]
    assert store.session_fooled_count(conn, "s1") == 1


def test_a_resubmitted_answer_keeps_the_first(conn):
    store.create_session(conn, "s1", "agent", PLAN)
    assert store.record_answer(conn, "s1", 0, "right", 500)
    assert not store.record_answer(conn, "s1", 0, "left", 900)
    assert [tuple(row) for row in conn.execute("SELECT chosen_side, fooled FROM answers")] == [("right", 1)]


def test_record_answer_rejects_bad_input(conn):
    store.create_session(conn, "s1", "agent", PLAN)
    with pytest.raises(ValueError, match="no trial 3"):
        store.record_answer(conn, "s1", 3, "left", 10)
    with pytest.raises(ValueError, match="chosen_side"):
        store.record_answer(conn, "s1", 0, "middle", 10)
    with pytest.raises(ValueError, match="response_ms"):
        store.record_answer(conn, "s1", 0, "left", -1)
    with pytest.raises(ValueError, match="plan is empty"):
        store.create_session(conn, "s2", "agent", [])
    assert store.session_progress(conn, "unknown") is None


def _record_votes(conn, fooled_by_image):
    """One session per vote; fooled_by_image maps image -> list of fooled flags."""
    for image_id, flags in fooled_by_image.items():
        for vote, fooled in enumerate(flags):
            session_id = f"{image_id}-{vote}"
            store.create_session(conn, session_id, "agent", [(image_id, "left")])
            store.record_answer(conn, session_id, 0, "right" if fooled else "left", 100 + vote)


def test_fooling_rate_and_per_image_rates(conn):
    assert store.fooling_rate(conn).n == 0
    assert math.isnan(store.fooling_rate(conn).rate)
    _record_votes(conn, {"a": [True] * 20 + [False] * 30, "b": [True] * 12 + [False] * 38})
    rate, low, high, n = store.fooling_rate(conn)
    assert (rate, n) == (0.32, 100)
    assert (low, high) == pytest.approx(store.wilson_interval(32, 100))
    per_image = store.per_image_fooling_rates(conn)
    assert per_image["a"] == pytest.approx((0.4, *store.wilson_interval(20, 50), 50))
    assert per_image["b"] == pytest.approx((0.24, *store.wilson_interval(12, 50), 50))
    assert store.session_count(conn) == 100


def test_export_csv_round_trip(conn, tmp_path):
    _record_votes(conn, {"a": [True, False], "b": [False]})
    out = tmp_path / "answers.csv"
    assert store.export_csv(conn, out) == 3
    with out.open(newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert tuple(exported[0]) == store.ANSWER_COLUMNS
    stored = conn.execute(f"SELECT {', '.join(store.ANSWER_COLUMNS)} FROM answers").fetchall()
    as_text = {tuple(str(value) for value in row) for row in stored}
    assert {tuple(row.values()) for row in exported} == as_text
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        store.export_csv(conn, tmp_path / "no_such_dir" / "answers.csv")


def test_a_committed_answer_survives_a_killed_writer(tmp_path):
    path = tmp_path / "study.sqlite"
    writer = (
        "import os, signal\n"
        "from lit_colorization.study import store\n"
        f"conn = store.open_store({str(path)!r})\n"
        "store.create_session(conn, 's1', 'agent', [('cat', 'left'), ('dog', 'right')])\n"
        "store.record_answer(conn, 's1', 0, 'right', 321)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", writer], timeout=60)
    assert result.returncode == -signal.SIGKILL
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT image_id, chosen_side, fooled, response_ms FROM answers").fetchall() == [
        ("cat", "right", 1, 321)
    ]
    reader.close()
