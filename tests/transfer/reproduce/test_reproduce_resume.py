"""make reproduce through its command line: a smoke campaign killed with SIGTERM once during the probe and once
during the VOC07 fine-tune of all layers, continued each time by the same command, ends with the rows of an uninterrupted campaign
(to 1e-6), and its pretraining ran once (its checkpoint untouched by the resumes)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.paths import REPO
from transfer.reproduce.state import file_sha256

PREEMPTED = 75
# What a row measures (the rest says where and when it was written).
MEASURED = (
    "top1",
    "top5",
    "map",
    "map_std",
    "map_per_sample",
    "ap",
    "miou",
    "pixel_accuracy",
    "iou",
    "steps",
    "k",
)


def command(runs_dir: Path, run: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "transfer.cli.reproduce",
        f"run={run}",
        "scale=smoke",
        f"runs_dir={runs_dir}",
        "accelerator=cpu",
        "logger=csv",
    ]


def environment() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    return env


def run_to_end(runs_dir: Path, run: str, log: Path) -> None:
    with open(log, "a") as out:
        result = subprocess.run(
            command(runs_dir, run),
            cwd=REPO,
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=900,
        )
    assert result.returncode == 0, log.read_text()[-3000:]


def kill_once(runs_dir: Path, run: str, log: Path, checkpoint: Path) -> None:
    """Start the campaign, SIGTERM it as soon as ``checkpoint`` exists (the stage is mid-training), expect 75."""
    with open(log, "a") as out:
        process = subprocess.Popen(
            command(runs_dir, run), cwd=REPO, env=environment(), stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 600
        while not checkpoint.exists():
            assert process.poll() is None, (
                f"ended before {checkpoint} was written:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"{checkpoint} never appeared"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=300) == PREEMPTED, log.read_text()[-3000:]


def measured(value: Any, expected: Any, where: str) -> None:
    if isinstance(expected, dict):
        assert value.keys() == expected.keys(), where
        for key in expected:
            measured(value[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(value) == len(expected), where
        for index, (one, other) in enumerate(zip(value, expected, strict=True)):
            measured(one, other, f"{where}[{index}]")
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(value), where
    elif isinstance(expected, int | float) and not isinstance(expected, bool):
        assert value == pytest.approx(expected, abs=1e-6), where
    else:
        assert value == expected, where


def stages(runs_dir: Path, run: str) -> dict[str, Any]:
    return json.loads((runs_dir / run / "pipeline.json").read_text())["stages"]


def side_by_side(resumed: dict[str, Any], straight: dict[str, Any]) -> str:
    lines = [f"{'stage':<17} {'number':<22} {'killed + resumed':>18} {'uninterrupted':>14}"]
    for name, record in straight.items():
        for row, other in zip(resumed[name]["rows"], record["rows"], strict=True):
            for key in ("top1", "map", "miou"):
                if key in row:
                    label = f"{row.get('layer', '')} {key}" + (f" k={row['k']}" if "k" in row else "")
                    lines.append(f"{name:<17} {label:<22} {row[key]:>18.6f} {other[key]:>14.6f}")
    return "\n".join(lines)


@pytest.mark.slow
def test_a_campaign_killed_twice_and_resumed_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    runs, log = tmp_path / "runs", tmp_path / "reproduce.log"
    run_to_end(runs, "straight", log)

    campaign = runs / "killed"
    kill_once(runs, "killed", log, campaign / "probe-imagenet" / "checkpoints" / "last.ckpt")
    pretrain_checkpoint = campaign / "pretrain" / "killed" / "checkpoints" / "last.ckpt"
    after_pretrain = (file_sha256(pretrain_checkpoint), pretrain_checkpoint.stat().st_mtime_ns)
    assert stages(runs, "killed")["probe"]["status"] == "running"
    kill_once(runs, "killed", log, campaign / "voc-cls-kraehenbuehl16-conv1" / "checkpoints" / "last.ckpt")
    assert stages(runs, "killed")["voc-cls-all"]["status"] == "running"
    run_to_end(runs, "killed", log)

    resumed, straight = stages(runs, "killed"), stages(runs, "straight")
    print("\n" + side_by_side(resumed, straight))
    text = log.read_text()
    assert "probe: running before, resuming" in text and "voc-cls-all: running before, resuming" in text
    assert text.count("pretrain: done, skipped") == 2  # by the two resumes
    assert {name: record["starts"] for name, record in resumed.items()} == {
        name: 2 if name in ("probe", "voc-cls-all") else 1 for name in straight
    }
    assert (file_sha256(pretrain_checkpoint), pretrain_checkpoint.stat().st_mtime_ns) == after_pretrain
    assert resumed["pretrain"]["outputs"]["sha256"] == after_pretrain[0]
    for name, record in straight.items():
        assert resumed[name]["status"] == "done", name
        assert len(resumed[name]["rows"]) == len(record["rows"]), name
        for row, expected in zip(resumed[name]["rows"], record["rows"], strict=True):
            for key in MEASURED:
                if key in expected:
                    measured(row[key], expected[key], f"{name}.{key}")
    assert straight["probe"]["rows"] and straight["voc-det"]["rows"]
    report = (campaign / "report" / "report.md").read_text()
    assert "| probe | conv1 top-1 |" in report and "| voc-det |" in report
