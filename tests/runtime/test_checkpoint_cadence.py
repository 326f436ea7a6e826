"""Checkpoints that do not stall the step: a cadence in minutes, and writes in a thread that keep the atomic writer
and a point-in-time copy of the weights."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from torch import nn

from lit_colorization.config.loading import ConfigError
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import build_trainer, checkpoint_writer
from lit_colorization.runtime import guards
from lit_colorization.runtime.guards import CLOCK_CHECK_STEPS, StepCheckpoint
from lit_colorization.runtime.scaling import resolve_scale
from lit_colorization.store.checkpoint import AtomicCheckpointIO
from tests.helpers import bare_trainer, tiny_pretrain_overrides

SECONDS_PER_STEP = 4.0


class OneWeight(L.LightningModule):
    """One weight that every step changes (SGD on the loss weight * 1): each step's checkpoint differs."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return self.weight * batch[0]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)


def ones(count: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader([torch.tensor([1.0])] * count, batch_size=None)


class Clock:
    """The time the callback reads: moved on by ``SECONDS_PER_STEP`` at each step (a fast test of minutes)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Steps(Callback):
    """Moves the clock on at each step's start and records the step of every checkpoint written."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.saved_at: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.clock.now += SECONDS_PER_STEP

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.saved_at.append(trainer.global_step)


def test_a_cadence_in_minutes_saves_when_the_time_is_up_at_the_next_look_at_the_clock(
    tmp_path, monkeypatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(guards.time, "monotonic", clock)
    steps = Steps(clock)
    # 0.5 minutes = 7.5 steps of 4 s: due after step 8, seen at the next look (every CLOCK_CHECK_STEPS = 10).
    checkpoint = StepCheckpoint(tmp_path / "last.ckpt", every_n_steps=0, every_minutes=0.5)
    bare_trainer(max_steps=45, callbacks=[steps, checkpoint]).fit(OneWeight(), train_dataloaders=ones(100))
    assert CLOCK_CHECK_STEPS == 10
    assert steps.saved_at == [10, 20, 30, 40, 45]  # and at max_steps
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 45


def test_steps_and_minutes_together_save_on_whichever_comes_first(tmp_path, monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(guards.time, "monotonic", clock)
    steps = Steps(clock)
    # Every 25 steps, and every minute (15 steps) since the last checkpoint, either schedule's: the clock's
    # saves at its looks (steps 20 and 40), the step schedule's at 25 and 50, and one at max_steps.
    checkpoint = StepCheckpoint(tmp_path / "last.ckpt", every_n_steps=25, every_minutes=1.0)
    bare_trainer(max_steps=60, callbacks=[steps, checkpoint]).fit(OneWeight(), train_dataloaders=ones(100))
    assert steps.saved_at == [20, 25, 40, 50, 60]


class SaveEveryStep(Callback):
    """Hands every step's checkpoint to the trainer's writer, noting the weight it had then."""

    def __init__(self, folder) -> None:
        self.folder = folder
        self.weights: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        self.weights[step] = float(pl_module.weight.detach())
        trainer.save_checkpoint(self.folder / f"step{step}.ckpt")


def test_asynchronous_writes_hold_the_weights_of_their_step_through_the_atomic_writer(tmp_path) -> None:
    saver = SaveEveryStep(tmp_path)
    trainer = bare_trainer(max_steps=6, callbacks=[saver], plugins=[checkpoint_writer(asynchronous=True)])
    assert isinstance(trainer.strategy.checkpoint_io, AsyncCheckpointIO)
    assert isinstance(trainer.strategy.checkpoint_io.checkpoint_io, AtomicCheckpointIO)
    trainer.fit(OneWeight(), train_dataloaders=ones(10))  # returns once every write is done
    assert saver.weights == {step: -float(step) for step in range(1, 7)}
    for step, weight in saver.weights.items():
        stored = torch.load(tmp_path / f"step{step}.ckpt", weights_only=True)
        assert stored["global_step"] == step and float(stored["state_dict"]["weight"]) == weight
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"step{step}.ckpt" for step in range(1, 7)]


class SaveAndLook(Callback):
    def __init__(self, checkpoint: StepCheckpoint) -> None:
        self.checkpoint = checkpoint
        self.found_step: int | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 3:
            self.checkpoint.save(trainer, wait=True)  # as the stop on a signal does, before the process exits
            self.found_step = torch.load(self.checkpoint.path, weights_only=True)["global_step"]


def test_a_save_that_waits_finds_the_file_written_when_it_returns(tmp_path) -> None:
    checkpoint = StepCheckpoint(tmp_path / "last.ckpt", every_n_steps=0)
    look = SaveAndLook(checkpoint)
    trainer = bare_trainer(max_steps=5, callbacks=[look], plugins=[checkpoint_writer(asynchronous=True)])
    trainer.fit(OneWeight(), train_dataloaders=ones(10))
    assert look.found_step == 3


def test_pretraining_writes_in_a_thread_only_when_asked(tmp_path) -> None:
    for asynchronous in (False, True):
        overrides = [*tiny_pretrain_overrides(tmp_path), f"trainer.async_checkpoint={asynchronous}"]
        config = PRETRAIN.load("sample", overrides)
        trainer = build_trainer(config, resolve_scale(config), tmp_path / "tiny", logger=False)
        writer = trainer.strategy.checkpoint_io
        assert isinstance(writer, AsyncCheckpointIO) == asynchronous
        assert isinstance(writer.checkpoint_io if asynchronous else writer, AtomicCheckpointIO)


def test_the_imagenet_presets_save_every_ten_minutes_in_a_thread(tmp_path) -> None:
    for preset in ("eccv16_imagenet", "alexnet_imagenet"):
        config = PRETRAIN.load(preset, [f"data.root={tmp_path}", "trainer.accelerator=cpu"])
        trainer = config.trainer
        assert (trainer.checkpoint_every_n_steps, trainer.checkpoint_every_minutes) == (0, 10)
        assert trainer.async_checkpoint and not config.online_eval.save_heads


def test_a_negative_cadence_in_minutes_is_a_one_line_config_error(tmp_path) -> None:
    overrides = [*tiny_pretrain_overrides(tmp_path), "trainer.checkpoint_every_minutes=-1"]
    with pytest.raises(ConfigError, match=r"trainer.checkpoint_every_minutes.*a number >= 0"):
        PRETRAIN.load("sample", overrides)
