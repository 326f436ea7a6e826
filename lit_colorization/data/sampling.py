"""The order of training samples: per epoch, per rank, and resumable in the middle of an epoch.

Lightning tells only samplers about a new epoch (it calls `sampler.set_epoch` before each epoch).
`SeededShuffleSampler` passes the epoch on to its dataset, which keeps it in a `SharedEpoch`: a
shared-memory tensor, so that workers forked or spawned earlier (persistent workers) see the update.

The sampler also splits each epoch's permutation between DDP ranks itself (as `DistributedSampler` does:
padded to a multiple of the world size, then every `num_replicas`-th index). Being a `DistributedSampler`,
Lightning leaves it as it is instead of wrapping it, which is what lets `resume_at` skip the samples a rank
had already trained on when a run stopped inside an epoch: the skip has to come after the split.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch.utils.data.distributed import DistributedSampler

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


def shard(indices: list[int], num_replicas: int, rank: int) -> list[int]:
    """Rank `rank`'s share of `indices`, split as `DistributedSampler(drop_last=False)` splits them."""
    per_rank = math.ceil(len(indices) / num_replicas)
    padding = per_rank * num_replicas - len(indices)
    padded = indices + (indices * math.ceil(padding / max(len(indices), 1)))[:padding]
    return padded[rank::num_replicas]


class SeededShuffleSampler(DistributedSampler):
    """This rank's share of a permutation drawn from (seed, epoch); `set_epoch` also sets the dataset's epoch."""

    def __init__(self, dataset: EpochAwareDataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._resume_epoch = -1
        self._resume_skip = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.dataset.set_epoch(epoch)

    def resume_at(self, epoch: int, consumed: int) -> None:
        """In epoch `epoch` only, leave out the first `consumed` samples of this rank's share (already trained on)."""
        if not 0 <= consumed <= self.num_samples:
            raise ValueError(
                f"cannot resume after {consumed} samples of an epoch of {self.num_samples} per rank: "
                "the training data, data.batch_size or the number of devices changed since the checkpoint"
            )
        self._resume_epoch, self._resume_skip = epoch, consumed

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([SHUFFLE_STREAM, self.seed, self.epoch])
        indices = shard(rng.permutation(len(self.dataset)).tolist(), self.num_replicas, self.rank)
        skip = self._resume_skip if self.epoch == self._resume_epoch else 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        # The whole share even when resuming: Lightning counts an epoch's batches from before the stop.
        return self.num_samples
