"""Data: reading, decoding and cropping only. Workers produce uint8 RGB crops; all colour work is on the device."""

from lit_colorization.data.collate import Batch, Sample, SkipUnreadableCollate
from lit_colorization.data.data_config import DataConfig, resize_rule, validate_data_config
from lit_colorization.data.datamodule import ColorizationDataModule, build_datamodule
from lit_colorization.data.embedded import EmbeddedTrainDataset, EmbeddedValDataset, load_embedded_photos
from lit_colorization.data.folder import ImageFolderDataset
from lit_colorization.data.images import UnreadableImageError, read_rgb
from lit_colorization.data.listing import IMAGE_EXTENSIONS
from lit_colorization.data.sampling import SeededShuffleSampler
from lit_colorization.data.synthetic import SyntheticColorDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "Batch",
    "ColorizationDataModule",
    "DataConfig",
    "EmbeddedTrainDataset",
    "EmbeddedValDataset",
    "ImageFolderDataset",
    "Sample",
    "SeededShuffleSampler",
    "SkipUnreadableCollate",
    "SyntheticColorDataset",
    "UnreadableImageError",
    "build_datamodule",
    "load_embedded_photos",
    "read_rgb",
    "resize_rule",
    "validate_data_config",
]
