"""Shard folders are data: only the fields and formats make shards writes are read, anything else is refused in
one line naming the file before any sample is decoded; damaged chunks, foreign fields, bad sizes and object
stores without credentials are one line too; shards carry their class names, so online evaluation runs on them.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_colorization.data.data_config import DataConfig
from lit_colorization.data.datamodule import ColorizationDataModule

litdata = pytest.importorskip("litdata", reason="litdata (the shards extra) is not installed")

from lit_colorization.cli.shards import main as shards_main  # noqa: E402
from lit_colorization.data.shards import (  # noqa: E402
    CLASSES_KEY,
    INDEX_FILE,
    ShardImages,
    ShardIndexError,
    own_start_method,
    write_shards,
)

MARKER = "pickle_ran"  # the file the hostile payload creates when unpickled


class CreatesMarker:
    """Pickles as a call creating ``path``: what an attacker's payload could run instead, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def write_image_folder(root: Path, images: int = 8) -> Path:
    """A small ImageNet-style folder: two classes, JPEGs, train/ and val/."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for index in range(images):
            path = root / split / f"class{index % 2}" / f"{index:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(path, quality=90)
    return root


def foreign_sample(index: int, image: object) -> dict:
    return {"index": index, "label": 0, "name": "x.jpg", "image": image}


def optimize_samples(folder: Path, image: object, count: int = 4) -> None:
    """``count`` samples whose image field is ``image``, by LitData's own writer, as a foreign tool would write
    them (made in the writer's worker: a payload passed as an input would run there)."""
    with own_start_method():
        litdata.optimize(
            fn=functools.partial(foreign_sample, image=image),
            inputs=list(range(count)),
            output_dir=str(folder),
            chunk_bytes="64MB",
            num_workers=1,
            reorder_files=False,
            verbose=False,
            start_method="fork",
        )


def write_hostile_shards(base: Path) -> dict[str, Path]:
    """Shard roots (each with train/ and val/) that a reader must refuse, by kind; and ``images``, a folder."""
    images = write_image_folder(base / "images")
    roots = {"images": images, "good": base / "good"}
    write_shards(str(images), str(roots["good"]), workers=1, index_cache=None)
    marker = base / MARKER
    for kind, image in (("pickled", CreatesMarker(marker)), ("foreign_type", "text")):
        roots[kind] = base / kind
        for split in ("train", "val"):
            optimize_samples(roots[kind] / split, image)
    edits = {
        "not_json": lambda index_path: index_path.write_text("{not json"),
        "empty_index": lambda index_path: index_path.write_text(""),
        "outside_chunk": lambda index_path: rewrite(index_path, chunk_name="../../outside.bin"),
        "truncated_chunk": lambda index_path: truncate_chunk(index_path.parent),
    }
    for kind, edit in edits.items():
        roots[kind] = base / kind
        write_shards(str(images), str(roots[kind]), workers=1, index_cache=None)
        for split in ("train", "val"):
            edit(roots[kind] / split / INDEX_FILE)
    return roots


def rewrite(index_path: Path, chunk_name: str) -> None:
    index = json.loads(index_path.read_text())
    index["chunks"][0]["filename"] = chunk_name
    index_path.write_text(json.dumps(index))


def truncate_chunk(split: Path) -> None:
    (chunk,) = split.glob("chunk-*.bin")
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 3])


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    return write_hostile_shards(tmp_path_factory.mktemp("hostile_shards"))


def shard_module(root: Path, **settings) -> ColorizationDataModule:
    return ColorizationDataModule(
        DataConfig(source="shards", root=str(root), crop_size=32, batch_size=2, num_workers=0, **settings)
    )


