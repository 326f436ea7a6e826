"""Batching that drops unreadable samples and counts them.

A dataset item is either `(rgb, label)` with rgb a 3 x S x S uint8 tensor, or None for an unreadable file.
A batch is `{"rgb": uint8 (B, 3, S, S), "label": int64 (B,), "skipped": int64 scalar}`; B may be smaller
than the requested batch size (even 0) when files were skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import default_collate

Sample = tuple[torch.Tensor, int]
Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class SkipUnreadableCollate:
    """Collate function for DataLoader; `crop_size` gives an all-skipped batch its (0, 3, S, S) shape."""

    crop_size: int

    def __call__(self, samples: Sequence[Sample | None]) -> Batch:
        kept = [sample for sample in samples if sample is not None]
        skipped = torch.tensor(len(samples) - len(kept), dtype=torch.int64)
        if not kept:
            return {
                "rgb": torch.empty((0, 3, self.crop_size, self.crop_size), dtype=torch.uint8),
                "label": torch.empty((0,), dtype=torch.int64),
                "skipped": skipped,
            }
        # default_collate stacks straight into shared memory inside workers, saving a copy.
        rgb, label = default_collate(kept)
        return {"rgb": rgb, "label": label.to(torch.int64), "skipped": skipped}
