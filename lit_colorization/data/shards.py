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
import json
import multiprocessing
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lit_colorization.data.crops import Resize, crop_sample, sample_rng
from lit_colorization.data.encoded import crop_numbers, payload_of
from lit_colorization.data.images import read_rgb
from lit_colorization.store.atomic import write_text

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
# What write_shards's samples are, as LitData's index.json describes them: the only layout this reader accepts.
# LitData decodes each field with the serializer the index names, and one of them ("pickle") runs whatever a
# sample holds: an index written elsewhere is checked before any sample is decoded (check_index).
SAMPLE_FIELDS = {"index": "int", "label": "int", "name": "str", "image": "bytes"}
SAMPLE_FORMAT = ["int", "int", "str", "bytes"]  # the leaves of the sample dict, in its key order
ITEM_LOADER = "PyTreeLoader"
CLASSES_KEY = "lit_colorization_classes"  # index.json's extra key: the class names, in label order
CHUNK_NAME = re.compile(r"chunk-\d+-\d+\.bin")
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


class ShardIndexError(ValueError):
    """A shard folder's ``index.json`` is not what ``write_shards`` writes; the one-line message names it."""


@dataclass(frozen=True)
class ShardIndex:
    """What a checked ``index.json`` tells: the number of samples and the class names (None: not recorded)."""

    samples: int
    classes: list[str] | None


def sample_spec() -> Any:
    """The tree of the sample dict that LitData records for write_shards's samples (``data_spec``)."""
    return [
        1,
        {
            "type": "builtins.dict",
            "context": json.dumps(list(SAMPLE_FIELDS)),
            "children_spec": [{"type": None, "context": None, "children_spec": []}] * len(SAMPLE_FIELDS),
        },
    ]


def check_index(path: str) -> ShardIndex:
    """Read ``path`` (an ``index.json``) and refuse, in one line naming it, anything but the fields, formats and
    plain chunk files that ``write_shards`` produces: no sample is decoded before this check."""

    def refuse(what: str) -> ShardIndexError:
        return ShardIndexError(
            f"{path}: {what}; this reader takes only shards as make shards writes them "
            f"(fields {SAMPLE_FIELDS}, uncompressed, unencrypted)"
        )

    try:
        with open(path, encoding="utf-8") as stream:
            index = json.load(stream)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ShardIndexError(
            f"{path}: not a readable JSON shard index ({type(error).__name__}: {error})"
        ) from None
    config = index.get("config") if isinstance(index, dict) else None
    if not isinstance(config, dict) or not isinstance(index.get("chunks"), list):
        raise refuse("no 'config' object and 'chunks' list")
    if config.get("data_format") != SAMPLE_FORMAT:
        raise refuse(f"data_format {config.get('data_format')!r} is not {SAMPLE_FORMAT}")
    if config.get("types", SAMPLE_FIELDS) != SAMPLE_FIELDS:
        raise refuse(f"field types {config.get('types')!r}")
    if config.get("item_loader") != ITEM_LOADER:
        raise refuse(f"item_loader {config.get('item_loader')!r} is not {ITEM_LOADER}")
    try:
        spec = json.loads(config.get("data_spec"))
    except (TypeError, ValueError):
        spec = None
    if spec != sample_spec():
        raise refuse(
            f"data_spec {config.get('data_spec')!r} is not a dict of the fields {list(SAMPLE_FIELDS)}"
        )
    for key in ("compression", "encryption"):
        if config.get(key) is not None:
            raise refuse(f"{key} {config.get(key)!r}")
    samples = 0
    for chunk in index["chunks"]:
        name = chunk.get("filename") if isinstance(chunk, dict) else None
        if not isinstance(name, str) or not CHUNK_NAME.fullmatch(name):
            raise refuse(f"chunk file name {name!r} is not chunk-<n>-<n>.bin beside the index")
        counts = [chunk.get("chunk_size"), chunk.get("chunk_bytes")]
        if not all(isinstance(count, int) and not isinstance(count, bool) and count >= 0 for count in counts):
            raise refuse(f"chunk {name}: chunk_size and chunk_bytes must be counts, got {counts}")
        samples += chunk["chunk_size"]
    classes = index.get(CLASSES_KEY)
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise refuse(f"{CLASSES_KEY} must be a list of class names")
    return ShardIndex(samples, classes)


def index_of(location: str) -> ShardIndex:
    """The checked index of a split's shards: read in place when local, else downloaded first."""
    if not is_remote(location):
        return check_index(os.path.join(location, INDEX_FILE))
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, INDEX_FILE)
        remote_call(location, lambda: fs_provider(location).download_file(f"{location}/{INDEX_FILE}", local))
        return check_index(local)


def fs_provider(url: str) -> Any:
    """LitData's client of the object store of ``url`` (the one optimize and StreamingDataset use)."""
    from litdata.streaming.fs_provider import _get_fs_provider

    return _get_fs_provider(url)


