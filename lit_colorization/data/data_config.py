"""The `data` section of the structured config, and its validation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# No torch here (crops imports it): config schemas load without it, so --help stays fast.

SHORTER_SIDE = "shorter_side"
# Both sides to the size, the aspect ratio lost: what Caffe's convert_imageset --resize_height/--resize_width does
# when it builds an ImageNet LMDB, the release's training data (docs/reference.md section 5).
SQUASH = "squash"
RESIZE_MODES = (SHORTER_SIDE, SQUASH)

SOURCES = ("embedded", "folder", "synthetic", "shards")
DECODERS = ("cpu", "gpu")


@dataclass
class DataConfig:
    """The images: their source (embedded, folder, synthetic, shards), crops, batch size and loader workers."""

    source: str = "embedded"  # "embedded" | "folder" | "synthetic" | "shards"
    # folder: holds <train_split>/ and <val_split>/ with images; shards: with LitData shards (make shards), a local
    # path or a URL (s3://...)
    root: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    crop_size: int = 176
    resize: int | None = (
        None  # scale photos by this many pixels before cropping (see resize_mode); None: don't
    )
    # "shorter_side": the shorter side becomes `resize` pixels, the aspect ratio kept. "squash": the photo becomes
    # `resize` x `resize`, as Caffe's convert_imageset --resize_height/--resize_width stores an ImageNet LMDB.
    resize_mode: str = SHORTER_SIDE
    batch_size: int = (
        40  # pretraining: the global batch, split over the processes; other commands: per device
    )
    num_workers: int = 2
    persistent_workers: bool = True
    pin_memory: bool = True  # only takes effect when CUDA is available
    crops_per_epoch: int = 64  # embedded: training crops per photo per epoch
    val_crops: int = 8  # embedded: fixed validation crops per photo
    synthetic_size: int = 256  # synthetic: side of each generated image
    synthetic_train_images: int = 256
    synthetic_val_images: int = 32
    max_val_images: int | None = None  # any source: evenly spaced subset of the validation set
    strict: bool = False  # raise on the first unreadable file instead of skipping it
    seed: int = 0
    # "cpu": workers decode and crop with PIL. "gpu" (folder only): workers only read the files, and the
    # training device decodes (nvJPEG on CUDA, torchvision's CPU decoder elsewhere) and crops them in batches.
    decode: str = "cpu"
    # decode=gpu, folder source: decode, crop and build the targets of the next training batch in a thread (on
    # CUDA on a side stream) while the current step runs (data/ahead.py). null: on for CUDA runs, off elsewhere.
    decode_ahead: bool | None = None
    # folder: where the list of a split's files is kept between starts, so that a large tree is listed once
    # (data/file_index.py). "auto": $LIT_COLORIZATION_CACHE/file-index, else ~/.cache/lit-colorization/file-index;
    # a folder (shared by every process of a run); null: list the split at every start.
    index_cache: str | None = "auto"


POSITIVE_INT_KEYS = (
    "crop_size",
    "batch_size",
    "crops_per_epoch",
    "val_crops",
    "synthetic_size",
    "synthetic_train_images",
    "synthetic_val_images",
)
OPTIONAL_POSITIVE_INT_KEYS = ("resize", "max_val_images")


def validate_data_config(cfg: DataConfig | Any) -> None:
    """Raise a one-line ValueError / FileNotFoundError naming the first bad `data.*` key."""
    if cfg.source not in SOURCES:
        raise ValueError(f"data.source must be one of {', '.join(SOURCES)}; got {cfg.source!r}")
    if cfg.decode not in DECODERS:
        raise ValueError(f"data.decode must be one of {', '.join(DECODERS)}; got {cfg.decode!r}")
    if cfg.decode == "gpu" and cfg.source not in ("folder", "shards"):
        raise ValueError(
            f"data.decode=gpu reads image files: it needs data.source=folder or shards, got {cfg.source!r}"
        )
    if cfg.resize_mode not in RESIZE_MODES:
        raise ValueError(
            f"data.resize_mode must be one of {', '.join(RESIZE_MODES)}; got {cfg.resize_mode!r}"
        )
    for key in POSITIVE_INT_KEYS:
        _require_positive_int(key, getattr(cfg, key))
    for key in OPTIONAL_POSITIVE_INT_KEYS:
        if getattr(cfg, key) is not None:
            _require_positive_int(key, getattr(cfg, key))
    if not _is_int(cfg.num_workers) or cfg.num_workers < 0:
        raise ValueError(f"data.num_workers must be an integer >= 0; got {cfg.num_workers!r}")
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise ValueError(f"data.seed must be an integer >= 0; got {cfg.seed!r}")
    if cfg.index_cache is not None and (not cfg.index_cache or os.path.isfile(cfg.index_cache)):
        raise ValueError(
            f"data.index_cache must be 'auto', a folder or null; got {cfg.index_cache!r}"
            + (" (a file)" if cfg.index_cache else "")
        )
    if cfg.source in ("folder", "shards"):
        if not cfg.root:
            raise ValueError(f"data.root is required when data.source is {cfg.source!r}")
        remote = cfg.source == "shards" and "://" in cfg.root
        if not remote and not os.path.isdir(cfg.root):
            raise FileNotFoundError(f"data.root {cfg.root} is not a directory")
    if cfg.source == "shards" and cfg.max_val_images is not None:
        raise ValueError(
            f"data.max_val_images={cfg.max_val_images} picks validation files of a folder; shards stream their "
            "val split whole: set data.max_val_images=null (make shards VAL_IMAGES=N writes a smaller one)"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_positive_int(key: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise ValueError(f"data.{key} must be a positive integer; got {value!r}")
