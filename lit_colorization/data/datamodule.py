"""The Lightning DataModule that serves uint8 RGB crops for every data source.

Datasets stay map-style. The training sampler splits each epoch between DDP ranks itself (see
`sampling.SeededShuffleSampler`) so that a run resumed inside an epoch gets exactly the batches it had not
trained on yet; validation gets Lightning's `DistributedSampler`. Crops come from (seed, epoch, index) (see
`crops.sample_rng`), so they differ per rank and per epoch and repeat exactly on a rerun.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Subset

from lit_colorization.data.ahead import PreparedAhead
from lit_colorization.data.collate import SkipUnreadableCollate
from lit_colorization.data.crops import resize_rule
from lit_colorization.data.data_config import DataConfig, validate_data_config
from lit_colorization.data.embedded import EmbeddedTrainDataset, EmbeddedValDataset, load_embedded_photos
from lit_colorization.data.encoded import DeviceCropper, EncodedCollate, EncodedImageFolderDataset
from lit_colorization.data.folder import ImageFolderDataset
from lit_colorization.data.sampling import EpochAwareDataset, SeededShuffleSampler
from lit_colorization.data.synthetic import SyntheticColorDataset

if TYPE_CHECKING:
    from lightning.pytorch.loops.fit_loop import _FitLoop


def evenly_spaced_indices(length: int, count: int) -> list[int]:
    """`count` indices spread over range(length) (all of them when count >= length)."""
    if count >= length:
        return list(range(length))
    return np.linspace(0, length - 1, count).round().astype(int).tolist()


def build_datasets(cfg: DataConfig) -> tuple[EpochAwareDataset, Dataset, list[str]]:
    """(training set, validation set, class names) for `cfg.source`."""
    resize = resize_rule(cfg)
    if cfg.source == "embedded":
        photos = load_embedded_photos()
        train = EmbeddedTrainDataset(photos, cfg.crop_size, cfg.crops_per_epoch, resize, cfg.seed)
        val = EmbeddedValDataset(photos, cfg.crop_size, cfg.val_crops, resize)
        return train, val, train.classes
    if cfg.source == "synthetic":
        common = {"image_size": cfg.synthetic_size, "crop_size": cfg.crop_size, "seed": cfg.seed}
        train = SyntheticColorDataset(cfg.synthetic_train_images, split="train", resize=resize, **common)
        val = SyntheticColorDataset(cfg.synthetic_val_images, split="val", resize=resize, **common)
        return train, val, train.classes
    if cfg.decode == "gpu":  # workers only read the bytes; the device decodes and crops (data/encoded.py)
        common = {"seed": cfg.seed, "strict": cfg.strict, "index_cache": cfg.index_cache}
        train = EncodedImageFolderDataset(cfg.root, cfg.train_split, train=True, **common)
        val = EncodedImageFolderDataset(cfg.root, cfg.val_split, train=False, **common)
    else:
        common = {
            "crop_size": cfg.crop_size,
            "resize": resize,
            "seed": cfg.seed,
            "strict": cfg.strict,
            "index_cache": cfg.index_cache,
        }
        train = ImageFolderDataset(cfg.root, cfg.train_split, train=True, **common)
        val = ImageFolderDataset(cfg.root, cfg.val_split, train=False, **common)
    if val.classes != train.classes:
        raise ValueError(
            f"class folders differ between {train.split_path} ({len(train.classes)} classes) and "
            f"{val.split_path} ({len(val.classes)} classes); expected the same class sub-folders in both"
        )
    return train, val, train.classes


def leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A DataLoader worker ignores SIGTERM and SIGUSR1. SLURM signals every process of a job step, and the main
    process answers by stopping at the next step boundary (lit_colorization/runtime/preemption.py); a worker killed by
    the signal would make the DataLoader fail the run first. Workers still end with the main process."""
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)


