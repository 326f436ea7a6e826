"""How the training epoch reaches the datasets inside DataLoader worker processes.

Lightning tells only samplers about a new epoch (it calls `sampler.set_epoch` before each epoch, and
under DDP its `DistributedSamplerWrapper` forwards that call to the sampler it wraps).
`SeededShuffleSampler` passes the epoch on to its dataset, which keeps it in a `SharedEpoch`: a
shared-memory tensor, so that workers forked or spawned earlier (persistent workers) see the update.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Sampler

# Keeps the shuffling stream apart from the crop stream of `crops.sample_rng`.
SHUFFLE_STREAM = 0x5F


class SharedEpoch:
    """An integer visible to every DataLoader worker, including ones started before it changed."""

    def __init__(self, epoch: int = 0) -> None:
        self._value = torch.tensor(epoch, dtype=torch.int64).share_memory_()

    @property
    def value(self) -> int:
        return int(self._value.item())

    def set(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._value.fill_(epoch)


class EpochAwareDataset(Protocol):
    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


class SeededShuffleSampler(Sampler[int]):
    """A permutation of the dataset drawn from (seed, epoch); `set_epoch` also sets the dataset's epoch."""

    def __init__(self, dataset: EpochAwareDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([SHUFFLE_STREAM, self.seed, self.epoch])
        return iter(rng.permutation(len(self.dataset)).tolist())

    def __len__(self) -> int:
        return len(self.dataset)
