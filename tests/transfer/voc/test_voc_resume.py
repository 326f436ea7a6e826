"""A VOC fine-tune survives a kill: SIGTERM through the CLI saves last.ckpt at the step's end and exits with 75;
resume=auto then ends with the weights and the mAP of a run that was never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_colorization.color import ab_bins
from lit_colorization.models import create_model
from lit_colorization.runtime.preemption import PREEMPTED_EXIT_CODE
from lit_colorization.store.checkpoint import write_checkpoint
from tests.helpers import run_module, saved_step, sigterm_after_checkpoint
from transfer.cli.voc_det import main as voc_det_main

STEPS = 60


@pytest.fixture(scope="module")
def alexnet_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    network = create_model("alexnet", width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "pre" / "checkpoints" / "last.ckpt"
    return write_checkpoint(path, network, ab_bins(), None, {"run": "tiny-pretrain"})


def finetune_overrides(tmp_path: Path, ckpt: Path, run: str, *extra: str) -> list[str]:
    """Every layer of a narrow AlexNet fine-tuned (the finetune recipe: dropout in fc6/fc7, random crops and flips)
    on a tiny VOC; kraehenbuehl16 resumes through the same code, tested by the slow make-reproduce kill test."""
    return [
        f"ckpt={ckpt}", f"runs_dir={tmp_path / 'runs'}", f"results={tmp_path / 'results.jsonl'}", f"run={run}",
        f"data.tiny.cache_dir={tmp_path / 'cache'}", "data.tiny.num_train=6", "data.tiny.num_val=6",
        "data.tiny.num_test=6", "data.tiny.image_size=64", "data.tiny.classes=[car,cat,dog]", "data.num_workers=0",
        "protocol=finetune", "image.resize=48", "image.crop=40", "data.batch_size=4", "train_from=conv1",
        f"trainer.max_steps={STEPS}", "optim.milestones=[15,45]", "trainer.accelerator=cpu",
        "trainer.progress_bar=false", "logger.kind=none",
        *extra,
    ]  # fmt: skip


def test_finetune_sigterm_saves_exits_75_and_resume_auto_ends_as_an_unstopped_run(
    tmp_path, alexnet_checkpoint
):
    runs = tmp_path / "runs"
    last = runs / "voc-cls-stopped" / "checkpoints" / "last.ckpt"
    stopped = finetune_overrides(
        tmp_path, alexnet_checkpoint, "stopped", "trainer.checkpoint_every_n_steps=1"
    )
    status, stderr = sigterm_after_checkpoint(stopped, last, "transfer.cli.voc_cls")
    assert status == PREEMPTED_EXIT_CODE, stderr[-3000:]
    step = saved_step(last)
    assert 3 <= step < STEPS and f"SIGTERM: saved {last} at step {step}; exiting with status 75" in stderr

    # Both in fresh processes, as the stopped run was: no process-wide torch setting an earlier test left behind
    # can tell the two apart.
    for arguments in (
        finetune_overrides(tmp_path, alexnet_checkpoint, "stopped", "resume=auto"),
        finetune_overrides(tmp_path, alexnet_checkpoint, "whole"),
    ):
        finished = run_module("transfer.cli.voc_cls", *arguments)
        assert finished.returncode == 0, finished.stderr[-3000:]

    resumed, whole = (
        torch.load(
            runs / f"voc-cls-{run}" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
        )
        for run in ("stopped", "whole")
    )
    assert resumed["global_step"] == whole["global_step"] == STEPS
    for key, value in whole["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key].float(), value.float(), rtol=0, atol=1e-6), key
    [resumed_row], [whole_row] = (
        json.loads((runs / f"voc-cls-{run}" / "results.json").read_text()) for run in ("stopped", "whole")
    )
    assert resumed_row["steps"] == whole_row["steps"] == STEPS
    assert resumed_row["map"] == pytest.approx(whole_row["map"], abs=1e-6)
    assert resumed_row["ap"] == whole_row["ap"]


DETECTION_STEPS = 16


def detection_overrides(tmp_path: Path, ckpt: Path, run: str, *extra: str) -> list[str]:
    """A tiny Faster R-CNN (faster-rcnn-fc67, the AlexNet's default): its proposal and box sampling, multi-scale
    draws and dropout use torch's generator at every step."""
    return [
        f"ckpt={ckpt}", f"runs_dir={tmp_path / 'runs'}", f"results={tmp_path / 'results.jsonl'}", f"run={run}",
        f"data.tiny.cache_dir={tmp_path / 'cache'}", "data.tiny.num_train=6", "data.tiny.num_val=6",
        "data.tiny.num_test=6", "data.tiny.image_size=64", "data.tiny.classes=[car,cat,dog]", "data.num_workers=0",
        "data.batch_size=2", "detector.min_size=64", "detector.max_size=96", "detector.train_sizes=[48,64,80]",
        "detector.train_max_size=128", "detector.anchor_sizes=[16,32]",
        "detector.representation_size=32", f"trainer.max_steps={DETECTION_STEPS}", "optim.milestones=[8]",
        "trainer.accelerator=cpu", "trainer.progress_bar=false", "logger.kind=none",
        *extra,
    ]  # fmt: skip


@pytest.mark.slow  # three Faster R-CNN runs, one of them a CLI process: about 90 s on a loaded 2-core machine
def test_detection_resumes_exactly_with_its_random_state(tmp_path, alexnet_checkpoint):
    runs = tmp_path / "runs"
    last = runs / "voc-det-stopped" / "checkpoints" / "last.ckpt"
    stopped = detection_overrides(
        tmp_path, alexnet_checkpoint, "stopped", "trainer.checkpoint_every_n_steps=1"
    )
    status, stderr = sigterm_after_checkpoint(stopped, last, "transfer.cli.voc_det", min_step=2)
    assert status == PREEMPTED_EXIT_CODE, stderr[-3000:]
    assert 2 <= saved_step(last) < DETECTION_STEPS

    voc_det_main(detection_overrides(tmp_path, alexnet_checkpoint, "stopped", "resume=auto"))
    voc_det_main(detection_overrides(tmp_path, alexnet_checkpoint, "whole"))
    resumed, whole = (
        torch.load(
            runs / f"voc-det-{run}" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
        )
        for run in ("stopped", "whole")
    )
    for key, value in whole["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key].float(), value.float(), rtol=0, atol=1e-6), key
    [resumed_row], [whole_row] = (
        json.loads((runs / f"voc-det-{run}" / "results.json").read_text()) for run in ("stopped", "whole")
    )
    assert resumed_row["map"] == pytest.approx(whole_row["map"], abs=1e-6)
    assert resumed_row["ap"] == whole_row["ap"]
