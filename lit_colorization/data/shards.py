"""An image folder as LitData shards (``data.source=shards``), for clusters without a shared filesystem.

``make shards DATA=<folder> OUT=<path or s3://...>`` (``write_shards``) writes each split of an ImageNet-style
folder with LitData's ``optimize``: ``OUT/<split>/`` holds chunk files of samples ``{"index", "label", "name",
"image"}``, the image being the file's original bytes (a JPEG stays a JPEG) and ``index`` its position in the
folder's sorted listing. Training streams them back (``StreamingDataset``, every process its own share, remote
chunks downloaded ahead into a local cache) and turns each sample into what the folder datasets give:

- ``data.decode=gpu``: ``(bytes or pixels, crop numbers, label, name)`` for ``EncodedCollate`` and the device
  cropper (data/encoded.py);
- ``data.decode=cpu``: ``(crop, label)``, decoded and cropped in the worker (data/crops.py).

Crops are drawn from (seed, epoch, index) as for a folder, so a sample gets the same crop numbers from its shard
as from its file. LitData shuffles (chunks, then samples within them) by seed and epoch.

Exact resume: the training loader is a ``StreamingDataLoader``, whose state (epoch, samples yielded) Lightning
keeps in every checkpoint and gives back on resume. ``ResumableShardLoader`` takes that state at the batches the
loops have trained on, not at those fetched (Lightning may fetch ahead), and continues a restored epoch only once
(Lightning stops reading an epoch after its last batch, where LitData expects it read to its end).

LitData is an optional dependency: ``pip install 'lit-colorization[shards]'``.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from lit_colorization.data.crops import Resize, crop_sample, sample_rng
from lit_colorization.data.encoded import crop_numbers, payload_of
from lit_colorization.data.images import read_rgb

EXTRA = "shards"
MISSING_LITDATA = (
    f"data.source=shards needs LitData, the optional dependency of the '{EXTRA}' extra: "
    f"pip install 'lit-colorization[{EXTRA}]' (or pip install litdata)"
)
try:
    import litdata
    from litdata import StreamingDataLoader, StreamingDataset
except ImportError:  # one line, as a configuration error: what to install
    raise ValueError(MISSING_LITDATA) from None

INDEX_FILE = "index.json"  # what optimize writes beside the chunks
DEFAULT_CHUNK_BYTES = "64MB"
# Samples a StreamingDataLoader's state says were yielded: Lightning's fetcher runs one batch ahead of training.
_YIELDED = "_num_samples_yielded_streaming"
NEXT_EPOCH_KEY = "lit_colorization_next_epoch"


def is_remote(root: str) -> bool:
    return "://" in root


def split_location(root: str, split: str) -> str:
    return f"{root.rstrip('/')}/{split}" if is_remote(root) else os.path.join(os.path.abspath(root), split)


def check_split(root: str, split: str) -> str:
    """``root/split`` when it holds shards (checked for local roots), else a one-line FileNotFoundError."""
    location = split_location(root, split)
    if not is_remote(root) and not os.path.isfile(os.path.join(location, INDEX_FILE)):
        raise FileNotFoundError(
            f"{location}: no LitData shards ({INDEX_FILE} missing); expected data.root to hold {split}/ as "
            "written by make shards DATA=<image folder> OUT=<data.root>"
        )
    return location


# --- writing -------------------------------------------------------------------------------------------------


def shard_sample(item: tuple[int, str, int], split_path: str) -> dict[str, Any]:
    """What one image of the folder becomes in a shard (``optimize`` calls it in its workers)."""
    index, name, label = item
    with open(os.path.join(split_path, name), "rb") as stream:
        image = stream.read()
    return {"index": index, "label": label, "name": name, "image": image}


def write_shards(
    root: str,
    out: str,
    splits: Sequence[str] = ("train", "val"),
    chunk_bytes: str = DEFAULT_CHUNK_BYTES,
    workers: int = 1,
    index_cache: str | None = None,
    val_images: int | None = None,
    val_split: str = "val",
) -> dict[str, int]:
    """Write each of ``splits`` of the image folder ``root`` as shards under ``out/<split>``; the image counts.

    ``val_images``: of ``val_split``, only that many images, evenly spaced in the sorted listing.
    """
    from lit_colorization.data.file_index import load_split
    from lit_colorization.data.listing import resolve_split_dir

    counts = {}
    for split in splits:
        split_path = resolve_split_dir(root, split)
        destination = split_location(out, split)
        if not is_remote(out) and os.path.isdir(destination) and os.listdir(destination):
            raise ValueError(f"{destination} already holds files; write the shards to a new OUT")
        listing = load_split(split_path, index_cache)
        inputs = [
            (index, os.fsdecode(name), int(label))
            for index, (name, label) in enumerate(zip(listing.paths, listing.labels, strict=True))
        ]
        if split == val_split and val_images is not None and val_images < len(inputs):
            inputs = [inputs[i] for i in np.linspace(0, len(inputs) - 1, val_images).round().astype(int)]
        with own_start_method():
            litdata.optimize(
                fn=functools.partial(shard_sample, split_path=split_path),
                inputs=inputs,
                output_dir=destination,
                chunk_bytes=chunk_bytes,
                num_workers=workers,
                reorder_files=False,
                verbose=False,
                # Forked writers start at once (spawned ones import torch again, seconds each).
                start_method="fork" if "fork" in multiprocessing.get_all_start_methods() else None,
            )
        counts[split] = len(inputs)
    return counts


@contextlib.contextmanager
def own_start_method() -> Iterator[None]:
    """``optimize`` sets the process's multiprocessing start method for good; put back the one before."""
    before = multiprocessing.get_start_method(allow_none=True)
    try:
        yield
    finally:
        multiprocessing.set_start_method(before, force=True)


