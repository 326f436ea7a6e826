"""Two-process DDP on the CPU (gloo): launched by Lightning as a user's multi-GPU run is, and by torchrun as two nodes.

The recipe's batch is the global batch: two ranks split it, and together see exactly the images one process sees
in its batch, at the same lr, at every step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.runtime.preemption import PREEMPTED_EXIT_CODE
from tests.ddp_pretrain import STOP_STEP, RecordSteps, ddp_overrides
from tests.paths import REPO, TESTS

HERE = TESTS


def read_steps(path: Path) -> dict[int, dict]:
    return {record["step"]: record for record in map(json.loads, path.read_text().splitlines())}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_two_ranks_split_one_process_batches_and_resume_exactly(tmp_path) -> None:
    runs_dir, record_dir = tmp_path / "runs", tmp_path / "record"
    record_dir.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(HERE / "ddp_pretrain.py"), "lightning", str(runs_dir), str(record_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "global batch 8 = 2 devices x 4 | lr 2e-3 (linear from 1e-3 at 4) | 4 steps" in result.stdout

    pretrain(
        PRETRAIN.load("sample", [*ddp_overrides(tmp_path / "single", "one"), "logger.kind=none"]),
        extra_callbacks=[RecordSteps(record_dir, "one")],
    )
    one = read_steps(record_dir / "one-rank0.jsonl")
    ranks = [read_steps(record_dir / f"whole-rank{rank}.jsonl") for rank in (0, 1)]
    assert sorted(one) == sorted(ranks[0]) == sorted(ranks[1]) == [0, 1, 2, 3]
    for step, single in one.items():
        shares = [ranks[rank][step]["ids"] for rank in (0, 1)]
        assert len(shares[0]) == len(shares[1]) == 4 and not set(shares[0]) & set(shares[1])
        assert sorted(shares[0] + shares[1]) == sorted(single["ids"]), step  # the same images, split
        assert ranks[0][step]["lr"] == ranks[1][step]["lr"] == single["lr"], step
    assert [one[step]["lr"] for step in range(4)] == [2e-3, 2e-3, 2e-4, 2e-4]  # linear x2, dropped after 2

    run_dir = runs_dir / "whole"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best-step0000004.ckpt",
        "last.ckpt",
    ]
    assert len(list((run_dir / "csv").glob("version_*"))) == 1  # one logger, from rank 0
    assert sorted(p.name for p in (run_dir / "images").glob("*.png")) == [
        "val_step0000000.png",
        "val_step0000004.png",
    ]
    # Online evaluation: each rank scores its half of the 8 validation images against its half of the kNN bank;
    # the counts rank 0 wrote cover all 8.
    history = json.loads((run_dir / "online_eval.json").read_text())
    kinds_and_steps = {(row["metric"].split("/")[0], row["step"]) for row in history}
    assert kinds_and_steps == {("knn", 0), ("knn", 4), ("online", 4)}
    assert {row["total"] for row in history} == {8}

    # SIGUSR1 to rank 1 alone: both ranks stopped after the same step, with last.ckpt, and the resume ends exactly
    # as the uninterrupted run.
    # Rank 1, started by Lightning's launcher, exits with 0 so that the launcher's watchdog leaves rank 0 alone.
    stops = [(record_dir / f"preempted-rank{rank}.txt").read_text() for rank in (0, 1)]
    assert stops == [f"{STOP_STEP} {PREEMPTED_EXIT_CODE}\n", f"{STOP_STEP} 0\n"]
    whole, resumed = weights(run_dir), weights(runs_dir / "stopped")
    assert whole["global_step"] == resumed["global_step"] == 4
    for key, value in whole["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key], value, rtol=0, atol=1e-6), key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_nodes_share_one_run(tmp_path) -> None:
    """Two "nodes" of one process each, started by torchrun on this host, through the pretrain command's main."""
    runs_dir, record_dir = tmp_path / "runs", tmp_path / "record"
    record_dir.mkdir()
    port = free_port()
    overrides = [
        *ddp_overrides(runs_dir, "nodes"),
        "trainer.max_steps=4",  # 2 steps of 8 images: one epoch
        "trainer.val_check_interval=2",
        "trainer.validate_before_training=false",
        "trainer.num_nodes=2",
        "trainer.devices=1",
        "trainer.accelerator=cpu",
        "trainer.strategy=ddp",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    nodes = []
    for rank in (0, 1):
        with (tmp_path / f"node{rank}.out").open("w") as out, (tmp_path / f"node{rank}.err").open("w") as err:
            command = [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank)),
                *("--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port)),
                *(str(HERE / "ddp_pretrain.py"), "cli", str(record_dir), "--preset", "sample", *overrides),
            ]
            nodes.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err))
    for rank, node in enumerate(nodes):
        assert node.wait(timeout=600) == 0, (tmp_path / f"node{rank}.err").read_text()[-4000:]
    stdout = "".join((tmp_path / f"node{rank}.out").read_text() for rank in (0, 1))
    assert [line for line in stdout.splitlines() if line.startswith("global batch")] == [
        "global batch 8 = 2 nodes x 1 device x 4 | lr 2e-3 (linear from 1e-3 at 4) | 2 steps = 16 images (recipe: 16)"
    ]  # printed once, by global rank 0
    run_dir = runs_dir / "nodes"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best-step0000002.ckpt",
        "last.ckpt",
    ]
    (version,) = (run_dir / "csv").glob("version_*")  # one logger: global rank 0's
    assert (version / "metrics.csv").is_file() and "global_batch: 8" in (version / "hparams.yaml").read_text()
    assert not (run_dir / "run.lock").exists()
    ranks = [read_steps(record_dir / f"cli-rank{rank}.jsonl") for rank in (0, 1)]
    assert sorted(ranks[0]) == sorted(ranks[1]) == [0, 1]
    seen = [ids for rank in ranks for record in rank.values() for ids in record["ids"]]
    assert len(seen) == len(set(seen)) == 16  # disjoint shares: together, the epoch's 16 training images
