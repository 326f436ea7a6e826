"""Guards of a long run: atomic checkpoints that never hold NaN weights, and a stop on a non-finite loss."""

from __future__ import annotations

import re

import lightning as L
import pytest
import torch
from torch import nn

from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import build_trainer
from lit_colorization.runtime.guards import (
    NonFiniteLossError,
    NonFiniteLossGuard,
    StepCheckpoint,
    takes_skip_flag,
)
from lit_colorization.runtime.preemption import StopOnSignal
from lit_colorization.runtime.scaling import resolve_scale
from lit_colorization.store.checkpoint import AtomicCheckpointIO, CheckpointError, read_checkpoint
from tests.helpers import bare_trainer, tiny_pretrain_overrides


class ExplodesWhenPickled:
    """Stands for anything that fails halfway through ``torch.save`` (a full disk, a kill, a bad object)."""

    def __reduce__(self):
        raise OSError("no space left on device")


def test_a_failed_save_keeps_the_previous_checkpoint_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "global_step": 1}, path)
    with pytest.raises(OSError, match="no space"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "boom": ExplodesWhenPickled()}, path)
    kept = torch.load(path, weights_only=True)
    assert kept["global_step"] == 1 and torch.equal(kept["state_dict"]["w"], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_checkpoints_with_non_finite_weights_are_refused(tmp_path) -> None:
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    weights = {
        "net.a": torch.ones(3),
        "net.b": torch.tensor([1.0, float("nan")]),
        "net.c": torch.tensor([-float("inf")]),
    }
    with pytest.raises(CheckpointError) as raised:
        io.save_checkpoint({"state_dict": weights}, path)
    assert (
        str(path) in str(raised.value)
        and "net.b, net.c" in str(raised.value)
        and "net.a" not in str(raised.value)
    )
    assert torch.load(path, weights_only=True)["global_step"] == 1


def test_pretraining_trainer_saves_through_the_atomic_writer(tmp_path) -> None:
    config = PRETRAIN.load("sample", tiny_pretrain_overrides(tmp_path))
    trainer = build_trainer(config, resolve_scale(config), tmp_path / "tiny", logger=False)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    for kind in (NonFiniteLossGuard, StepCheckpoint, StopOnSignal):
        assert any(isinstance(callback, kind) for callback in trainer.callbacks), kind.__name__


class LossFromData(L.LightningModule):
    """One weight; the loss of a batch is weight * batch, so a NaN in the data gives a NaN loss at a known step."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(()))

    def training_step(self, batch, batch_idx):
        return self.weight * batch[0]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def fit_into_a_nan_at_step_2(module: L.LightningModule, guard: NonFiniteLossGuard, error: str) -> L.Trainer:
    """Fits ``module`` on four one-number batches, the third NaN; the guard must raise ``error`` (a regex)."""
    data = [torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([float("nan")]), torch.tensor([1.0])]
    trainer = bare_trainer(max_steps=4, callbacks=[guard])
    with pytest.raises(NonFiniteLossError, match=error) as raised:
        trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(data, batch_size=None))
    assert "\n" not in str(raised.value)
    return trainer


def test_guard_stops_before_the_update_and_names_the_step(tmp_path) -> None:
    module = LossFromData()
    fit_into_a_nan_at_step_2(module, NonFiniteLossGuard(tmp_path), r"at step 2 \(epoch 0\).*nan.*kept in")
    assert module.weight.item() == pytest.approx(0.0)  # 1 - 0.5 - 0.5: the NaN step changed nothing


class LossFromDataAdam(LossFromData):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.5, fused=True)


def test_with_fused_adam_the_device_skips_the_update_and_the_run_stops_a_step_later(tmp_path) -> None:
    module = LossFromDataAdam()
    guard = NonFiniteLossGuard(tmp_path)
    trainer = fit_into_a_nan_at_step_2(
        module, guard, r"after step 2 \(epoch 0\).*update was skipped.*kept in"
    )
    optimizer = trainer.optimizers[0]
    assert guard._on_device and takes_skip_flag(optimizer)
    # Adam's first two steps move the weight by lr each (the normalised gradient is 1); the NaN step is skipped
    # on the device, step count included, and the run stops before the next one.
    assert module.weight.item() == pytest.approx(0.0, abs=1e-6)
    assert optimizer.state[module.weight]["step"].item() == 2


def test_unfused_optimizers_take_no_skip_flag() -> None:
    assert not takes_skip_flag(torch.optim.Adam([nn.Parameter(torch.ones(1))]))
    assert not takes_skip_flag(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1))


ON_CUDA = pytest.param(
    "cuda", True, marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
)


@pytest.mark.parametrize(("accelerator", "fused"), [("cpu", False), ("cpu", True), ON_CUDA])
def test_nan_loss_through_the_cli_stops_with_one_line_and_keeps_a_finite_checkpoint(
    tmp_path, capsys, accelerator: str, fused: bool
) -> None:
    overrides = [
        *tiny_pretrain_overrides(tmp_path, "nan"),
        f"trainer.accelerator={accelerator}",
        "optim.lr=1e30",  # Adam moves every weight by ~lr: the next forward overflows
        f"optim.fused={fused}",
        "trainer.max_steps=20",
        "trainer.val_check_interval=100",
        "trainer.checkpoint_every_n_steps=1",
        "logger.kind=none",
    ]
    with pytest.raises(SystemExit) as exited:
        pretrain_main(overrides)
    assert exited.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, error_lines
    checkpoints = tmp_path / "nan" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.ckpt"]
    kept = read_checkpoint(checkpoints / "last.ckpt")
    # Fused: the update is skipped on the device and the run stops before the next save (the forward already
    # moved BatchNorm's statistics). Unfused: it stops before the backward pass.
    expected = ("update was skipped", "after step") if fused else ("loss is not finite", "at step")
    assert expected[0] in error_lines[0]
    step = int(re.search(rf"{expected[1]} (\d+)", error_lines[0]).group(1))
    assert kept.global_step == step  # written after the step before the one whose loss was not finite
    assert all(bool(torch.isfinite(value).all()) for value in kept.state_dict.values())
