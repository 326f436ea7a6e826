"""The file index of image folders (data.index_cache): listed once, read back at later starts and by other ranks,
listed again when a folder of the tree changed, and through the pretrain CLI."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.data import file_index
from lit_colorization.data.data_config import DataConfig, validate_data_config
from lit_colorization.data.file_index import index_path, list_split, load_split
from lit_colorization.data.folder import ImageFolderDataset
from tests.helpers import run_module, tiny_pretrain_overrides
from tests.paths import REPO

# Written in this order; listed sorted, labels by sorted class folder.
TREE = ("zebra/b.jpg", "ant/nested/x.png", "ant/a.jpg", "moth/one.png", "moth/deep/er/two.jpg")
EXPECTED_PATHS = [b"ant/a.jpg", b"ant/nested/x.png", b"moth/deep/er/two.jpg", b"moth/one.png", b"zebra/b.jpg"]
EXPECTED_LABELS = [0, 0, 1, 1, 2]
LONG_AGO_NS = 1_000_000_000 * 10**9  # 2001: folders older than any change a test makes


def save_image(path: Path, colour: tuple[int, int, int] = (200, 40, 30), size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


def backdate_folders(split: Path) -> None:
    """Set every folder's modification time far back, so that a change a test makes a moment after the listing
    gets another time whatever the filesystem's clock granularity."""
    for folder in [split, *(path for path in split.rglob("*") if path.is_dir())]:
        os.utime(folder, ns=(LONG_AGO_NS, LONG_AGO_NS))


def make_split(root: Path, files=TREE) -> str:
    for index, relative in enumerate(files):
        save_image(root / "train" / relative, (30 * index, 100, 200))
    backdate_folders(root / "train")
    return str(root / "train")


def forbid_listing(monkeypatch) -> None:
    def refuse(split_path):
        raise AssertionError(f"{split_path} was listed again")

    monkeypatch.setattr(file_index, "list_split", refuse)


def test_first_start_lists_and_keeps_the_index_later_starts_read_it(tmp_path, monkeypatch, caplog) -> None:
    split = make_split(tmp_path / "data")
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO):
        first = load_split(split, str(cache), rank=0)
    assert first.paths.tolist() == EXPECTED_PATHS and first.labels.tolist() == EXPECTED_LABELS
    assert first.classes == ["ant", "moth", "zebra"]
    (stored,) = cache.glob("*.npz")
    assert stored == index_path(cache, split) and stored.name.startswith("data-train-")
    assert "listed 5 images in" in caplog.text and str(stored) in caplog.text

    forbid_listing(monkeypatch)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = load_split(split, str(cache), rank=0)
    assert "5 images from the file index" in caplog.text
    assert again.paths.tolist() == EXPECTED_PATHS and again.labels.dtype == np.int64
    assert again.labels.tolist() == EXPECTED_LABELS and again.classes == first.classes
    # The dataset serves the same files through the index.
    dataset = ImageFolderDataset(tmp_path / "data", "train", crop_size=16, index_cache=str(cache))
    assert [dataset.path(i) for i in range(len(dataset))] == [
        os.path.join(split, path.decode()) for path in EXPECTED_PATHS
    ]


@pytest.mark.parametrize(
    ("change", "changed_folder", "expected_count"),
    [
        (lambda split: save_image(split / "moth" / "three.jpg"), "moth", 6),  # a file added to a class folder
        (lambda split: (split / "ant" / "a.jpg").unlink(), "ant", 4),  # a file removed
        (lambda split: save_image(split / "moth/deep/er/y.jpg"), "moth/deep/er", 6),  # added deep down
        (lambda split: save_image(split / "bee" / "b.jpg"), ".", 6),  # a new class folder
        (lambda split: (split / "ant/nested/x.png").rename(split / "ant/nested/w.png"), "ant/nested", 5),
    ],
)
def test_a_changed_tree_is_listed_again_naming_the_folder(
    tmp_path, caplog, change, changed_folder, expected_count
) -> None:
    split = make_split(tmp_path / "data")
    cache = str(tmp_path / "cache")
    load_split(split, cache, rank=0)
    change(Path(split))
    with caplog.at_level(logging.INFO):
        listing = load_split(split, cache, rank=0)
    changed = os.path.normpath(os.path.join(split, changed_folder))
    assert f"{changed} changed since it was listed; listing {split} again" in caplog.text
    assert listing.paths.tolist() == list_split(split)[0].paths.tolist() and len(listing) == expected_count
    # ... and the new index holds from then on.
    assert file_index.read_index(index_path(Path(cache), split), split)[0] is not None


