"""LitData shards (data.source=shards): make shards writes a folder's original bytes and labels; training streams
them with the folder's device decode and crops, and a run resumed inside an epoch trains exactly the batches of
the uninterrupted one."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image

from lit_colorization.cli.pretrain import main as pretrain_main
from lit_colorization.data.data_config import DataConfig, validate_data_config
from lit_colorization.data.datamodule import ColorizationDataModule
from lit_colorization.data.encoded import EncodedImageFolderDataset
from lit_colorization.store.checkpoint import read_checkpoint
from tests.helpers import tiny_pretrain_overrides
from tests.paths import REPO

litdata = pytest.importorskip("litdata", reason="litdata (the shards extra) is not installed")

from lit_colorization.cli.shards import main as shards_main  # noqa: E402
from lit_colorization.data.shards import MISSING_LITDATA, ShardImages  # noqa: E402

TRAIN_IMAGES, VAL_IMAGES, BATCH = 16, 4, 4  # 4 steps an epoch


def photo(seed: int, height: int, width: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def make_folder(root: Path) -> None:
    """JPEGs of several sizes in two classes, and one PNG (decoded in the worker, not on the device)."""
    for split, count in (("train", TRAIN_IMAGES), ("val", VAL_IMAGES)):
        for index in range(count):
            path = root / split / f"class{index % 2}" / f"{index:02d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            photo(index + 100 * (split == "val"), 40 + 4 * (index % 3), 48 - 2 * (index % 4)).save(
                path, quality=90
            )
    (root / "train" / "class1" / "01.jpg").unlink()
    photo(1, 44, 44).save(root / "train" / "class1" / "01.png")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, Path]:
    """(the image folder, its shards), written through the make shards command's entry point."""
    base = tmp_path_factory.mktemp("shards")
    make_folder(base / "images")
    shards_main(["--data", str(base / "images"), "--out", str(base / "shards"), "--workers", "1"])
    return base / "images", base / "shards"


def test_shards_hold_the_folders_bytes_labels_and_crop_numbers(shards) -> None:
    images, root = shards
    assert (root / "train" / "index.json").is_file() and (root / "val" / "index.json").is_file()
    folder = EncodedImageFolderDataset(images, "train", train=True, seed=5)
    folder.set_epoch(3)
    streamed = ShardImages(str(root / "train"), True, 5, "gpu", 32, None, False)
    streamed.current_epoch = 3
    seen = []
    for position in range(len(streamed)):
        payload, crop, label, name = streamed[position]
        index = seen.append(name) or folder_index(folder, name)
        expected_payload, expected_crop, expected_label, _ = folder[index]
        assert torch.equal(payload, expected_payload), name  # the original JPEG bytes, or the PNG's pixels
        assert torch.equal(crop, expected_crop) and label == expected_label == int(name[len("class")])
    assert sorted(seen) == sorted(str(Path(folder.path(i)).relative_to(folder.split_path)) for i in range(16))
    png = streamed[[position for position, name in enumerate(seen) if name.endswith(".png")][0]]
    assert png[0].shape == (3, 44, 44)  # pixels, decoded in the worker


def folder_index(folder: EncodedImageFolderDataset, name: str) -> int:
    return [str(Path(folder.path(i)).relative_to(folder.split_path)) for i in range(len(folder))].index(name)


def test_make_shards_refuses_an_existing_output_and_missing_shards_are_named(shards, capsys) -> None:
    images, root = shards
    with pytest.raises(SystemExit) as exited:
        shards_main(["--data", str(images), "--out", str(root)])
    assert exited.value.code == 2
    assert (
        f"error: {root / 'train'} already holds files; write the shards to a new OUT"
        in capsys.readouterr().err
    )
    module = ColorizationDataModule(DataConfig(source="shards", root=str(images)))  # images, not shards
    with pytest.raises(FileNotFoundError, match=r"train: no LitData shards \(index.json missing\)") as raised:
        module.setup()
    assert "make shards DATA=" in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=r"data.max_val_images=8 .* set data.max_val_images=null"):
        validate_data_config(DataConfig(source="shards", root=str(root), max_val_images=8))
    validate_data_config(
        DataConfig(source="shards", root="s3://bucket/imagenet", decode="gpu")
    )  # not checked here


def test_without_litdata_shards_are_a_one_line_error_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "litdata", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "lit_colorization.data.shards")
    with pytest.raises(ValueError) as raised:
        importlib.import_module("lit_colorization.data.shards")
    assert str(raised.value) == MISSING_LITDATA
    assert "pip install 'lit-colorization[shards]'" in MISSING_LITDATA and "\n" not in MISSING_LITDATA


