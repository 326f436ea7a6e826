"""Flask app of the "real or colorized?" study (the paper's colorization Turing test).

Each trial shows one image's real and colorized versions side by side, in random order, for a short time,
then asks which is the real photo. All state lives in the SQLite store (the plan of each session included),
and the participant is known only by a random token in a cookie, so the server can be restarted mid-study.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from flask import Flask, abort, g, redirect, render_template, request, send_file, url_for
from werkzeug.wrappers import Response

from lit_colorization.study import store
from lit_colorization.study.pairs import find_pairs

PARTICIPANT_COOKIE = "study_participant"
# Beyond this a response time is not a measurement of the trial (the tab was left open), so it is refused.
MAX_RESPONSE_MS = 60 * 60 * 1000
# The largest request body: an answer form is a few dozen bytes; anything larger is refused (HTTP 413) unread.
MAX_REQUEST_BYTES = 16 * 1024
_random = secrets.SystemRandom()


def make_plan(image_ids: Iterable[str], trials: int) -> list[tuple[str, store.Side]]:
    """A random subset of `trials` distinct images, each with the side the real photo goes to."""
    return [(name, _random.choice(store.SIDES)) for name in _random.sample(sorted(image_ids), trials)]


def create_app(study_dir: str | Path, db_path: str | Path, trials: int = 10, show_ms: int = 1000) -> Flask:
    """Build the study app over a study folder (real/ and colorized/) and an SQLite database."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if show_ms < 1:
        raise ValueError(f"show_ms must be >= 1, got {show_ms}")
    pairs = find_pairs(study_dir)
    if trials > len(pairs):
        raise ValueError(f"trials={trials} exceeds the {len(pairs)} image pairs in {study_dir}")
    db_path = Path(db_path)
    store.open_store(db_path).close()  # fail at start-up, not at the first participant, on a bad path

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    def db() -> sqlite3.Connection:
        if "db" not in g:
            g.db = store.open_store(db_path)
        return g.db

    @app.teardown_appcontext
    def close_db(_error: BaseException | None) -> None:
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    def participant() -> tuple[str, store.Progress] | None:
        token = request.cookies.get(PARTICIPANT_COOKIE)
        progress = store.session_progress(db(), token) if token else None
        return (token, progress) if progress else None

    @app.get("/")
    def index() -> Response | str:
        known = participant()
        if known is not None:
            return redirect(url_for("trial"))
        return render_template("intro.html", trials=trials, show_ms=show_ms)

    @app.post("/start")
    def start() -> Response:
        known = participant()
        # A finished session may hand the browser to the next participant; an unfinished one is resumed.
        if known is not None and known[1].answered < known[1].total:
            return redirect(url_for("trial"))
        token = secrets.token_urlsafe(16)
        store.create_session(
            db(), token, request.headers.get("User-Agent", ""), make_plan(pairs.keys(), trials)
        )
        response = redirect(url_for("trial"))
        response.set_cookie(PARTICIPANT_COOKIE, token, max_age=30 * 24 * 3600, httponly=True, samesite="Lax")
        return response

    @app.get("/trial")
    def trial() -> Response | str:
        known = participant()
        if known is None:
            return redirect(url_for("index"))
        token, progress = known
        current = store.next_trial(db(), token)
        if current is None:
            return redirect(url_for("done"))
        return render_template(
            "trial.html", trial=current.index, number=current.index + 1, total=progress.total, show_ms=show_ms
        )

    @app.get("/image/<int:index>/<side>")
    def image(index: int, side: str) -> Response:
        known = participant()
        # Checked before the database sees it: SQLite integers end at 2**63.
        if known is None or side not in store.SIDES or not 0 <= index < known[1].total:
            abort(404)
        current = store.get_trial(db(), known[0], index)
        if current is None:
            abort(404)
        pair = pairs.get(current.image_id)
        if pair is None:
            abort(410, f"image {current.image_id!r} is no longer in the study folder")
        path = pair.real if side == current.real_side else pair.colorized
        # No caching, so that going back in the browser cannot show a hidden pair again for free.
        response = send_file(path, max_age=0)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/answer")
    def answer() -> Response:
        known = participant()
        if known is None:
            return redirect(url_for("index"))
        token, progress = known
        try:
            index = int(request.form["trial"])
            response_ms = int(request.form["response_ms"])
        except (KeyError, ValueError):
            abort(400, "form fields trial and response_ms must be integers")
        chosen_side = request.form.get("chosen_side", "")
        if chosen_side not in store.SIDES:
            abort(400, "chosen_side must be 'left' or 'right'")
        if not 0 <= response_ms <= MAX_RESPONSE_MS:
            abort(400, f"response_ms must be within 0..{MAX_RESPONSE_MS}")
        current = store.next_trial(db(), token)
        # An index below the next open trial is a resubmitted answer (e.g. a retry after a restart): keep the first.
        if not 0 <= index < progress.total or (current is not None and index > current.index):
            abort(400, f"trial {index} is not open in this session")
        store.record_answer(db(), token, index, chosen_side, response_ms)
        return redirect(url_for("trial"))

    @app.get("/done")
    def done() -> Response | str:
        known = participant()
        if known is None:
            return redirect(url_for("index"))
        token, progress = known
        if progress.answered < progress.total:
            return redirect(url_for("trial"))
        fooled = store.session_fooled_count(db(), token)
        return render_template(
            "done.html", correct=progress.total - fooled, fooled=fooled, total=progress.total
        )

    return app