def remote_call(url: str, call: Callable[[], Any]) -> Any:
    """``call()``, an access to ``url``; its failure (no credentials, no bucket, no network) as one line."""
    if url.startswith("s3://"):
        require_aws_credentials(url)
    try:
        return call()
    except Exception as error:
        if isinstance(error, ShardIndexError):
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{url}: cannot reach the shards ({type(error).__name__}: {reason})") from None


def require_aws_credentials(url: str) -> None:
    """Refuse an ``s3://`` location at once when boto finds no credentials (instead of retrying, then a
    traceback). The instance metadata service is asked at most once, briefly."""
    import botocore.session

    session = botocore.session.get_session()
    session.set_config_variable("metadata_service_num_attempts", 1)
    session.set_config_variable("metadata_service_timeout", 1)
    if session.get_credentials() is None:
        raise ValueError(
            f"{url}: no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or "
            "~/.aws/credentials)"
        )


def parse_chunk_bytes(text: str) -> str:
    """``--chunk-bytes``: a positive size as LitData reads it (bytes, or a number with B, KB, MB, GB, TB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B)?\s*", str(text), re.IGNORECASE)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(
            f"--chunk-bytes (CHUNK_BYTES) must be a positive size such as 64MB or 1000000; got {text!r}"
        )
    return f"{match.group(1)}{(match.group(2) or 'B').upper()}"


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

    chunk_bytes = parse_chunk_bytes(chunk_bytes)
    # Every split's source and destination are checked before the first is written.
    split_paths = {split: resolve_split_dir(root, split) for split in splits}
    for split in splits:
        destination = split_location(out, split)
        if is_remote(out):
            remote_call(destination, lambda: None)
        elif os.path.isdir(destination) and os.listdir(destination):
            raise ValueError(f"{destination} already holds files; write the shards to a new OUT")
    counts = {}
    for split in splits:
        split_path = split_paths[split]
        destination = split_location(out, split)
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
        record_classes(destination, listing.classes)
        counts[split] = len(inputs)
    return counts


def record_classes(location: str, classes: list[str]) -> None:
    """Add the class names (in label order) to the index LitData wrote: online evaluation needs their count."""
    if not is_remote(location):
        path = os.path.join(location, INDEX_FILE)
        with open(path, encoding="utf-8") as stream:
            index = json.load(stream)
        write_text(path, json.dumps({**index, CLASSES_KEY: list(classes)}))
        return
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        local, remote = os.path.join(folder, INDEX_FILE), f"{location}/{INDEX_FILE}"
        provider = fs_provider(location)
        remote_call(location, lambda: provider.download_file(remote, local))
        record_classes(folder, classes)
        remote_call(location, lambda: provider.upload_file(local, remote))


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
        # Checked before LitData reads the index: a remote one is downloaded for the check.
        self.index = index_of(location)
        self.location = location

        # drop_last: under DDP every process gets as many samples (LitData's default there).
        def start() -> None:
            super(ShardImages, self).__init__(location, shuffle=train, seed=seed, drop_last=train or None)

        if is_remote(location):
            remote_call(location, start)
        else:
            start()
        self.train = train
        self.crop_seed = seed
        self.decode = decode
        self.crop_size = crop_size
        self.resize = resize
        self.strict = strict

    def __getitem__(self, index: Any) -> Any:
        try:
            sample = super().__getitem__(index)
        except (
            Exception
        ) as error:  # a truncated or corrupt chunk: LitData's own errors do not name the shards
            reason = str(error).splitlines()[0] if str(error) else "no message"
            raise ValueError(
                f"{self.location}: unreadable shard sample {getattr(index, 'index', index)} "
                f"({type(error).__name__}: {reason}); "
                "the chunk files are damaged: write the shards again with make shards"
            ) from None
        if not isinstance(sample, dict):  # a slice or a key lookup: as LitData gives it
            return sample
        if not (
            isinstance(sample.get("image"), bytes | bytearray | memoryview)
            and isinstance(sample.get("name"), str)
        ):
            raise ValueError(f"{self.location}: shard sample {index} is not the fields {SAMPLE_FIELDS}")
        raw, name = bytes(sample["image"]), sample["name"]
        label, item = int(sample["label"]), int(sample["index"])
        if self.index.classes is not None and not 0 <= label < len(self.index.classes):
            raise ValueError(
                f"{self.location}: shard sample {name} has label {label}, outside the "
                f"{len(self.index.classes)} classes its index names"
            )
        where = f"{self.location}: {name}"  # names the image in messages: which shards, which file they hold
        if self.decode == "gpu":
            payload = payload_of(raw, where, self.strict)
            if payload is None:
                return None
            return payload, crop_numbers(self.crop_seed, self.current_epoch, item, self.train), label, name
        image = read_rgb(where, strict=self.strict, data=raw)
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