def test_a_pickle_shard_is_refused_before_any_sample_is_decoded(hostile) -> None:
    index = hostile["pickled"] / "train" / INDEX_FILE
    assert "pickle" in json.loads(index.read_text())["config"]["data_format"]  # what LitData would unpickle
    with pytest.raises(ShardIndexError) as raised:
        shard_module(hostile["pickled"]).setup()
    message = str(raised.value)
    assert message.startswith(f"{index}: data_format") and "pickle" in message and "\n" not in message
    with pytest.raises(ShardIndexError):
        ShardImages(str(hostile["pickled"] / "train"), True, 0, "cpu", 32, None, False)
    marker = hostile["pickled"].parent / MARKER
    assert not marker.exists()
    # The payload is real: LitData's own reader runs it on the first sample.
    litdata.StreamingDataset(str(hostile["pickled"] / "val"))[0]
    assert marker.exists()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("foreign_type", "data_format ['int', 'int', 'str', 'str']"),
        ("not_json", "not a readable JSON shard index (JSONDecodeError"),
        ("empty_index", "not a readable JSON shard index"),
        ("outside_chunk", "chunk file name '../../outside.bin'"),
    ],
)
def test_a_foreign_or_broken_index_is_one_line_naming_it(hostile, kind, expected) -> None:
    with pytest.raises(ShardIndexError) as raised:
        shard_module(hostile[kind]).setup()
    assert str(raised.value).startswith(f"{hostile[kind] / 'train' / INDEX_FILE}: ")
    assert expected in str(raised.value) and "\n" not in str(raised.value)


def test_a_truncated_chunk_is_one_line_naming_the_shards(hostile) -> None:
    dataset = ShardImages(str(hostile["truncated_chunk"] / "train"), False, 0, "cpu", 32, None, False)
    with pytest.raises(ValueError) as raised:
        [dataset[index] for index in range(len(dataset))]
    assert str(raised.value).startswith(f"{hostile['truncated_chunk'] / 'train'}: unreadable shard sample")
    assert "\n" not in str(raised.value)


def test_shards_carry_their_class_names_so_online_evaluation_has_its_classes(hostile) -> None:
    index = json.loads((hostile["good"] / "train" / INDEX_FILE).read_text())
    assert index[CLASSES_KEY] == ["class0", "class1"]
    module = shard_module(hostile["good"])
    module.setup()
    assert module.classes == ["class0", "class1"] and module.num_classes == 2
    bank = module.bank_dataloader(count=4)
    labels = [int(label) for batch in bank for label in batch["label"]]
    assert sorted(labels) == [0, 0, 1, 1]  # evenly spaced over the 8 training images of 2 classes


@pytest.mark.parametrize("size", ["0", "-5", "64XB", "MB"])
def test_chunk_bytes_must_be_a_positive_size(tmp_path, hostile, size, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        shards_main(["--data", str(hostile["images"]), "--out", str(tmp_path / "out"), "--chunk-bytes", size])
    error = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and error.startswith("error: --chunk-bytes") and repr(size) in error
    assert not (tmp_path / "out").exists()


def test_make_shards_checks_every_destination_before_writing(tmp_path, hostile, capsys) -> None:
    (tmp_path / "out" / "val").mkdir(parents=True)
    (tmp_path / "out" / "val" / "old").write_text("kept")
    with pytest.raises(SystemExit):
        shards_main(["--data", str(hostile["images"]), "--out", str(tmp_path / "out"), "--workers", "1"])
    assert f"{tmp_path / 'out' / 'val'} already holds files" in capsys.readouterr().err
    assert not (tmp_path / "out" / "train").exists()


def test_s3_without_credentials_is_one_line_at_once(tmp_path, hostile, monkeypatch, capsys) -> None:
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SystemExit):
        shards_main(["--data", str(hostile["images"]), "--out", "s3://no-such-bucket/shards"])
    assert capsys.readouterr().err.startswith("error: s3://no-such-bucket/shards/train: no AWS credentials")
    with pytest.raises(ValueError, match=r"^s3://no-such-bucket/shards/train: no AWS credentials"):
        shard_module("s3://no-such-bucket/shards").setup()
