"""Training data that a run resumed inside an epoch continues exactly, for datasets with their own random
augmentation (torchvision transforms drawing from torch's global generator, as the VOC tasks' are).

``SeededItems`` seeds torch's generator from (seed, epoch, index) around each item, so an item's augmentation does
not depend on which worker made it or on what was drawn before; ``ResumableTrainData`` orders each epoch with
``SeededShuffleSampler`` and starts a resumed fit after the batches its checkpoint had trained on, as
``ColorizationDataModule`` does for pretraining and the probes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from lit_colorization.data.crops import sample_rng
from lit_colorization.data.datamodule import leave_stop_signals_to_the_main_process, restored_position
from lit_colorization.data.sampling import SeededShuffleSampler, SharedEpoch

ITEM_STREAM = 0x17  # keeps the items' augmentation numbers apart from the crop and shuffle streams


class SeededItems(Dataset):
    """``dataset[index]`` computed with torch's global generator seeded from (``seed``, epoch, ``index``) and put
    back afterwards; ``set_epoch`` reaches workers started earlier (a ``SharedEpoch``)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self._epoch = SharedEpoch()

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self._epoch.set(epoch)

    def __getitem__(self, index: int) -> Any:
        item_seed = int(sample_rng(self.seed, self._epoch.value, index, ITEM_STREAM).integers(2**63))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            return self.dataset[index]


class ResumableTrainData(LightningDataModule):
    """The training loader of a fit over ``train``: this rank's share of each epoch's seeded permutation, from
    where a checkpoint restored by the fit left off. Batches of ``batch_size``, a partial last one dropped when
    the set holds more than one batch (BatchNorm never sees a batch of one image)."""

    def __init__(
        self,
        train: Dataset,
        seed: int,
        batch_size: int,
        num_workers: int,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        super().__init__()
        self.train = SeededItems(train, seed)
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.collate_fn = collate_fn

    def train_dataloader(self) -> DataLoader:
        world_size, rank = (
            (1, 0) if self.trainer is None else (self.trainer.world_size, self.trainer.global_rank)
        )
        sampler = SeededShuffleSampler(self.train, self.seed, num_replicas=world_size, rank=rank)
        if self.trainer is not None:
            epoch, batches_done = restored_position(self.trainer.fit_loop)
            sampler.set_epoch(epoch)
            sampler.resume_at(epoch, batches_done * self.batch_size)
        return DataLoader(
            self.train,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=len(self.train) > self.batch_size,
            collate_fn=self.collate_fn,
            worker_init_fn=leave_stop_signals_to_the_main_process if self.num_workers > 0 else None,
            # Its own generator: the workers' base seed is drawn without touching torch's global one, which
            # the checkpoint restores for what the steps draw (dropout, proposal sampling).
            generator=torch.Generator().manual_seed(self.seed),
        )


class ResumableTrainAndValData(ResumableTrainData):
    """``ResumableTrainData`` with a validation loader for the evaluations inside the fit."""

    def __init__(self, val_loader: DataLoader, **train: Any) -> None:
        super().__init__(**train)
        self.val_loader = val_loader

    def val_dataloader(self) -> DataLoader:
        return self.val_loader


def resumable_train_data(
    train: Dataset,
    seed: int,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    val_loader: DataLoader | None = None,
) -> ResumableTrainData:
    """The resumable training data of ``train``, with ``val_loader`` for evaluations inside the fit if given."""
    settings = {
        "train": train,
        "seed": seed,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "collate_fn": collate_fn,
    }
    if val_loader is None:
        return ResumableTrainData(**settings)
    return ResumableTrainAndValData(val_loader, **settings)
