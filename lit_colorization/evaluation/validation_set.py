"""Which images are evaluated: the validation split of a data config, a subset file, and batches of them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_colorization.data import (
    DataConfig,
    EmbeddedValDataset,
    ImageFolderDataset,
    SyntheticColorDataset,
    resize_rule,
)
from lit_colorization.data.datamodule import evenly_spaced_indices
from lit_colorization.data.embedded import load_embedded_photos


@dataclass(frozen=True)
class EvalSet:
    dataset: Dataset  # items: (uint8 3 x S x S, label), or None for an unreadable file
    names: list[str]  # per dataset item: a flat file name stem for the study and the per-image table
    files: list[str]  # per dataset item: the relative file path (folder) or the name
    classes: list[str]
    description: str
    positions: list[int] = field(default_factory=list)  # the items evaluated, in order
    subset: str | None = None  # the file that listed them, if any


def flat_name(relative_path: str) -> str:
    """``n01440764/ILSVRC2012_val_00000293.JPEG`` -> ``n01440764__ILSVRC2012_val_00000293``."""
    return os.path.splitext(relative_path)[0].replace(os.sep, "__").replace("/", "__")


def validation_set(data: DataConfig) -> EvalSet:
    """The validation split ``data`` describes (only that split is read: no training folder is needed)."""
    if data.source == "embedded":
        photos = load_embedded_photos()
        dataset = EmbeddedValDataset(photos, data.crop_size, data.val_crops, resize_rule(data))
        names = [f"{photo.name}_{k}" for photo in photos for k in range(data.val_crops)]
        return EvalSet(dataset, names, names, dataset.classes, "embedded")
    if data.source == "synthetic":
        dataset = SyntheticColorDataset(
            data.synthetic_val_images,
            image_size=data.synthetic_size,
            crop_size=data.crop_size,
            split="val",
            seed=data.seed,
            resize=resize_rule(data),
        )
        names = [f"synthetic_{index:05d}" for index in range(len(dataset))]
        return EvalSet(dataset, names, names, dataset.classes, "synthetic")
    dataset = ImageFolderDataset(
        data.root,
        data.val_split,
        data.crop_size,
        resize_rule(data),
        train=False,
        seed=data.seed,
        strict=data.strict,
        index_cache=data.index_cache,
    )
    files = [os.path.relpath(dataset.path(index), dataset.split_path) for index in range(len(dataset))]
    return EvalSet(
        dataset,
        [flat_name(f) for f in files],
        files,
        dataset.classes,
        str(Path(dataset.split_path).resolve()),
    )


def read_subset(path: str | Path, eval_set: EvalSet) -> list[int]:
    """Dataset positions listed in ``path``: one per line, an index or a file name ('#' starts a comment).

    A name may be the relative path, the file name, its stem, or the flat name used in reports.
    """
    aliases: dict[str, set[int]] = {}
    for position, (name, file) in enumerate(zip(eval_set.names, eval_set.files, strict=True)):
        base = os.path.basename(file)
        for alias in {name, file, base, os.path.splitext(base)[0]}:
            aliases.setdefault(alias, set()).add(position)
    positions: list[int] = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        entry = raw.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.isdigit():
            position = int(entry)
            if position >= len(eval_set.names):
                raise ValueError(
                    f"{path}:{number}: index {position} is out of range: the validation set has "
                    f"{len(eval_set.names)} images (indices 0..{len(eval_set.names) - 1})"
                )
        else:
            matches = aliases.get(entry, set())
            if len(matches) != 1:
                problem = "matches no image" if not matches else f"is ambiguous ({len(matches)} images)"
                raise ValueError(
                    f"{path}:{number}: {entry!r} {problem} of the validation set {eval_set.description}"
                )
            (position,) = matches
        positions.append(position)
    if not positions:
        raise ValueError(f"{path}: lists no images (expected one index or file name per line)")
    return list(dict.fromkeys(positions))


def select_positions(eval_set: EvalSet, subset: str | None, max_images: int | None) -> EvalSet:
    """``eval_set`` limited to the images ``subset`` lists (or all), at most ``max_images`` evenly spaced."""
    positions = read_subset(subset, eval_set) if subset else list(range(len(eval_set.names)))
    if max_images is not None:
        positions = [positions[i] for i in evenly_spaced_indices(len(positions), max_images)]
    return replace(eval_set, positions=positions, subset=subset)


class _Positioned(Dataset):
    """The items at ``positions``, each tagged with its position (so names and labels survive skipped files)."""

    def __init__(self, dataset: Dataset, positions: Sequence[int]) -> None:
        self.dataset = dataset
        self.positions = list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        position = self.positions[index]
        return position, self.dataset[position]


def _collate(items: Sequence[tuple[int, Any]]) -> dict[str, Tensor]:
    kept = [(position, sample) for position, sample in items if sample is not None]
    if not kept:
        return {"rgb": torch.empty(0, 3, 1, 1, dtype=torch.uint8), "skipped": torch.tensor(len(items))}
    return {
        "position": torch.tensor([position for position, _ in kept]),
        "rgb": torch.stack([sample[0] for _, sample in kept]),
        "label": torch.tensor([int(sample[1]) for _, sample in kept]),
        "skipped": torch.tensor(len(items) - len(kept)),
    }


def batches(eval_set: EvalSet, batch_size: int, num_workers: int) -> DataLoader:
    """The selected images in order: dicts of ``position``, uint8 ``rgb``, ``label`` and a ``skipped`` count.

    A batch whose files were all unreadable has only an empty ``rgb`` and ``skipped``.
    """
    return DataLoader(
        _Positioned(eval_set.dataset, eval_set.positions),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
