"""The progress bar shows the training loss without Lightning converting it to a number at every step."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from lit_colorization.runtime.trainer import TrainingLossProgressBar
from tests.helpers import bare_trainer


class LoggingModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).square().mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(torch.arange(8.0).view(-1, 1), batch_size=2)


def test_the_bar_reads_the_loss_lightning_keeps_as_a_tensor() -> None:
    torch.manual_seed(0)
    module = LoggingModule()
    bar = TrainingLossProgressBar(refresh_rate=2)
    trainer = bare_trainer(max_steps=4, callbacks=[bar], enable_progress_bar=True)
    trainer.fit(module)
    # Not a prog_bar metric, so Lightning never called .item() on it each step ...
    assert "train/loss" not in trainer.progress_bar_metrics
    loss = trainer.callback_metrics["train/loss"]
    assert isinstance(loss, torch.Tensor)
    # ... and the bar shows it when it refreshes.
    assert bar.get_metrics(trainer, module)["train/loss"] == f"{float(loss):.3f}"
