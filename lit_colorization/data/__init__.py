"""Data: reading, decoding and cropping only. Workers produce uint8 RGB crops; all colour work is on the device.

The names below load on first use, so that importing ``lit_colorization.data.data_config`` (a config schema) does
not import torch: a command's ``--help`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "Batch": "collate",
    "Sample": "collate",
    "SkipUnreadableCollate": "collate",
    "DataConfig": "data_config",
    "validate_data_config": "data_config",
    "resize_rule": "crops",
    "ColorizationDataModule": "datamodule",
    "build_datamodule": "datamodule",
    "EmbeddedTrainDataset": "embedded",
    "EmbeddedValDataset": "embedded",
    "load_embedded_photos": "embedded",
    "ImageFolderDataset": "folder",
    "UnreadableImageError": "images",
    "read_rgb": "images",
    "IMAGE_EXTENSIONS": "listing",
    "SeededShuffleSampler": "sampling",
    "SyntheticColorDataset": "synthetic",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` when it is first asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module 'lit_colorization.data' has no attribute {name!r}")
    return getattr(import_module(f"lit_colorization.data.{_HOMES[name]}"), name)
