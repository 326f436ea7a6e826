"""Hostile files in a folder training set, through the pretraining CLI: skipped, logged and counted, or (strict) an error."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.data import ImageFolderDataset
from lit_colorization.data.sampling import SeededShuffleSampler
from tests.data.test_data_images import quadrants, write_hostile_tree
from tests.helpers import tiny_pretrain_overrides

BATCH = 4
STEPS = 4


def write_training_set(root: Path) -> list[str]:
    """train/ (hostile files, plus a palette and an EXIF-rotated image) and val/; returns the unreadable paths."""
    write_hostile_tree(root)
    train = root / "train"
    palette = Image.fromarray(np.arange(40 * 40, dtype=np.uint8).reshape(40, 40) % 3, mode="P")
    palette.putpalette([200, 10, 10, 10, 200, 10, 10, 10, 200] + [0] * (256 * 3 - 9))
    palette.save(train / "j_palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    Image.fromarray(quadrants(36, 48)).save(train / "k_exif_rotated.jpg", exif=exif)
    (root / "val").mkdir()
    shutil.copy(train / "a_plain.jpg", root / "val" / "a_plain.jpg")
    shutil.copy(train / "j_palette.png", root / "val" / "j_palette.png")
    names = ("d_truncated.jpg", "e_empty.JPG", "g_text.jpeg", "i_bomb.png")
    return [str(train / name) for name in names]


def unreadable_per_step(root: Path, unreadable: list[str]) -> list[list[str]]:
    """The unreadable files in the batch of each training step, in the seeded order (full batches only)."""
    dataset = ImageFolderDataset(root, "train", crop_size=32)
    per_epoch = len(dataset) // BATCH
    batches = []
    for step in range(STEPS):
        sampler = SeededShuffleSampler(dataset, seed=0)
        sampler.set_epoch(step // per_epoch)
        start = (step % per_epoch) * BATCH
        paths = [dataset.path(index) for index in list(sampler)[start : start + BATCH]]
        batches.append([path for path in paths if path in unreadable])
    return batches


def folder_overrides(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    return [
        *tiny_pretrain_overrides(tmp_path),
        "data.source=folder",
        f"data.root={root}",
        f"data.batch_size={BATCH}",
        f"trainer.max_steps={STEPS}",
        *extra,
    ]


@pytest.mark.parametrize("decode", ["cpu", "gpu"])  # gpu: the device path, with the CPU decoder here
def test_training_on_hostile_files_completes_logs_them_and_counts_them(tmp_path, caplog, decode) -> None:
    root = tmp_path / "data"
    unreadable = write_training_set(root)
    with caplog.at_level(logging.WARNING, logger="lit_colorization.data"):
        pretrain_main(
            folder_overrides(tmp_path, root, "trainer.limit_val_batches=1", f"data.decode={decode}")
        )
    expected = unreadable_per_step(root, unreadable)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert all(path in logged for batch in expected for path in batch)
    rows = []
    for path in sorted((tmp_path / "tiny" / "csv").glob("version_*/metrics.csv")):
        with path.open() as stream:
            rows.extend(row for row in csv.DictReader(stream) if row.get("train/skipped_images"))
    running = [int(float(row["train/skipped_images"])) for row in rows]
    assert running == np.cumsum([len(batch) for batch in expected]).tolist()
    assert running[-1] >= 3  # unreadable files do reach the trained batches


def test_strict_mode_stops_at_the_first_unreadable_file_with_one_line(tmp_path, capsys) -> None:
    root = tmp_path / "data"
    unreadable = write_training_set(root)
    with pytest.raises(SystemExit) as exited:
        pretrain_main(folder_overrides(tmp_path, root, "data.strict=true"))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in err
    # The first unreadable file of the first pass over the data (the prior's, in epoch 0's order).
    dataset = ImageFolderDataset(root, "train", crop_size=32)
    first_bad = next(
        dataset.path(i) for i in SeededShuffleSampler(dataset, seed=0) if dataset.path(i) in unreadable
    )
    assert f"unreadable image {first_bad}:" in error_lines[0]
    assert not (tmp_path / "tiny" / "checkpoints").exists()
