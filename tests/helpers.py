"""Helpers the tests share: the real configs with the smallest settings that still exercise every code path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image

from tests.paths import REPO


def tiny_synthetic_data(batch_size: int) -> list[str]:
    """``data.*`` overrides for a few small synthetic images read in the main process."""
    return [
        "data.source=synthetic",
        "data.crop_size=32",
        "data.synthetic_size=48",
        "data.synthetic_train_images=16",
        "data.synthetic_val_images=8",
        f"data.batch_size={batch_size}",
        "data.num_workers=0",
    ]


def tiny_pretrain_overrides(runs_dir: Path, run: str = "tiny") -> list[str]:
    """Overrides of the sample preset for a run of seconds: synthetic data, a narrow network, a few steps."""
    return [
        f"runs_dir={runs_dir}",
        f"run={run}",
        *tiny_synthetic_data(batch_size=4),
        "model.kwargs.width=0.125",
        "trainer.accelerator=cpu",
        "trainer.max_steps=4",
        "trainer.val_check_interval=2",
        "trainer.log_every_n_steps=1",
        "trainer.progress_bar=false",
        "logger.kind=csv",
        "num_val_images_logged=2",
    ]


def bare_trainer(**settings) -> L.Trainer:
    """A CPU Lightning trainer without logger, checkpoints, progress bar or summary; ``settings`` add or override."""
    quiet = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**{**quiet, **settings})


def run_module(
    module: str, *args: str, cwd: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``python -m module args`` in a subprocess, as a user runs it; output captured as text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def saved_step(path: Path) -> int:
    """The ``global_step`` of the checkpoint at ``path``; -1 while there is none (or it is being replaced)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return -1


def sigterm_after_checkpoint(args: list[str], last: Path, module: str, min_step: int = 3) -> tuple[int, str]:
    """Run ``python -m module args``, SIGTERM it once ``last`` holds step ``min_step`` or later; (status, stderr)."""
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            text=True,
        )
        try:
            deadline = time.monotonic() + 240
            while saved_step(last) < min_step:
                if process.poll() is not None:
                    stderr.seek(0)
                    raise AssertionError(f"the run ended before its checkpoint: {stderr.read()[-2000:]}")
                assert time.monotonic() < deadline, "no checkpoint within 240 s"
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=240)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stderr.seek(0)
        return process.returncode, stderr.read()


# matplotlib's default colour cycle ("tab10"): each series of a plot takes the next one.
SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def read_plot(path: Path, width: int, height: int) -> np.ndarray:
    """A plot the code saved, read back: a PNG of ``width`` x ``height`` pixels (figure size x dpi, so the width
    also counts side-by-side panels) with ink on it; its RGB pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (height, width), (path, pixels.shape)
    assert (pixels < 200).any(axis=2).mean() > 0.005, f"{path}: blank"
    return pixels


def series_drawn(pixels: np.ndarray, minimum_pixels: int = 20) -> int:
    """How many of the default colour cycle's first colours appear (each on ``minimum_pixels`` pixels or more),
    in cycle order: the number of series drawn, for plots with one colour per series."""
    count = 0
    for colour in SERIES_COLOURS:
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)
        if (pixels == rgb).all(axis=2).sum() < minimum_pixels:
            break
        count += 1
    return count


def iou_from_saved_predictions(run_dir: Path, num_classes: int) -> list[float | None]:
    """Per-class IoU in percent (None: a class neither present nor predicted) recomputed with numpy from the
    class maps a voc-seg run saved (``test_predictions.npz``): one confusion matrix, void (255) left out."""
    saved = np.load(run_dir / "test_predictions.npz")
    images = sorted(int(name.split("_")[1]) for name in saved.files if name.startswith("truth_"))
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for image in images:
        truth = saved[f"truth_{image}"].astype(np.int64)
        predicted = saved[f"predicted_{image}"].astype(np.int64)
        scored = truth < num_classes
        pairs = truth[scored] * num_classes + predicted[scored]
        confusion += np.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    return [100.0 * np.diag(confusion)[c] / union[c] if union[c] else None for c in range(num_classes)]
