"""Data: reading, decoding and cropping only. Workers produce uint8 RGB crops; all colour work is on the device.

The names below load on first use, so that importing ``lit_colorization.data.data_config`` (a config schema) does
not import torch: a command's ``--help`` stays fast.
"""

from __future__ import annotations

from lit_colorization.lazy import lazy_attributes

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

__getattr__ = lazy_attributes(__name__, _HOMES)
