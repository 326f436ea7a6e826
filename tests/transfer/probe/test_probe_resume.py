"""The linear probe survives a kill: SIGTERM through the CLI saves last.ckpt at the step's end and exits with 75;
resume=auto then ends with the heads, optimizer and accuracies of a run that was never stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_colorization.runtime.preemption import PREEMPTED_EXIT_CODE
from tests.helpers import saved_step, sigterm_after_checkpoint
from transfer.cli.probe import main as probe_main

STEPS = 80


def probe_overrides(runs_dir: Path, run: str, *extra: str) -> list[str]:
    """A probe of seconds: two layers of a narrow random eccv16 on small synthetic images, counted in steps."""
    return [
        "ckpt=random", "model=eccv16", "model_kwargs.width=0.125", "layer=conv1,conv3",
        f"runs_dir={runs_dir}", f"results={runs_dir}/transfer.jsonl", f"run={run}",
        "data.source=synthetic", "data.crop_size=32", "data.synthetic_size=48", "data.synthetic_train_images=24",
        "data.synthetic_val_images=8", "data.batch_size=8", "data.num_workers=0",
        "schedule.unit=step", f"schedule.length={STEPS}", "schedule.milestones=[20,50]",
        "trainer.accelerator=cpu", "trainer.progress_bar=false", "logger.kind=none",
        *extra,
    ]  # fmt: skip


def last_checkpoint(runs_dir: Path, run: str) -> dict:
    path = runs_dir / f"probe-{run}" / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=True)


def rows_of(runs_dir: Path, run: str) -> list[dict]:
    return json.loads((runs_dir / f"probe-{run}" / "results.json").read_text())


def test_sigterm_saves_exits_75_and_resume_auto_ends_as_an_unstopped_run(tmp_path):
    stopped = probe_overrides(tmp_path, "stopped", "trainer.checkpoint_every_n_steps=1")
    last = tmp_path / "probe-stopped" / "checkpoints" / "last.ckpt"
    status, stderr = sigterm_after_checkpoint(stopped, last, "transfer.cli.probe")
    assert status == PREEMPTED_EXIT_CODE, stderr[-3000:]
    step = saved_step(last)
    assert 3 <= step < STEPS and f"SIGTERM: saved {last} at step {step}; exiting with status 75" in stderr
    assert not (tmp_path / "probe-stopped" / "results.json").exists()
    # The frozen trunk is not copied into the probe's checkpoint: only the heads and the trunk's checksum.
    assert not any(key.startswith("backbone.") for key in last_checkpoint(tmp_path, "stopped")["state_dict"])

    # Without resume the folder is not started over.
    with pytest.raises(SystemExit) as refused:
        probe_main(probe_overrides(tmp_path, "stopped"))
    assert refused.value.code == 2
    probe_main(probe_overrides(tmp_path, "stopped", "resume=auto"))
    probe_main(probe_overrides(tmp_path, "whole", "trainer.checkpoint_every_n_steps=0"))

    resumed, whole = last_checkpoint(tmp_path, "stopped"), last_checkpoint(tmp_path, "whole")
    assert resumed["global_step"] == whole["global_step"] == STEPS
    assert resumed["state_dict"].keys() == whole["state_dict"].keys()
    for key, value in whole["state_dict"].items():
        assert torch.allclose(resumed["state_dict"][key].float(), value.float(), rtol=0, atol=1e-6), key
    momentum = [state["momentum_buffer"] for state in whole["optimizer_states"][0]["state"].values()]
    resumed_momentum = [
        state["momentum_buffer"] for state in resumed["optimizer_states"][0]["state"].values()
    ]
    assert all(
        torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(resumed_momentum, momentum, strict=True)
    )
    numbers = ("layer", "top1", "top5", "steps", "epochs")
    assert [{k: row[k] for k in numbers} for row in rows_of(tmp_path, "stopped")] == [
        {k: row[k] for k in numbers} for row in rows_of(tmp_path, "whole")
    ]


def test_a_checkpoint_of_another_trunk_is_refused(tmp_path, capsys):
    probe_main(probe_overrides(tmp_path, "a", "schedule.length=2", "schedule.milestones=[1]"))
    other = tmp_path / "probe-b" / "checkpoints"
    other.mkdir(parents=True)
    (other / "last.ckpt").write_bytes((tmp_path / "probe-a" / "checkpoints" / "last.ckpt").read_bytes())
    with pytest.raises(SystemExit):
        probe_main(
            probe_overrides(
                tmp_path, "b", "schedule.length=2", "schedule.milestones=[1]", "resume=auto", "trainer.seed=1"
            )
        )
    assert "trunk had weights checksum" in capsys.readouterr().err
