"""perf/images_per_second (lit_colorization/runtime/throughput.py) in a tiny pretraining run's CSV log, checked
against the run's own step timing."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback

from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.pretraining import pretrain
from lit_colorization.runtime.throughput import IMAGES_PER_SECOND_KEY
from tests.helpers import tiny_pretrain_overrides

BATCH = 4  # tiny_pretrain_overrides' data.batch_size
EVERY = 2  # trainer.log_every_n_steps of the run below


class StepClock(Callback):
    """The wall time at each training step's end and each validation inside the fit, as the run saw them."""

    def __init__(self) -> None:
        self.step_end: dict[int, float] = {}
        self.validations: list[tuple[int, float]] = []  # (the step it follows, its duration)
        self._started = 0.0

    def on_train_batch_end(self, trainer: L.Trainer, *_) -> None:
        self.step_end[trainer.global_step] = time.perf_counter()

    def on_validation_start(self, trainer: L.Trainer, *_) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, *_) -> None:
        if trainer.state.fn == "fit" and trainer.global_step > 0:
            self.validations.append((trainer.global_step, time.perf_counter() - self._started))


def logged_rates(run_dir: Path) -> list[float]:
    """Every perf/images_per_second value of the run's CSV log, in step order."""
    [path] = run_dir.glob("csv/version_*/metrics.csv")
    with path.open() as stream:
        rows = [row for row in csv.DictReader(stream) if row.get(IMAGES_PER_SECOND_KEY)]
    return [float(row[IMAGES_PER_SECOND_KEY]) for row in sorted(rows, key=lambda row: int(row["step"]))]


def test_images_per_second_is_logged_at_the_cadence_from_the_runs_own_step_times(tmp_path):
    clock = StepClock()
    overrides = [
        *tiny_pretrain_overrides(tmp_path),
        "trainer.max_steps=6",
        f"trainer.log_every_n_steps={EVERY}",
        "trainer.val_check_interval=4",
        "online_eval.enabled=false",
    ]
    run_dir = pretrain(PRETRAIN.load("sample", overrides), extra_callbacks=[clock])
    rates = logged_rates(run_dir)
    assert len(rates) == 3 and all(rate > 0 for rate in rates), rates  # at steps 2, 4 and 6
    # Steps 3-4: no validation inside the window: EVERY steps of BATCH images over their wall time.
    window = clock.step_end[4] - clock.step_end[2]
    assert rates[1] == pytest.approx(EVERY * BATCH / window, rel=0.1)
    # Steps 5-6: the validation after step 4 is left out of the time.
    [(after, validation)] = clock.validations
    assert after == 4
    window = clock.step_end[6] - clock.step_end[4]
    assert rates[2] > EVERY * BATCH / window
    assert rates[2] == pytest.approx(EVERY * BATCH / (window - validation), rel=0.1)
