"""``make demo``: its pieces on tiny inputs (seconds), and end to end (slow: a few minutes on 2 cores).

The probes of ``probe_report`` train two linear probes per layer for several minutes on 2 cores, so only the
slow end-to-end test runs them.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.color import rgb2lab

from lit_colorization.data import embedded
from lit_colorization.store.loggers import csv_logger
from tests.evaluation.test_eval_color_cli import write_untrained_checkpoint
from tests.helpers import run_module
from transfer.demo import REPORT_WIDTH, photo_report, validation_history


@pytest.mark.slow
def test_demo_writes_the_whole_report(tmp_path):
    result = run_module(
        "transfer.cli.demo",
        f"runs_dir={tmp_path}",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = tmp_path / "demo" / "report"
    for name in (
        "photos.png",
        "validation.png",
        "metrics.json",
        "transfer.jsonl",
        "comparison.txt",
        "linear_probe.png",
        "online_eval.png",
    ):
        assert (report / name).is_file(), name
    history = json.loads((report / "metrics.json").read_text())
    assert "0" in history and history["0"]["val/loss"] > 0  # the untrained network is scored first
    rows = [json.loads(line) for line in (report / "transfer.jsonl").read_text().splitlines()]
    assert {row["pretrain_run"] for row in rows} == {"demo", "random-eccv16"}
    assert "demo report:" in result.stdout
    assert "online evaluation while pretraining" in result.stdout and "knn/conv1" in result.stdout
    assert all(row["val_images"] == 80 for row in rows)  # the probe preset's 10 photos x 8 crops
    assert "95% Wilson interval" in (report / "comparison.txt").read_text()


def write_csv_log(run_dir: Path, rows: list[tuple[int, dict[str, float]]], mtime: float) -> None:
    """One version of a run's CSV logs, as the pretraining logger writes them, dated ``mtime``."""
    logger = csv_logger(run_dir)
    for step, metrics in rows:
        logger.log_metrics(metrics, step=step)
    logger.save()
    os.utime(Path(logger.log_dir) / "metrics.csv", (mtime, mtime))


def test_validation_history_merges_the_logs_of_a_resumed_run_by_step(tmp_path):
    # version_0: the untrained scores at step 0, a training row, a validation at step 10 logged over two rows.
    write_csv_log(
        tmp_path,
        [
            (0, {"val/loss": 5.5, "val/auc": 0.25}),
            (4, {"train/loss": 5.0}),
            (10, {"val/loss": 4.5}),
            (10, {"val/auc": 0.5}),
        ],
        mtime=1_000_000,
    )
    # version_1, written later by the resumed run: step 10 again (its values win) and step 20.
    write_csv_log(tmp_path, [(10, {"val/loss": 4.25}), (20, {"val/loss": 4.0, "train/loss": 3.5})], 2_000_000)
    assert validation_history(tmp_path) == {
        0: {"val/loss": 5.5, "val/auc": 0.25},
        10: {"val/loss": 4.25, "val/auc": 0.5},
        20: {"val/loss": 4.0},
    }
    assert validation_history(tmp_path / "never-logged") == {}


def test_photo_report_shows_gray_colorized_and_original_and_keeps_the_lightness(tmp_path, monkeypatch):
    # Two small embedded photos keep this to seconds; the demo itself colorizes all of them.
    photos = tuple(entry for entry in embedded.EMBEDDED_PHOTOS if entry[0] in ("chelsea", "coffee"))
    monkeypatch.setattr(embedded, "EMBEDDED_PHOTOS", photos)
    checkpoint = write_untrained_checkpoint(tmp_path / "last.ckpt")
    report = photo_report(checkpoint, tmp_path / "report", temperature=0.38)

    originals = embedded.load_embedded_photos()
    sheet = np.asarray(Image.open(report))
    heights = [round(photo.image.shape[0] * REPORT_WIDTH / photo.image.shape[1]) for photo in originals]
    assert sheet.shape == (sum(heights), 3 * REPORT_WIDTH, 3)
    top = 0
    for photo, height in zip(originals, heights, strict=True):
        row = sheet[top : top + height]
        top += height
        gray, original = row[:, :REPORT_WIDTH], row[:, 2 * REPORT_WIDTH :]
        assert (gray == gray[..., :1]).all()
        thumbnail = np.asarray(Image.fromarray(photo.image).resize((REPORT_WIDTH, height), Image.BICUBIC))
        assert np.array_equal(original, thumbnail)
        colorized = np.asarray(Image.open(tmp_path / "report" / "colorized" / f"{photo.name}.png"))
        assert colorized.shape == photo.image.shape
        # Colorization replaces ab and keeps the photo's own L (up to uint8 rounding and gamut clipping).
        lightness_error = np.abs(rgb2lab(colorized)[..., 0] - rgb2lab(photo.image)[..., 0])
        assert lightness_error.mean() < 1.0
