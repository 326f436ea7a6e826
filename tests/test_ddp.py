"""Two-process DDP on the CPU (gloo), launched by Lightning as a user's multi-GPU run would be."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_ddp_ranks_see_disjoint_samples_and_only_rank_zero_writes(tmp_path):
    runs_dir, record_dir = tmp_path / "runs", tmp_path / "record"
    record_dir.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(HERE / "ddp_pretrain.py"), str(runs_dir), str(record_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    seen = {rank: (record_dir / f"rank{rank}.txt").read_text().split() for rank in (0, 1)}
    assert len(seen[0]) == len(seen[1]) == 8
    assert not set(seen[0]) & set(seen[1])  # disjoint shards of one epoch
    assert len(set(seen[0]) | set(seen[1])) == 16  # together: the whole training set
    run_dir = runs_dir / "ddp"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best-step0000002.ckpt",
        "last.ckpt",
    ]
    assert len(list((run_dir / "csv").glob("version_*"))) == 1  # one logger, from rank 0
    # the untrained network's grid (step 0) and one after training
    assert sorted(p.name for p in (run_dir / "images").glob("*.png")) == [
        "val_step0000000.png",
        "val_step0000002.png",
    ]
