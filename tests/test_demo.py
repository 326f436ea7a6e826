"""``make demo`` end to end (slow: a few minutes on 2 cores), shortened to 20 pretraining steps."""

import json

import pytest

from tests.conftest import run_module


@pytest.mark.slow
def test_demo_writes_the_whole_report(tmp_path):
    result = run_module(
        "transfer.cli.demo",
        f"runs_dir={tmp_path}",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = tmp_path / "demo" / "report"
    for name in (
        "photos.png",
        "validation.png",
        "metrics.json",
        "transfer.jsonl",
        "comparison.txt",
        "linear_probe.png",
    ):
        assert (report / name).is_file(), name
    history = json.loads((report / "metrics.json").read_text())
    assert "0" in history and history["0"]["val/loss"] > 0  # the untrained network is scored first
    rows = [json.loads(line) for line in (report / "transfer.jsonl").read_text().splitlines()]
    assert {row["pretrain_run"] for row in rows} == {"demo", "random-eccv16"}
    assert "demo report:" in result.stdout
