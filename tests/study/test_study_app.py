"""Study web app through Flask's test client: a whole session, restart, validation, start-up errors."""

import re

import numpy as np
import pytest
from PIL import Image

from lit_colorization.study import store
from lit_colorization.study.app import PARTICIPANT_COOKIE, create_app, make_plan
from lit_colorization.study.pairs import find_pairs

NAMES = ["beach", "city", "forest", "market", "snow"]


def make_study(root, names=NAMES):
    """Tiny PNG pairs whose real and colorized versions differ, so served bytes reveal which one was sent."""
    for index, name in enumerate(names):
        for side, shade in (("real", 40), ("colorized", 200)):
            (root / side).mkdir(parents=True, exist_ok=True)
            pixels = np.full((8, 8, 3), (shade, index * 30, 90), dtype=np.uint8)
            Image.fromarray(pixels).save(root / side / f"{name}.png")
    return root


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "study")


def _open_trial(client, db_path):
    """Load the current trial page and return (trial, the planned trial from the DB)."""
    page = client.get("/trial")
    assert page.status_code == 200
    number, total = map(int, re.search(r"Pair (\d+) of (\d+)", page.get_data(as_text=True)).groups())
    trial_index = int(re.search(r'name="trial" value="(\d+)"', page.get_data(as_text=True)).group(1))
    assert trial_index == number - 1
    conn = store.open_store(db_path)
    planned = store.get_trial(conn, client.get_cookie(PARTICIPANT_COOKIE).value, trial_index)
    conn.close()
    return planned, total


def test_a_whole_session_records_every_answer_and_scores_it(study, tmp_path):
    db_path = tmp_path / "study.sqlite"
    client = create_app(study, db_path, trials=4, show_ms=1500).test_client()
    intro = client.get("/").get_data(as_text=True)
    assert "4 pairs" in intro and "1.5 s" in intro
    started = client.post("/start", headers={"User-Agent": "pytest-browser"})
    assert started.status_code == 302 and started.headers["Location"].endswith("/trial")
    pairs = find_pairs(study)
    chosen = {}
    for step in range(4):
        planned, total = _open_trial(client, db_path)
        assert (planned.index, total) == (step, 4)
        for side in store.SIDES:
            expected = (
                pairs[planned.image_id].real
                if side == planned.real_side
                else pairs[planned.image_id].colorized
            )
            served = client.get(f"/image/{planned.index}/{side}")
            assert served.data == expected.read_bytes()
            assert served.headers["Cache-Control"] == "no-store"
        chosen[planned.index] = store.SIDES[step % 2]
        answered = client.post(
            "/answer",
            data={"trial": planned.index, "chosen_side": chosen[planned.index], "response_ms": 400 + step},
        )
        assert answered.status_code == 302
    assert client.get("/trial").headers["Location"].endswith("/done")

    conn = store.open_store(db_path)
    rows = conn.execute(
        "SELECT trial, image_id, real_side, chosen_side, fooled, response_ms FROM answers"
    ).fetchall()
    session = conn.execute("SELECT id, user_agent FROM sessions").fetchone()
    conn.close()
    assert session["id"] == client.get_cookie(PARTICIPANT_COOKIE).value
    assert session["user_agent"] == "pytest-browser"
    assert [row["trial"] for row in rows] == [0, 1, 2, 3]
    assert len({row["image_id"] for row in rows}) == 4
    for row in rows:
        assert row["chosen_side"] == chosen[row["trial"]]
        assert row["fooled"] == int(row["chosen_side"] != row["real_side"])
        assert row["response_ms"] == 400 + row["trial"]
    fooled = sum(row["fooled"] for row in rows)
    done = client.get("/done").get_data(as_text=True)
    assert f"<strong>{4 - fooled}</strong> of 4 pairs" in done