class RecordSteps(Callback):
    """A digest of every training batch (the crops as the device cut them) and its loss, by optimizer step."""

    def __init__(self) -> None:
        self.batches: dict[int, str] = {}
        self.losses: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches[trainer.global_step] = hashlib.sha1(batch["rgb"].cpu().numpy().tobytes()).hexdigest()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step - 1] = float(outputs["loss"])


def train(
    shard_root: Path,
    runs: Path,
    run: str,
    max_steps: int,
    workers: int,
    *extra: str,
    accelerator: str = "cpu",
) -> RecordSteps:
    recorder = RecordSteps()
    overrides = [
        *tiny_pretrain_overrides(runs, run),
        "data.source=shards",
        f"data.root={shard_root}",
        "data.decode=gpu",
        f"data.batch_size={BATCH}",
        f"data.num_workers={workers}",
        f"trainer.max_steps={max_steps}",
        f"trainer.accelerator={accelerator}",
        "trainer.validate_before_training=false",
        "trainer.val_check_interval=3",
        "trainer.limit_val_batches=1",
        "trainer.checkpoint_every_n_steps=100",
        "logger.kind=none",
        "num_val_images_logged=0",
        *extra,
    ]
    pretrain_main(overrides, extra_callbacks=[recorder])
    return recorder


