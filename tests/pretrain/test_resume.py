"""Exact resume: a run stopped anywhere and continued with resume=auto ends as if it had never stopped.

Every weight, the optimizer state, the lr schedule and the sequence of training batches (crops included) of
stopped-and-resumed runs are compared with one uninterrupted run. The stops fall inside an epoch, on the
last batch of an epoch and across an lr milestone, with and without DataLoader workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_colorization.data.sampling import SeededShuffleSampler
from lit_colorization.data.synthetic import SyntheticColorDataset
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.store.checkpoint import read_checkpoint
from tests.helpers import tiny_pretrain_overrides
from tests.paths import REPO

FINAL_STEP = 7  # 16 images in batches of 4: epoch 0 is steps 1-4, epoch 1 steps 5-8
MILESTONE = 3  # the lr drops tenfold after 3 optimizer steps


class RecordBatches(Callback):
    """Keeps a digest of every training batch, keyed by the optimizer step it feeds, and the validations' steps."""

    def __init__(self) -> None:
        self.digests: dict[int, str] = {}
        self.validations: list[int] = []

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.validations.append(trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.digests[trainer.global_step] = hashlib.sha1(batch["rgb"].cpu().numpy().tobytes()).hexdigest()


def tiny_config(runs_dir: Path, run: str, workers: int, max_steps: int, *extra: str):
    return PRETRAIN.load(
        "sample",
        [
            *tiny_pretrain_overrides(runs_dir, run),
            f"data.num_workers={workers}",
            f"trainer.max_steps={max_steps}",
            "trainer.val_check_interval=3",
            "trainer.limit_val_batches=1",
            f"optim.milestones=[{MILESTONE}]",
            "logger.kind=none",
            "num_val_images_logged=0",
            *extra,
        ],
    )


def train(runs_dir: Path, run: str, workers: int, max_steps: int, *extra: str) -> RecordBatches:
    recorder = RecordBatches()
    pretrain(tiny_config(runs_dir, run, workers, max_steps, *extra), extra_callbacks=[recorder])
    return recorder


def last_checkpoint(runs_dir: Path, run: str) -> dict:
    return torch.load(runs_dir / run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[dict, RecordBatches]:
    runs_dir = tmp_path_factory.mktemp("runs")
    recorder = train(runs_dir, "whole", workers=0, max_steps=FINAL_STEP)
    return last_checkpoint(runs_dir, "whole"), recorder


def assert_same_training_state(resumed: dict, reference: dict) -> None:
    assert resumed["global_step"] == reference["global_step"] == FINAL_STEP
    assert resumed["state_dict"].keys() == reference["state_dict"].keys()
    for key, value in reference["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key], value, rtol=0, atol=1e-6), key
    (optimizer,), (reference_optimizer,) = resumed["optimizer_states"], reference["optimizer_states"]
    assert optimizer["state"].keys() == reference_optimizer["state"].keys()
    for index, state in reference_optimizer["state"].items():
        assert float(optimizer["state"][index]["step"]) == float(state["step"]) == FINAL_STEP
        for moment in ("exp_avg", "exp_avg_sq"):
            assert torch.allclose(optimizer["state"][index][moment], state[moment], rtol=0, atol=1e-6)
    lr = optimizer["param_groups"][0]["lr"]
    assert lr == reference_optimizer["param_groups"][0]["lr"] == pytest.approx(1e-4)  # 1e-3 after the drop
    (schedule,), (reference_schedule,) = resumed["lr_schedulers"], reference["lr_schedulers"]
    assert schedule["last_epoch"] == reference_schedule["last_epoch"] == FINAL_STEP


@pytest.mark.parametrize(
    ("workers", "stops"),
    [
        (0, [2]),  # inside epoch 0, before the lr milestone
        (2, [4, 5]),  # after the last batch of epoch 0, then inside epoch 1: two resumes
    ],
)
def test_stopped_and_resumed_runs_end_exactly_like_an_uninterrupted_one(
    tmp_path, uninterrupted, workers, stops
) -> None:
    reference, whole = uninterrupted
    digests: dict[int, str] = {}
    validations: list[int] = []
    legs = [*stops, FINAL_STEP]
    for attempt, max_steps in enumerate(legs):
        resume = ["resume=auto"] if attempt else []
        leg = train(tmp_path, "stopped", workers, max_steps, *resume)
        # Each leg trains only the steps after the last one's stop: a resume that silently started over would
        # also end like the uninterrupted run, seeded alike.
        assert sorted(leg.digests) == list(range(legs[attempt - 1] if attempt else 0, max_steps))
        digests.update(leg.digests)
        validations += leg.validations
        assert read_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.ckpt").global_step == max_steps
    assert digests == whole.digests  # the same batches, crops included, each at the same step
    # Validated at the same steps: the untrained network only by the first leg, none twice.
    assert validations == whole.validations and validations[0] == 0
    assert_same_training_state(last_checkpoint(tmp_path, "stopped"), reference)


def test_resumed_epoch_on_two_ranks_gets_the_rest_of_each_ranks_share() -> None:
    dataset = SyntheticColorDataset(10, 40, 24, split="train", seed=3)
    for rank in (0, 1):
        whole = SeededShuffleSampler(dataset, seed=3, num_replicas=2, rank=rank)
        whole.set_epoch(2)
        resumed = SeededShuffleSampler(dataset, seed=3, num_replicas=2, rank=rank)
        resumed.set_epoch(2)
        resumed.resume_at(2, 4)
        assert list(resumed) == list(whole)[4:] and len(resumed) == len(whole) == 5
        resumed.set_epoch(3)  # the skip belongs to the resumed epoch only
        whole.set_epoch(3)
        assert list(resumed) == list(whole)
    shares = []
    for rank in (0, 1):
        sampler = SeededShuffleSampler(dataset, seed=3, num_replicas=2, rank=rank)
        sampler.set_epoch(2)
        shares.append(list(sampler))
    assert sorted(shares[0] + shares[1]) == list(range(10))


def test_resume_after_more_samples_than_an_epoch_holds_is_refused() -> None:
    sampler = SeededShuffleSampler(SyntheticColorDataset(8, 40, 24, split="train"), seed=0)
    with pytest.raises(ValueError, match="data.batch_size or the number of devices changed"):
        sampler.resume_at(0, 9)


def test_run_killed_while_writing_checkpoints_resumes_from_an_intact_one(tmp_path, caplog) -> None:
    """SIGKILL at an arbitrary moment of a run that writes last.ckpt after every step; the resume takes over the
    run folder's lock the killed process left."""
    overrides = [
        *tiny_pretrain_overrides(tmp_path, "killed"),
        "trainer.max_steps=100000",
        "trainer.val_check_interval=1000",
        "trainer.checkpoint_every_n_steps=1",
        "logger.kind=none",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lit_colorization.cli.pretrain", *overrides],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    try:
        while not (last.exists() and read_checkpoint(last).global_step >= 3):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after step 3 within 240 s"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    killed_at = read_checkpoint(last).global_step  # readable: never half-written
    assert killed_at >= 3
    # The kill lands inside a checkpoint write only sometimes: leave such a temporary (named as atomic_open
    # names them) for certain.
    (last.parent / ".last.ckpt.interrupted.tmp").write_bytes(b"half a checkpoint")
    assert json.loads((tmp_path / "killed" / "run.lock").read_text())["pid"] == process.pid
    with caplog.at_level(logging.WARNING):
        # The killed run's lr schedule: a resume keeps it (the checkpoint's), and says so if the config differs.
        pretrain(
            tiny_config(tmp_path, "killed", 0, killed_at + 2, "resume=auto", "optim.milestones=[100000]")
        )
    assert f"taking over the lock left by process {process.pid} of this host" in caplog.text
    assert read_checkpoint(last).global_step == killed_at + 2
    assert (
        sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []
    )  # no stale temporaries
