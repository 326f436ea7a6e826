"""End to end in headless Chromium: a participant answers, the server is SIGKILLed mid-study and restarted on the
same database, the same browser session finishes, and no answer is lost."""

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
NAMES = ["beach", "city", "forest", "market", "snow", "harbour"]
TRIALS = 6
ANSWERS_BEFORE_KILL = 3
SHOW_MS = 300
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} missing (apt-get install chromium)"),
    pytest.mark.skipif(
        not CHROMEDRIVER.exists(), reason=f"{CHROMEDRIVER} missing (apt-get install chromium-driver)"
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (dev extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def make_study(root):
    for index, name in enumerate(NAMES):
        for side, shade in (("real", 40), ("colorized", 200)):
            (root / side).mkdir(parents=True, exist_ok=True)
            pixels = np.full((32, 32, 3), (shade, index * 30, 90), dtype=np.uint8)
            Image.fromarray(pixels).save(root / side / f"{name}.png")
    return root


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(study, db_path, port, log_path):
    command = [
        sys.executable,
        "-m",
        "lit_colorization.study",
        "serve",
        "--study",
        str(study),
        "--db",
        str(db_path),
    ]
    command += ["--port", str(port), "--trials", str(TRIALS), "--show-ms", str(SHOW_MS)]
    with log_path.open("a") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, f"server exited early, see {log_path}:\n{log_path.read_text()}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError(f"server did not answer on port {port} within 30 s:\n{log_path.read_text()}")


def answers_in(db_path):
    conn = sqlite3.connect(db_path)
    rows = conn.execute(
        "SELECT session_id, trial, real_side, chosen_side, fooled, response_ms FROM answers"
    ).fetchall()
    conn.close()
    return rows


def answer_current_trial(driver, side):
    """Wait for the pair to be shown and hidden again, answer, and wait for the next page; returns the trial."""
    wait = WebDriverWait(driver, 20)
    button = wait.until(expected_conditions.element_to_be_clickable((By.ID, f"choose-{side}")))
    wait.until(lambda d: "hidden" in d.find_element(By.ID, "stage").get_attribute("class"))
    trial = int(driver.find_element(By.NAME, "trial").get_attribute("value"))
    button.click()
    wait.until(expected_conditions.staleness_of(button))
    return trial


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_no_answer_is_lost_when_the_server_is_killed_mid_study(tmp_path, browser):
    study = make_study(tmp_path / "study")
    db_path, log_path, port = tmp_path / "study.sqlite", tmp_path / "server.log", free_port()
    base = f"http://127.0.0.1:{port}"
    chosen = {}
    server = start_server(study, db_path, port, log_path)
    try:
        browser.get(f"{base}/")
        browser.find_element(By.ID, "start").click()
        for step in range(ANSWERS_BEFORE_KILL):
            side = ("left", "right")[step % 2]
            chosen[answer_current_trial(browser, side)] = side
        WebDriverWait(browser, 20).until(expected_conditions.element_to_be_clickable((By.ID, "choose-left")))

        os.kill(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
        assert len(answers_in(db_path)) == ANSWERS_BEFORE_KILL

        server = start_server(study, db_path, port, log_path)
        for step in range(ANSWERS_BEFORE_KILL, TRIALS):
            side = ("left", "right")[step % 2]
            chosen[answer_current_trial(browser, side)] = side
        score = WebDriverWait(browser, 20).until(
            expected_conditions.presence_of_element_located((By.ID, "score"))
        )
        correct = int(re.search(r"real photo in (\d+) of 6", score.text).group(1))
    finally:
        server.kill()
        server.wait(timeout=10)

    token = browser.get_cookie("study_participant")["value"]
    rows = answers_in(db_path)
    assert sorted(row[1] for row in rows) == list(range(TRIALS))
    assert {row[0] for row in rows} == {token}
    for _, trial, real_side, chosen_side, fooled, response_ms in rows:
        assert chosen_side == chosen[trial]
        assert fooled == int(chosen_side != real_side)
        assert response_ms >= SHOW_MS  # answered only after the pair was hidden
    assert correct == TRIALS - sum(row[4] for row in rows)

    report = subprocess.run(
        [sys.executable, "-m", "lit_colorization.study", "report", "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"n={TRIALS}" in report.stdout
