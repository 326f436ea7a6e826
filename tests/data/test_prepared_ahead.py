"""Batches prepared a step ahead (data/ahead.py): the same batches, crops, targets and losses as the plain loop,
in the same order, prepared while the consumer holds the previous one; errors and early stops handled."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch.utils.data import DataLoader

from lit_colorization.color import ab_bins
from lit_colorization.config.loading import load_config
from lit_colorization.config.schema import PretrainConfig
from lit_colorization.data.ahead import PreparedAhead
from lit_colorization.data.datamodule import ColorizationDataModule
from lit_colorization.data.encoded import EncodedCollate, EncodedImageFolderDataset
from lit_colorization.data.sampling import SeededShuffleSampler
from lit_colorization.pretrain.module import ColorizationModule
from tests.helpers import bare_trainer

CROP = 32
BATCH = 3


def write_jpegs(root: Path, count: int = 12) -> Path:
    """JPEGs of several sizes in two class folders: noise, so that a crop one pixel off is far from the right one."""
    rng = np.random.default_rng(0)
    for index in range(count):
        for split in ("train", "val"):
            folder = root / split / f"class_{index % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (40 + 3 * index, 70 - 2 * index, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:02d}.jpg", quality=90)
    return root


def tiny_config(root: Path, *extra: str):
    return load_config(
        PretrainConfig,
        overrides=[
            "model.kwargs.width=0.125",
            f"data.crop_size={CROP}",
            "data.source=folder",
            f"data.root={root}",
            "data.decode=gpu",
            "data.resize=48",
            "data.resize_mode=squash",
            f"data.batch_size={BATCH}",
            "data.num_workers=0",
            "data.index_cache=null",
            "num_val_images_logged=0",
            *extra,
        ],
    )


def tiny_module(config) -> ColorizationModule:
    torch.manual_seed(0)
    bins = ab_bins()
    return ColorizationModule(config, bins, torch.full((bins.shape[0],), 1.0 / bins.shape[0]))


def encoded_loader(root: Path) -> DataLoader:
    dataset = EncodedImageFolderDataset(root, "train", seed=3)
    sampler = SeededShuffleSampler(dataset, seed=3)
    sampler.set_epoch(1)
    return DataLoader(dataset, batch_size=BATCH, sampler=sampler, collate_fn=EncodedCollate(), drop_last=True)


def test_prepared_ahead_gives_the_plain_loops_batches_crops_targets_and_losses(tmp_path: Path) -> None:
    root = write_jpegs(tmp_path)
    module = tiny_module(tiny_config(root)).eval()
    device = torch.device("cpu")

    def prepare(batch):
        return module.prepare_batch(batch, device)

    plain = [prepare(batch) for batch in encoded_loader(root)]
    ahead = list(PreparedAhead(encoded_loader(root), prepare, device))
    assert len(plain) == len(ahead) == 12 // BATCH
    with torch.no_grad():
        for expected, got in zip(plain, ahead, strict=True):
            assert torch.equal(got["rgb"], expected["rgb"]) and got["rgb"].shape == (BATCH, 3, CROP, CROP)
            assert torch.equal(got["label"], expected["label"])
            for field in ("lightness", "ab", "bin_indices", "bin_weights", "pixel_weights", "colored"):
                assert torch.equal(getattr(got["targets"], field), getattr(expected["targets"], field)), field
            assert torch.equal(module.forward_loss(got["targets"]), module.forward_loss(expected["targets"]))
    # Different crops from batch to batch: the comparison above is not of one repeated batch.
    assert not torch.equal(plain[0]["rgb"], plain[1]["rgb"])


def test_batches_keep_their_order_and_the_next_is_prepared_while_the_current_is_used() -> None:
    prepared: list[int] = []
    rng = np.random.default_rng(0)

    def prepare(batch: int) -> int:
        time.sleep(float(rng.uniform(0, 0.01)))  # uneven preparation times
        prepared.append(batch)
        return batch * 10

    received = []
    for value in PreparedAhead(range(20), prepare, "cpu", depth=1):
        # While the consumer holds batch n, the thread prepares batch n + 1, and at most one more: one batch
        # waits in the queue (depth 1), one in the thread's hand.
        index = value // 10
        deadline = time.monotonic() + 5
        while len(prepared) < min(index + 2, 20) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert min(index + 2, 20) <= len(prepared) <= min(index + 3, 20)
        received.append(value)
    assert received == [10 * index for index in range(20)]
    assert prepared == list(range(20))


def test_an_error_in_preparation_is_raised_at_its_batch_and_the_thread_ends() -> None:
    def prepare(batch: int) -> int:
        if batch == 2:
            raise ValueError("batch 2 cannot be decoded")
        return batch

    received = []
    with pytest.raises(ValueError, match="batch 2 cannot be decoded"):
        for value in PreparedAhead(range(5), prepare, "cpu"):
            received.append(value)
    assert received == [0, 1]
    assert not [thread for thread in threading.enumerate() if thread.name == "prepared-ahead"]


def test_a_consumer_that_stops_early_ends_the_thread_and_nothing_starts_before_the_first_batch() -> None:
    calls: list[int] = []
    ahead = PreparedAhead(range(100), lambda batch: calls.append(batch) or batch, "cpu")
    iterator = iter(ahead)  # Lightning calls iter() to check a loader: no thread, no batch yet
    time.sleep(0.05)
    assert calls == []
    assert next(iterator) == 0
    iterator.close()  # what dropping the iterator does (the fit stopped at max_steps)
    assert not [thread for thread in threading.enumerate() if thread.name == "prepared-ahead"]
    assert len(calls) <= 3
    assert len(ahead) == 100


class LossRecorder(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.loaders: list[type] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.loaders.append(type(trainer.train_dataloader))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def fit_losses(root: Path, decode_ahead: str, *extra: str) -> tuple[list[float], LossRecorder]:
    config = tiny_config(root, f"data.decode_ahead={decode_ahead}", *extra)
    module = tiny_module(config)
    datamodule = ColorizationDataModule(config.data)
    recorder = LossRecorder()
    # Two epochs of 4 batches: the sampler's set_epoch reaches the loader through the wrapper.
    bare_trainer(max_steps=8, callbacks=[recorder], limit_val_batches=0).fit(module, datamodule=datamodule)
    return recorder.losses, recorder


def test_a_fit_with_batches_prepared_ahead_has_the_plain_fits_losses_step_by_step(tmp_path: Path) -> None:
    root = write_jpegs(tmp_path)
    plain, plain_run = fit_losses(root, "false")
    ahead, ahead_run = fit_losses(root, "true")
    assert plain_run.loaders == [DataLoader] and ahead_run.loaders == [PreparedAhead]
    assert len(plain) == len(ahead) == 8
    assert ahead == plain
    assert len(set(plain)) == 8  # every step a different batch (and two epochs with different crops)


def test_the_loaders_persistent_workers_end_with_the_fit(tmp_path: Path) -> None:
    # Workers ignore SIGTERM (preemption is the main process's): one left alive would hang the process's exit.
    root = write_jpegs(tmp_path)
    losses, recorder = fit_losses(root, "true", "data.num_workers=1", "data.persistent_workers=true")
    assert recorder.loaders == [PreparedAhead] and len(losses) == 8
    assert multiprocessing.active_children() == []
    assert not [thread for thread in threading.enumerate() if thread.name == "prepared-ahead"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (nvJPEG, a side stream)")
def test_on_cuda_batches_prepared_on_a_side_stream_equal_the_plain_loops(tmp_path: Path) -> None:
    # The hand-over by event and record_stream: a step's reads of batch n must see it whole while the side
    # stream already decodes batch n + 1 into memory of its own.
    root = write_jpegs(tmp_path)
    device = torch.device("cuda")
    module = tiny_module(tiny_config(root)).to(device).eval()

    def prepare(batch):
        return module.prepare_batch(batch, device)

    plain = [prepare(batch) for batch in encoded_loader(root)]
    with torch.no_grad():
        for expected, got in zip(plain, PreparedAhead(encoded_loader(root), prepare, device), strict=True):
            loss = module.forward_loss(got["targets"])  # on the training stream, after the hand-over
            assert torch.equal(got["rgb"], expected["rgb"])
            assert torch.equal(got["targets"].bin_indices, expected["targets"].bin_indices)
            assert torch.equal(loss, module.forward_loss(expected["targets"]))
            assert torch.isfinite(loss)