def test_a_removed_folder_is_a_change(tmp_path, caplog) -> None:
    split = make_split(tmp_path / "data")
    cache = str(tmp_path / "cache")
    load_split(split, cache, rank=0)
    for path in (Path(split) / "moth" / "deep" / "er").iterdir():
        path.unlink()
    (Path(split) / "moth" / "deep" / "er").rmdir()
    os.utime(Path(split) / "moth" / "deep", ns=(LONG_AGO_NS, LONG_AGO_NS))  # only the gone folder tells
    with caplog.at_level(logging.INFO):
        listing = load_split(split, cache, rank=0)
    assert f"{os.path.join(split, 'moth/deep/er')} changed since it was listed" in caplog.text
    assert b"moth/deep/er/two.jpg" not in listing.paths.tolist() and len(listing) == 4


def test_a_damaged_index_is_rebuilt_with_a_line_naming_it(tmp_path, caplog) -> None:
    split = make_split(tmp_path / "data")
    cache = tmp_path / "cache"
    load_split(split, str(cache), rank=0)
    stored = index_path(cache, split)
    stored.write_bytes(stored.read_bytes()[:100])
    with caplog.at_level(logging.INFO):
        listing = load_split(split, str(cache), rank=0)
    (line,) = [record.getMessage() for record in caplog.records if "unreadable" in record.getMessage()]
    assert line.startswith(f"file index {stored}: unreadable (") and "\n" not in line
    assert listing.paths.tolist() == EXPECTED_PATHS
    assert file_index.read_index(stored, split)[0] is not None  # written again, whole


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"mtimes": np.zeros(0, dtype=np.int64)}, "as many mtimes as folders"),
        ({"labels": np.zeros(1, dtype=np.int32)}, "as many labels as paths"),
        ({"labels": np.full(len(EXPECTED_PATHS), 7, dtype=np.int32)}, "labels outside 0..2"),
        ({"format": np.array([1, 2])}, "format and split must be single values"),
        ({"paths": np.array([1.5] * len(EXPECTED_PATHS))}, "paths has dtype float64"),
    ],
)
def test_an_index_whose_arrays_disagree_is_listed_again_naming_it(tmp_path, caplog, edit, expected) -> None:
    split = make_split(tmp_path / "data")
    cache = tmp_path / "cache"
    load_split(split, str(cache), rank=0)
    stored = index_path(cache, split)
    with np.load(stored) as arrays:
        contents = {name: arrays[name] for name in arrays.files}
    np.savez(stored.with_suffix(""), **{**contents, **edit})  # as another version or a hand edit might
    with caplog.at_level(logging.INFO):
        listing = load_split(split, str(cache), rank=0)
    (line,) = [record.getMessage() for record in caplog.records if "inconsistent" in record.getMessage()]
    assert line.startswith(f"file index {stored}: inconsistent (") and expected in line
    assert listing.paths.tolist() == EXPECTED_PATHS
    assert file_index.read_index(stored, split)[0] is not None  # written again, whole


def test_other_ranks_wait_for_rank_zeros_index_and_never_list(tmp_path, monkeypatch) -> None:
    split = make_split(tmp_path / "data")
    cache = str(tmp_path / "cache")
    load_split(split, cache, rank=0)
    # The stored index is stale now: rank 1 must wait for a new one.
    save_image(Path(split) / "zebra" / "c.jpg")
    monkeypatch.setattr(file_index, "POLL_SECONDS", 0.05)
    real_list_split = file_index.list_split
    listed_by = []

    def list_on_this_thread(split_path):
        listed_by.append(threading.current_thread().name)
        return real_list_split(split_path)

    monkeypatch.setattr(file_index, "list_split", list_on_this_thread)
    rank_zero = threading.Timer(0.3, load_split, args=(split, cache), kwargs={"rank": 0})
    rank_zero.name = "rank0"
    started = time.monotonic()
    rank_zero.start()
    listing = load_split(split, cache, rank=1, wait_seconds=30)
    rank_zero.join()
    assert listed_by == ["rank0"] and time.monotonic() - started >= 0.3
    assert len(listing) == 6 and listing.paths.tolist()[-1] == b"zebra/c.jpg"