def test_pretrain_trains_from_shards_with_workers_and_checkpoints_the_loaders_position(
    shards, tmp_path
) -> None:
    _, root = shards
    run = train(root, tmp_path, "workers", 2, 2)
    assert sorted(run.batches) == [0, 1] and all(np.isfinite(list(run.losses.values())))
    checkpoint = torch.load(
        tmp_path / "workers" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    (state,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert state["num_samples_yielded"] == 2 * BATCH and state["dataset"]["num_samples_yielded"] == 2 * BATCH
    assert state["dataset"]["num_workers"] == 2 and state["dataset"]["shuffle"] is True
    assert state["dataset"]["input_dir_path"] == str(root / "train")


@pytest.mark.parametrize(
    ("workers", "accelerator"),
    [
        (0, "cpu"),
        # Worker processes in each of three runs: 15-35 s on a busy 2-core machine.
        pytest.param(2, "cpu", marks=pytest.mark.slow),
        pytest.param(2, "gpu", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
    ],
)
def test_a_shards_run_resumed_inside_an_epoch_equals_the_uninterrupted_one(
    shards, tmp_path, workers, accelerator
) -> None:
    """Through the pretrain command: steps 0-4 in one go, against a run stopped after step 2 (inside epoch 0)
    and resumed with resume=auto into epoch 1: the same batches, crops included, at every step, the same
    losses and the same final weights (on CUDA decoded by nvJPEG; the losses and weights there within the
    reach of its non-deterministic reductions)."""
    _, root = shards
    tolerance = 1e-6 if accelerator == "cpu" else 1e-4
    whole = train(root, tmp_path, "whole", 5, workers, accelerator=accelerator)
    assert sorted(whole.batches) == list(range(5)) and len(set(whole.batches.values())) == 5
    batches, losses = {}, {}
    for attempt, (start, stop) in enumerate([(0, 2), (2, 5)]):
        resume = ["resume=auto"] if attempt else []
        leg = train(root, tmp_path, "stopped", stop, workers, *resume, accelerator=accelerator)
        assert sorted(leg.batches) == list(range(start, stop))  # only the steps after the stop
        batches.update(leg.batches)
        losses.update(leg.losses)
        assert read_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.ckpt").global_step == stop
    assert batches == whole.batches
    assert losses.keys() == whole.losses.keys() == set(range(5))
    for step, loss in whole.losses.items():
        assert losses[step] == pytest.approx(loss, abs=tolerance), step
    final = torch.load(
        tmp_path / "stopped" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    reference = torch.load(
        tmp_path / "whole" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    for key, value in reference["state_dict"].items():
        assert torch.allclose(final["state_dict"][key], value, rtol=0, atol=tolerance), key


def shard_module(root: Path, workers: int = 0) -> tuple[ColorizationDataModule, dict[str, int]]:
    """A shards data module whose fit loop has trained on ``trained["batches"]`` batches of the epoch."""
    config = DataConfig(source="shards", root=str(root), decode="gpu", batch_size=BATCH, num_workers=workers)
    module = ColorizationDataModule(config)
    module.setup()
    trained = {"batches": 0}
    module._trained_batches = lambda: trained["batches"]
    return module, trained


def test_a_state_taken_at_the_end_of_an_epoch_starts_the_next_one_afresh(shards) -> None:
    _, root = shards
    module, trained = shard_module(root)
    reference = module.train_dataloader()
    epochs = [[batch["jpeg_paths"] for batch in reference] for _ in range(2)]
    assert epochs[0] != epochs[1] and sorted(sum(epochs[0], [])) == sorted(sum(epochs[1], []))
    loader = module.train_dataloader()
    for _ in loader:  # the whole first epoch trained
        pass
    trained["batches"] = TRAIN_IMAGES // BATCH
    resumed = module.train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    assert [batch["jpeg_paths"] for batch in resumed] == epochs[1]


def test_the_loaders_state_is_the_trained_position_not_the_fetched_one(shards) -> None:
    """Lightning fetches a batch ahead; the state taken after 2 trained batches resumes at the third."""
    _, root = shards
    module, trained = shard_module(root)
    order = [batch["jpeg_paths"] for batch in module.train_dataloader()]  # epoch 1 of a fresh loader
    assert len(order) == TRAIN_IMAGES // BATCH
    loader = module.train_dataloader()
    iterator = iter(loader)
    next(iterator), next(iterator), next(iterator)  # two trained, one fetched ahead
    trained["batches"] = 2
    state = loader.state_dict()
    resumed = module.train_dataloader()
    resumed.load_state_dict(state)
    assert [batch["jpeg_paths"] for batch in resumed] == order[2:]


def test_after_a_restored_epoch_that_lightning_stops_at_its_length_the_next_starts_afresh(shards) -> None:
    """Lightning reads an epoch of known length up to its last batch, not to the end of the iterator."""
    _, root = shards
    module, trained = shard_module(root)
    reference = module.train_dataloader()
    epochs = [[batch["jpeg_paths"] for batch in reference] for _ in range(2)]
    loader = module.train_dataloader()
    iterator = iter(loader)
    next(iterator)
    trained["batches"] = 1
    resumed = module.train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    iterator = iter(resumed)
    assert [next(iterator)["jpeg_paths"] for _ in range(3)] == epochs[0][
        1:
    ]  # and stopped there, as Lightning does
    assert [batch["jpeg_paths"] for batch in resumed] == epochs[1]


def test_probes_and_colour_evaluation_refuse_shards_in_one_line(shards) -> None:
    """A probe needs class names; eval-color reads validation files (--data gives them to a shards run)."""
    from lit_colorization.config.loading import ConfigError
    from transfer.probe.probe_config import PROBE

    _, root = shards
    with pytest.raises(
        ConfigError, match=r"'data.source': expected folder, embedded or synthetic \(a probe needs"
    ):
        PROBE.load(None, ["data.source=shards", f"data.root={root}"])
    from lit_colorization.evaluation.eval_config import EvalColorConfig, validate_eval_config

    config = EvalColorConfig(data=DataConfig(source="shards", root=str(root)))
    with pytest.raises(
        ConfigError, match=r"'data.source': expected an image folder .*pass --data <image folder>"
    ):
        validate_eval_config(config)


@pytest.mark.slow  # two processes started by Lightning's DDP launcher: about 25 s on 2 busy cores
def test_two_ddp_processes_share_each_epoch_of_the_shards_without_overlap(shards, tmp_path) -> None:
    _, root = shards
    record = tmp_path / "record"
    record.mkdir()
    overrides = [
        *tiny_pretrain_overrides(tmp_path / "runs", "ddp"),
        "data.source=shards",
        f"data.root={root}",
        "data.decode=gpu",
        "data.batch_size=4",  # global: 2 per process, so 4 steps make the epoch of 16
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.validate_before_training=false",
        "logger.kind=none",
        "num_val_images_logged=0",
    ]
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "ddp_pretrain.py"), "cli", str(record), *overrides],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [[json.loads(line) for line in (record / f"cli-rank{rank}.jsonl").open()] for rank in (0, 1)]
    assert [step["step"] for step in ranks[0]] == [step["step"] for step in ranks[1]] == [0, 1, 2, 3]
    crops = [crop for rank in ranks for step in rank for crop in step["ids"]]
    assert len(crops) == TRAIN_IMAGES and len(set(crops)) == TRAIN_IMAGES  # every image once, split in two


def test_a_process_without_a_whole_batch_is_a_one_line_error(shards) -> None:
    _, root = shards
    module = ColorizationDataModule(DataConfig(source="shards", root=str(root), batch_size=TRAIN_IMAGES + 1))
    module.setup()
    with pytest.raises(
        ValueError, match=r"train: too few training images for one whole batch of 17; lower"
    ) as raised:
        module.train_dataloader()
    assert "\n" not in str(raised.value)
    assert len(module.val_dataloader()) == 1  # validation keeps its last, incomplete batch
