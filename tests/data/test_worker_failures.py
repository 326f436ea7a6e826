"""An exception in a DataLoader worker ends the command with its one-line error and status 2, workers and all:
the workers ignore SIGTERM (the main process answers a scheduler's signal), so nothing may wait for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO

pytest.importorskip("litdata", reason="litdata (the shards extra) is not installed")

from lit_colorization.data.shards import write_shards  # noqa: E402
from tests.data.test_shard_safety import write_image_folder  # noqa: E402


def processes_naming(text: str) -> list[int]:
    """The live processes whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# A folder run ended well before (the fault drill's hostile-images-strict cases): slow, as a regression check.
@pytest.mark.parametrize("source", ["shards", pytest.param("folder", marks=pytest.mark.slow)])
def test_an_unreadable_image_in_a_worker_ends_the_run_with_its_workers(tmp_path, source) -> None:
    images = write_image_folder(tmp_path / "images")
    (images / "train" / "class0" / "00.jpg").write_bytes(b"not a jpeg")
    root = images
    if source == "shards":
        root = tmp_path / "shards"
        write_shards(str(images), str(root), workers=1, index_cache=None)
    runs = tmp_path / "runs"
    command = [
        sys.executable, "-m", "lit_colorization.cli.pretrain", f"runs_dir={runs}", "run=r",
        f"data.source={source}", f"data.root={root}", "data.strict=true", "data.num_workers=2",
        "data.crop_size=32", "data.batch_size=2", "data.index_cache=null", "model.kwargs.width=0.125",
        "trainer.accelerator=cpu", "trainer.max_steps=1", "trainer.progress_bar=false", "logger.kind=none",
        "online_eval.enabled=false", "trainer.validate_before_training=false",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=240,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    finally:
        leftover = processes_naming(str(runs))
        for pid in leftover:
            os.kill(pid, 9)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    assert "unreadable image" in errors[0] and "00.jpg" in errors[0]
    assert (source != "shards" or str(root / "train") in errors[0]) and "Traceback" not in result.stderr
    assert leftover == []  # no worker outlived the process
    assert not (runs / "r" / "run.lock").exists()