def test_a_rank_waiting_in_vain_names_the_file_and_the_key(tmp_path, monkeypatch) -> None:
    split = make_split(tmp_path / "data")
    monkeypatch.setattr(file_index, "POLL_SECONDS", 0.01)
    with pytest.raises(ValueError, match=r"rank 3 waited 0 s for rank 0 .*set data.index_cache") as raised:
        load_split(split, str(tmp_path / "cache"), rank=3, wait_seconds=0.05)
    assert str(index_path(tmp_path / "cache", split)) in str(raised.value) and "\n" not in str(raised.value)


def test_no_cache_lists_every_time_and_an_unwritable_one_warns(tmp_path, caplog) -> None:
    split = make_split(tmp_path / "data")
    assert load_split(split, None, rank=0).paths.tolist() == EXPECTED_PATHS
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with caplog.at_level(logging.WARNING):
        listing = load_split(split, str(blocker / "cache"), rank=0)
    assert listing.paths.tolist() == EXPECTED_PATHS
    assert f"cannot write the file index {blocker / 'cache'}" in caplog.text
    assert "set data.index_cache to a writable folder" in caplog.text


def test_auto_is_the_project_cache_folder(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LIT_COLORIZATION_CACHE", str(tmp_path))
    assert file_index.cache_folder("auto") == tmp_path / "file-index"
    monkeypatch.delenv("LIT_COLORIZATION_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/cache")
    assert file_index.cache_folder("auto") == Path("/x/cache/lit-colorization/file-index")
    assert file_index.cache_folder(None) is None


@pytest.mark.parametrize("value", ["", "FILE"])
def test_bad_index_cache_setting_is_one_line(tmp_path, value) -> None:
    if value == "FILE":
        value = str(tmp_path / "f")
        Path(value).write_text("x")
    with pytest.raises(ValueError, match=r"data.index_cache must be 'auto', a folder or null") as raised:
        validate_data_config(DataConfig(index_cache=value))
    assert "\n" not in str(raised.value)


def test_pretrain_cli_lists_a_folder_once_and_reads_the_index_next_time(tmp_path, caplog) -> None:
    """The first run lists the folder (the CLI's main, in this process); the second, another process started
    as a user starts it, reads the index the first one kept."""
    data = tmp_path / "data"
    for split, count in (("train", 8), ("val", 2)):
        for index in range(count):
            save_image(
                data / split / f"class{index % 2}" / f"{index}.jpg", (30 * index, 200 - 20 * index, 90)
            )
        backdate_folders(data / split)
    cache = tmp_path / "cache"
    overrides = [
        *tiny_pretrain_overrides(tmp_path / "runs", "first"),
        "data.source=folder",
        f"data.root={data}",
        f"data.index_cache={cache}",
        "trainer.max_steps=1",
        "trainer.validate_before_training=false",
        "logger.kind=none",
    ]
    with caplog.at_level(logging.INFO):
        pretrain_main(overrides)
    assert f"{data / 'train'}: listed 8 images in" in caplog.text
    assert f"{data / 'val'}: listed 2 images in" in caplog.text
    assert len(list(cache.glob("*.npz"))) == 2
    second = run_module("lit_colorization.cli.pretrain", *overrides, "run=second")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{data / 'train'}: 8 images from the file index {cache}" in second.stderr
    assert f"{data / 'val'}: 2 images from the file index {cache}" in second.stderr
    assert "listed" not in second.stderr


def test_bench_index_times_both_starts_on_a_generated_tree(tmp_path, monkeypatch, capsys) -> None:
    spec = importlib.util.spec_from_file_location("bench_index", REPO / "benchmarks" / "bench_index.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["bench_index.py", "--files", "500", "--classes", "10", "--dir", str(tmp_path), "--repeats", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    printed = capsys.readouterr().out
    assert "tree: 500 empty files in 10 class folders" in printed
    assert re.search(r"first start \(list \+ write the index\): [\d.]+ s \(listing alone [\d.]+ s\)", printed)
    assert re.search(
        r"cached start: [\d.]+ s \(median of 2; read the index [\d.]+ s, stat 11 folders", printed
    )
    assert "extrapolated to 1,281,167 files (x2562.33;" in printed
    assert list(tmp_path.iterdir()) == []  # the generated tree is removed
