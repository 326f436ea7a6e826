"""SQLite store of a perceptual study: sessions, their trial plans and the answers given.

Every write is its own committed transaction so that a server killed mid-study loses no answer.
"""

from __future__ import annotations

import csv
import math
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, NamedTuple

from lit_colorization.stats import wilson_interval

Side = Literal["left", "right"]
SIDES: tuple[Side, Side] = ("left", "right")

ANSWER_COLUMNS = (
    "session_id",
    "trial",
    "image_id",
    "real_side",
    "chosen_side",
    "fooled",
    "response_ms",
    "answered_at",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    trial INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    real_side TEXT NOT NULL CHECK (real_side IN ('left', 'right')),
    PRIMARY KEY (session_id, trial)
);
CREATE TABLE IF NOT EXISTS answers (
    session_id TEXT NOT NULL,
    trial INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    real_side TEXT NOT NULL CHECK (real_side IN ('left', 'right')),
    chosen_side TEXT NOT NULL CHECK (chosen_side IN ('left', 'right')),
    fooled INTEGER NOT NULL CHECK (fooled IN (0, 1)),
    response_ms INTEGER NOT NULL CHECK (response_ms >= 0),
    answered_at TEXT NOT NULL,
    PRIMARY KEY (session_id, trial),
    FOREIGN KEY (session_id, trial) REFERENCES trials(session_id, trial)
);
"""


class Trial(NamedTuple):
    index: int
    image_id: str
    real_side: Side


class Progress(NamedTuple):
    answered: int
    total: int


class RateSummary(NamedTuple):
    rate: float
    ci_low: float
    ci_high: float
    n: int


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def open_store(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (and if needed create) the study database in WAL mode with the schema in place."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} for the study database {path} does not exist")
    if not create and not path.is_file():
        raise FileNotFoundError(f"study database {path} does not exist")
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL also survives an OS crash, not only a killed server; a study writes too little for it to matter.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(_SCHEMA)
    except sqlite3.DatabaseError as error:
        conn.close()
        raise ValueError(f"{path} is not a usable study database (SQLite said: {error})") from error
    return conn


def create_session(
    conn: sqlite3.Connection, session_id: str, user_agent: str, plan: Sequence[tuple[str, Side]]
) -> None:
    """Store a new session with its trial plan: one (image_id, real_side) per trial, in order."""
    if not plan:
        raise ValueError(f"session {session_id}: the trial plan is empty")
    with conn:
        conn.execute(
            "INSERT INTO sessions (id, started_at, user_agent) VALUES (?, ?, ?)",
            (session_id, utc_now(), user_agent),
        )
        conn.executemany(
            "INSERT INTO trials (session_id, trial, image_id, real_side) VALUES (?, ?, ?, ?)",
            [(session_id, index, image_id, real_side) for index, (image_id, real_side) in enumerate(plan)],
        )


def session_progress(conn: sqlite3.Connection, session_id: str) -> Progress | None:
    """Answered and planned trial counts of a session, or None for an unknown session id."""
    row = conn.execute(
        "SELECT (SELECT COUNT(*) FROM trials WHERE session_id = :s) AS total,"
        " (SELECT COUNT(*) FROM answers WHERE session_id = :s) AS answered",
        {"s": session_id},
    ).fetchone()
    return Progress(row["answered"], row["total"]) if row["total"] else None


def get_trial(conn: sqlite3.Connection, session_id: str, index: int) -> Trial | None:
    row = conn.execute(
        "SELECT trial, image_id, real_side FROM trials WHERE session_id = ? AND trial = ?",
        (session_id, index),
    ).fetchone()
    return Trial(row["trial"], row["image_id"], row["real_side"]) if row else None


def next_trial(conn: sqlite3.Connection, session_id: str) -> Trial | None:
    """First trial of the session still without an answer, or None once all are answered."""
    row = conn.execute(
        "SELECT t.trial, t.image_id, t.real_side FROM trials t"
        " LEFT JOIN answers a ON a.session_id = t.session_id AND a.trial = t.trial"
        " WHERE t.session_id = ? AND a.trial IS NULL ORDER BY t.trial LIMIT 1",
        (session_id,),
    ).fetchone()
    return Trial(row["trial"], row["image_id"], row["real_side"]) if row else None


def record_answer(
    conn: sqlite3.Connection, session_id: str, trial_index: int, chosen_side: Side, response_ms: int
) -> bool:
    """Store one answer, committed at once; returns False if that trial was already answered (a resubmission)."""
    if chosen_side not in SIDES:
        raise ValueError(f"chosen_side must be 'left' or 'right', got {chosen_side!r}")
    if response_ms < 0:
        raise ValueError(f"response_ms must be >= 0, got {response_ms}")
    trial = get_trial(conn, session_id, trial_index)
    if trial is None:
        raise ValueError(f"session {session_id} has no trial {trial_index}")
    with conn:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO answers (session_id, trial, image_id, real_side, chosen_side, fooled,"
            " response_ms, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                trial_index,
                trial.image_id,
                trial.real_side,
                chosen_side,
                int(chosen_side != trial.real_side),
                response_ms,
                utc_now(),
            ),
        )
    return cursor.rowcount == 1


def session_fooled_count(conn: sqlite3.Connection, session_id: str) -> int:
    """How many of the session's answers took the colorized image for the real one."""
    query = "SELECT COALESCE(SUM(fooled), 0) FROM answers WHERE session_id = ?"
    return conn.execute(query, (session_id,)).fetchone()[0]


def _summary(fooled: int, n: int) -> RateSummary:
    if n == 0:
        return RateSummary(math.nan, math.nan, math.nan, 0)
    return RateSummary(fooled / n, *wilson_interval(fooled, n), n)


def fooling_rate(db: sqlite3.Connection) -> RateSummary:
    """Share of answers where the colorized image was taken for the real one, with a Wilson 95% interval."""
    row = db.execute("SELECT COALESCE(SUM(fooled), 0) AS fooled, COUNT(*) AS n FROM answers").fetchone()
    return _summary(row["fooled"], row["n"])


def per_image_fooling_rates(db: sqlite3.Connection) -> dict[str, RateSummary]:
    rows = db.execute(
        "SELECT image_id, SUM(fooled) AS fooled, COUNT(*) AS n FROM answers GROUP BY image_id ORDER BY image_id"
    )
    return {row["image_id"]: _summary(row["fooled"], row["n"]) for row in rows}


def session_count(db: sqlite3.Connection) -> int:
    """Sessions with at least one answer."""
    return db.execute("SELECT COUNT(DISTINCT session_id) FROM answers").fetchone()[0]


def export_csv(db: sqlite3.Connection, path: str | Path) -> int:
    """Write every answer to a CSV file (one row per answer, header first); returns the number of rows."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} for the CSV export {path} does not exist")
    rows = db.execute(
        f"SELECT {', '.join(ANSWER_COLUMNS)} FROM answers ORDER BY answered_at, session_id, trial"
    ).fetchall()
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(ANSWER_COLUMNS)
        writer.writerows(tuple(row) for row in rows)
    return len(rows)