def restored_position(fit_loop: _FitLoop) -> tuple[int, int]:
    """(epoch, its batches already trained on) where a fit continues, from the loops' progress as restored
    from a checkpoint written in ``on_train_batch_end``, ``on_validation_end`` or ``on_train_epoch_end``
    (all zero for a fresh fit).

    Read from the loops, not from the loader: the loader runs ahead of training (Lightning fetches one batch
    early, and workers prefetch more), so only the loops know which batches were consumed. Only the
    ``processed``/``completed`` epoch counters are used: after a resume from an epoch's last batch Lightning
    leaves ``ready``/``started`` one epoch behind.
    """
    epochs = fit_loop.epoch_progress.current
    batches = fit_loop.epoch_loop.batch_progress
    if epochs.processed > epochs.completed:  # written in on_train_epoch_end: that epoch is over
        return epochs.processed, 0
    if batches.is_last_batch:  # written after an epoch's last batch: the fit goes on with the next epoch
        return epochs.processed + 1, 0
    return epochs.processed, batches.current.processed


class ColorizationDataModule(LightningDataModule):
    """Batches `{"rgb": uint8 (B, 3, S, S), "label": int64 (B,), "skipped": int64 scalar}`.

    B is `batch_size`, the batch of each process: pretraining splits its global `data.batch_size` over the processes
    (lit_colorization/runtime/scaling.py); None keeps `data.batch_size` per process (linear probes, priors).
    """

    def __init__(self, config: DataConfig, batch_size: int | None = None) -> None:
        super().__init__()
        validate_data_config(config)
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size per process must be a positive integer; got {batch_size!r}")
        self.config = config
        self.batch_size = config.batch_size if batch_size is None else batch_size
        self._train: EpochAwareDataset | None = None
        self._val: Dataset | None = None
        self._classes: list[str] | None = None
        self._prepare: tuple[Callable[..., Any], torch.device] | None = None

    def prepare_training_batches_ahead(self, prepare: Callable[..., Any], device: torch.device) -> None:
        """Training batches of JPEG bytes go through ``prepare(batch, device)`` (decode, crop and targets on
        ``device``) a batch ahead of the loop, in a thread (data/ahead.py), when ``data.decode_ahead`` says so
        (null: on CUDA)."""
        cfg = self.config
        wanted = cfg.decode_ahead if cfg.decode_ahead is not None else torch.device(device).type == "cuda"
        # Shards are not wrapped: their loader's own state is how Lightning resumes them inside an epoch.
        self._prepare = (
            (prepare, torch.device(device))
            if wanted and cfg.decode == "gpu" and cfg.source != "shards"
            else None
        )

    def setup(self, stage: str | None = None) -> None:
        if self._classes is not None:
            return
        if self.config.source == "shards":
            # The streaming datasets are made by each loader call: they take their share of the data from the
            # process group as it is then (the prior's pass runs before DDP starts).
            from lit_colorization.data.shards import check_split

            cfg = self.config
            self._shard_splits = {
                split: check_split(cfg.root, split) for split in (cfg.train_split, cfg.val_split)
            }
            self._classes = []  # shards keep each image's label, not the class names
            return
        train, val, classes = build_datasets(self.config)
        if self.config.max_val_images is not None:
            val = Subset(val, evenly_spaced_indices(len(val), self.config.max_val_images))
        self._train, self._val, self._classes = train, val, classes

    @property
    def classes(self) -> list[str]:
        if self._classes is None:
            raise RuntimeError("ColorizationDataModule.classes is available after setup()")
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def set_epoch(self, epoch: int) -> None:
        """Choose the training crops of `epoch`; Lightning does this through the sampler in `fit`."""
        self._require_setup()
        self._train.set_epoch(epoch)

    def train_dataloader(self) -> DataLoader:
        """Under a Trainer: this rank's share, starting where a fit restored from a checkpoint left off."""
        self._require_setup()
        if (
            self.config.source == "shards"
        ):  # restored by Lightning through the loader's state (data/shards.py)
            return self._shard_loader(self.config.train_split, train=True)
        if self.trainer is None:
            return self._loader(self._train, SeededShuffleSampler(self._train, self.config.seed), train=True)
        sampler = SeededShuffleSampler(
            self._train, self.config.seed, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank
        )
        # A resumed fit builds its loader (and starts prefetching) before Lightning's first set_epoch
        # call: start from the restored epoch, after the batches the checkpointed run had trained on.
        epoch, batches_done = restored_position(self.trainer.fit_loop)
        sampler.set_epoch(epoch)
        sampler.resume_at(epoch, batches_done * self.batch_size)
        loader = self._loader(self._train, sampler=sampler, train=True)
        if self._prepare is None:
            return loader
        prepare, device = self._prepare
        return PreparedAhead(loader, functools.partial(prepare, device=device), device)

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        if self.config.source == "shards":
            return self._shard_loader(self.config.val_split, train=False)
        return self._loader(self._val, sampler=None, train=False)

    def _trained_batches(self) -> int | None:
        """Batches of the current epoch the fit loop has trained on; None outside a fit."""
        if self.trainer is None:
            return None
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def _shard_loader(self, split: str, train: bool) -> DataLoader:
        from lit_colorization.data.shards import ShardImages, shard_loader

        cfg = self.config
        location = self._shard_splits[split]
        dataset = ShardImages(
            location, train, cfg.seed, cfg.decode, cfg.crop_size, resize_rule(cfg), cfg.strict
        )
        loader = shard_loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=cfg.num_workers,
            collate_fn=self._collate(),
            worker_init_fn=leave_stop_signals_to_the_main_process if cfg.num_workers > 0 else None,
            pin_memory=cfg.pin_memory and torch.cuda.is_available(),
            trained_batches=self._trained_batches if train else lambda: None,
        )
        if len(loader) == 0:
            # LitData hands out whole batches: a process left without one would stall the others (or Lightning
            # refuses the loader).
            processes = (
                f" for each of {self.trainer.world_size} processes" if self.trainer is not None else ""
            )
            raise ValueError(
                f"{location}: too few {'training' if train else 'validation'} images for one whole batch of "
                f"{self.batch_size}{processes}; lower data.batch_size or add images"
            )
        return loader

    def _collate(self):
        cfg = self.config
        return EncodedCollate() if cfg.decode == "gpu" else SkipUnreadableCollate(cfg.crop_size)

    def bank_dataloader(self, count: int, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Labelled training crops for a feature bank: ``count`` samples spread evenly over the training set,
        every ``world_size``-th of them from ``rank`` on, read in order as validation reads its own."""
        self._require_setup()
        indices = evenly_spaced_indices(len(self._train), count)[rank::world_size]
        # Read once per validation by a callback that Lightning does not tear down: persistent workers would
        # outlive the fit, and their parent would wait for them at exit while they ignore SIGTERM.
        return self._loader(Subset(self._train, indices), sampler=None, train=False, persistent=False)

    def _loader(
        self, dataset: Dataset, sampler: SeededShuffleSampler | None, train: bool, persistent: bool = True
    ) -> DataLoader:
        cfg = self.config
        if train and sampler.num_samples < cfg.batch_size:
            # Else the loader yields nothing: the prior pass would find "no coloured pixels", training no step.
            where = getattr(dataset, "split_path", f"data.source={cfg.source}")
            devices = f" shared by {sampler.num_replicas} devices" if sampler.num_replicas > 1 else ""
            raise ValueError(
                f"{where}: {len(dataset)} training images{devices} but data.batch_size={cfg.batch_size}, and "
                "training drops an incomplete batch (drop_last): no training batch; lower data.batch_size or "
                "add images"
            )
        workers = cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=workers,
            collate_fn=self._collate(),
            worker_init_fn=leave_stop_signals_to_the_main_process if workers > 0 else None,
            # Pinning needs a CUDA device; on CPU-only runs it would only warn.
            pin_memory=cfg.pin_memory and torch.cuda.is_available(),
            persistent_workers=persistent and cfg.persistent_workers and workers > 0,
            # Training steps see full batches only (a lone last sample would break BatchNorm).
            drop_last=train,
        )

    def _require_setup(self) -> None:
        if self._classes is None:
            raise RuntimeError("call ColorizationDataModule.setup() before asking for data loaders")


def training_rgb_batches(
    datamodule: ColorizationDataModule, device: torch.device | str
) -> tuple[Iterator[torch.Tensor], int]:
    """(uint8 RGB crops of the training split on ``device``, one batch at a time; the number of batches), as
    training sees them: batches of JPEG bytes (``data.decode=gpu``) are decoded and cropped on the device."""
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    data = datamodule.config
    if data.decode == "gpu":
        cropper = DeviceCropper(data.crop_size, resize_rule(data), data.strict)
        return (cropper(batch, device)["rgb"] for batch in loader), len(loader)
    return (batch["rgb"].to(device, non_blocking=True) for batch in loader), len(loader)


def build_datamodule(cfg: DataConfig, batch_size: int | None = None) -> ColorizationDataModule:
    return ColorizationDataModule(cfg, batch_size)