def test_a_restarted_app_resumes_the_session_from_the_database(study, tmp_path):
    db_path = tmp_path / "study.sqlite"
    first = create_app(study, db_path, trials=3).test_client()
    first.post("/start")
    planned, _ = _open_trial(first, db_path)
    first.post("/answer", data={"trial": planned.index, "chosen_side": "left", "response_ms": 800})
    token = first.get_cookie(PARTICIPANT_COOKIE).value

    second = create_app(study, db_path, trials=3).test_client()
    second.set_cookie(PARTICIPANT_COOKIE, token)
    assert "Pair 2 of 3" in second.get("/trial").get_data(as_text=True)
    for _ in range(2):
        planned, _ = _open_trial(second, db_path)
        second.post("/answer", data={"trial": planned.index, "chosen_side": "right", "response_ms": 500})
    conn = store.open_store(db_path)
    assert store.session_progress(conn, token) == store.Progress(answered=3, total=3)
    assert store.fooling_rate(conn).n == 3
    conn.close()


def test_bad_answers_are_refused_and_resubmissions_not_double_counted(study, tmp_path):
    db_path = tmp_path / "study.sqlite"
    app = create_app(study, db_path, trials=3)
    stranger = app.test_client()
    assert (
        stranger.post("/answer", data={"trial": 0, "chosen_side": "left", "response_ms": 1}).status_code
        == 302
    )
    assert stranger.get("/image/0/left").status_code == 404

    client = app.test_client()
    client.post("/start")
    assert client.post("/answer", data={"trial": 0, "chosen_side": "up", "response_ms": 1}).status_code == 400
    assert (
        client.post("/answer", data={"trial": 0, "chosen_side": "left", "response_ms": "x"}).status_code
        == 400
    )
    assert (
        client.post("/answer", data={"trial": 0, "chosen_side": "left", "response_ms": -5}).status_code == 400
    )
    assert (
        client.post("/answer", data={"trial": 1, "chosen_side": "left", "response_ms": 1}).status_code == 400
    )
    assert (
        client.post("/answer", data={"trial": 9, "chosen_side": "left", "response_ms": 1}).status_code == 400
    )
    assert client.get("/image/0/middle").status_code == 404
    assert client.get("/image/7/left").status_code == 404
    assert (
        client.post("/answer", data={"trial": 0, "chosen_side": "left", "response_ms": 10}).status_code == 302
    )
    assert (
        client.post("/answer", data={"trial": 0, "chosen_side": "right", "response_ms": 20}).status_code
        == 302
    )
    conn = store.open_store(db_path)
    assert [tuple(row) for row in conn.execute("SELECT trial, chosen_side, response_ms FROM answers")] == [
        (0, "left", 10)
    ]
    conn.close()


def test_a_finished_browser_can_start_the_next_participant(study, tmp_path):
    db_path = tmp_path / "study.sqlite"
    client = create_app(study, db_path, trials=1).test_client()
    client.post("/start")
    first_token = client.get_cookie(PARTICIPANT_COOKIE).value
    client.post("/answer", data={"trial": 0, "chosen_side": "left", "response_ms": 10})
    assert client.get("/").headers["Location"].endswith("/trial")
    assert client.post("/start").headers["Location"].endswith("/trial")
    assert client.get_cookie(PARTICIPANT_COOKIE).value != first_token
    assert "Pair 1 of 1" in client.get("/trial").get_data(as_text=True)


def test_plans_draw_distinct_images_and_both_sides():
    plans = [make_plan(NAMES, 4) for _ in range(200)]
    assert all(
        len({name for name, _ in plan}) == 4 and set(name for name, _ in plan) <= set(NAMES) for plan in plans
    )
    left_first = sum(plan[0][1] == "left" for plan in plans)
    assert 60 < left_first < 140  # Binomial(200, 0.5): outside this range has probability below 1e-8
    assert len({tuple(plan) for plan in plans}) > 150


def test_start_up_errors_are_clear(study, tmp_path):
    with pytest.raises(ValueError, match="trials=6 exceeds the 5 image pairs"):
        create_app(study, tmp_path / "db.sqlite", trials=6)
    with pytest.raises(ValueError, match="trials must be >= 1"):
        create_app(study, tmp_path / "db.sqlite", trials=0)
    with pytest.raises(ValueError, match="show_ms must be >= 1"):
        create_app(study, tmp_path / "db.sqlite", trials=2, show_ms=0)
    with pytest.raises(FileNotFoundError, match="no_dir"):
        create_app(study, tmp_path / "no_dir" / "db.sqlite", trials=2)
    with pytest.raises(FileNotFoundError, match="no_study"):
        create_app(tmp_path / "no_study", tmp_path / "db.sqlite")