# --- reading -------------------------------------------------------------------------------------------------


class ShardImages(StreamingDataset):
    """The samples of one split's shards as the folder datasets give them (see the module's docstring)."""

    def __init__(
        self,
        location: str,
        train: bool,
        seed: int,
        decode: str,
        crop_size: int,
        resize: Resize | None,
        strict: bool,
    ) -> None:
        # drop_last: under DDP every process gets as many samples (LitData's default there).
        super().__init__(location, shuffle=train, seed=seed, drop_last=train or None)
        self.train = train
        self.crop_seed = seed
        self.decode = decode
        self.crop_size = crop_size
        self.resize = resize
        self.strict = strict

    def __getitem__(self, index: Any) -> Any:
        sample = super().__getitem__(index)
        if not isinstance(sample, dict):  # a slice or a key lookup: as LitData gives it
            return sample
        raw, name = bytes(sample["image"]), str(sample["name"])
        label, item = int(sample["label"]), int(sample["index"])
        if self.decode == "gpu":
            payload = payload_of(raw, name, self.strict)
            if payload is None:
                return None
            return payload, crop_numbers(self.crop_seed, self.current_epoch, item, self.train), label, name
        image = read_rgb(name, strict=self.strict, data=raw)
        if image is None:
            return None
        rng = sample_rng(self.crop_seed, self.current_epoch, item) if self.train else None
        return crop_sample(image, self.crop_size, self.resize, rng), label


class ResumableShardLoader(StreamingDataLoader):
    """A ``StreamingDataLoader`` whose state is where training is, not where the loader is.

    ``trained_batches`` tells how many batches of the current epoch the training loop has trained on (None:
    not under a Trainer; then the state is the loader's own). When that is the whole epoch, the state says to
    start the next epoch afresh.
    """

    def __init__(self, *args: Any, trained_batches: Callable[[], int | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained_batches = trained_batches
        self._continue_restored = False

    def __iter__(self) -> Any:
        # LitData continues a restored epoch until one is read to its end; but Lightning stops reading an epoch
        # of known length after its last batch, before the end. Only the first epoch after a restore continues.
        if not self._continue_restored:
            self.restore = False
        self._continue_restored = False
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        trained = self.trained_batches()
        if trained is None:
            return super().state_dict()
        if trained >= len(self):
            return {NEXT_EPOCH_KEY: self.current_epoch}
        if not hasattr(self, _YIELDED):
            raise RuntimeError(
                f"litdata {litdata.__version__} is not a version this project supports ({_YIELDED})"
            )
        yielded = getattr(self, _YIELDED)
        setattr(self, _YIELDED, trained * self.batch_size)
        try:
            return super().state_dict()
        finally:
            setattr(self, _YIELDED, yielded)

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        if (
            NEXT_EPOCH_KEY in obj
        ):  # the checkpoint came at the end of an epoch: the next starts from its start
            self.current_epoch = obj[NEXT_EPOCH_KEY]
            self.restore = False
            self.dataset.reset_state_dict()
            return
        super().load_state_dict(obj)
        self._continue_restored = True


def shard_loader(
    dataset: ShardImages,
    batch_size: int,
    num_workers: int,
    collate_fn: Callable,
    worker_init_fn: Callable | None,
    pin_memory: bool,
    trained_batches: Callable[[], int | None],
) -> ResumableShardLoader:
    return ResumableShardLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=worker_init_fn,
        pin_memory=pin_memory,
        drop_last=dataset.train,
        trained_batches=trained_batches,
    )
