"""The file list of an image split, built once and kept between starts (``data.index_cache``).

Listing an ImageNet-sized tree (1.28M files in 1000 class folders) on a network filesystem takes minutes, and
every process of a run used to do it at every start. Instead global rank 0 lists the split once and writes the
result as one ``.npz`` file in a cache folder (atomically: ``store/atomic.py``): the classes, the relative paths
as the dataset keeps them (one numpy byte-string array) and the labels. The other ranks wait for that file and
read it; later starts, of this run or any other on the same folder, read it too.

Whether a stored list still holds is told by the folders alone: the file also records every folder the listing
read (the split's own, the class folders, any nested ones) with its modification time. Adding, removing or
renaming a file or a folder changes the time of the folder that holds it, so a start stats those folders (about
a thousand for ImageNet, not a million files) and lists again, with one line saying which folder changed, when one
differs or is gone. Editing a file in place changes no folder, but also nothing the list holds. On NFS a change
made on another host becomes visible after the client's attribute cache expires (seconds).

The file's name comes from the split's real path (and this format's version), so each tree has its own and a
moved or re-linked tree gets a new one. ``data.index_cache``: ``auto`` (``$LIT_COLORIZATION_CACHE/file-index``,
by default ``~/.cache/lit-colorization/file-index``), a folder, or null to list at every start. Every process of a
multi-node run must see the same folder (as they already share the run folder).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from lit_colorization.data.listing import IMAGE_EXTENSIONS, FolderStamps, scan_split
from lit_colorization.store.atomic import atomic_open

log = logging.getLogger(__name__)

AUTO = "auto"
CACHE_ENV = "LIT_COLORIZATION_CACHE"
INDEX_FORMAT = 1
# How long ranks other than 0 wait for rank 0's file: listing 1.28M files on a slow filesystem takes minutes.
WAIT_SECONDS = 3600.0
POLL_SECONDS = 2.0
INDEX_ARRAYS = ("format", "split", "classes", "paths", "labels", "folders", "mtimes")


@dataclass(frozen=True)
class SplitListing:
    """What a split holds: class names, image paths relative to the split (numpy bytes) and int64 labels."""

    classes: list[str]
    paths: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def list_split(split_path: str) -> tuple[SplitListing, FolderStamps]:
    """The split as it is on disk now, and the folders read to list it."""
    stamps: FolderStamps = []
    classes, paths, labels = scan_split(split_path, stamps)
    encoded = np.array([os.fsencode(path) for path in paths], dtype=np.bytes_)
    return SplitListing(classes, encoded, labels), stamps


def cache_folder(setting: str | None) -> Path | None:
    """The folder ``data.index_cache`` names; None when it is null (no index kept)."""
    if setting is None:
        return None
    if setting == AUTO:
        base = os.environ.get(CACHE_ENV) or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lit-colorization"
        )
        return Path(base) / "file-index"
    return Path(setting).expanduser()


def index_path(folder: Path, split_path: str) -> Path:
    """The index file of ``split_path`` in ``folder``: the split's folder names, readable, then a digest of its
    real path and of what decides the listing (the format, the image extensions)."""
    real = os.path.realpath(split_path)
    key = "\0".join([str(INDEX_FORMAT), real, ",".join(sorted(IMAGE_EXTENSIONS))])
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    parent, split = os.path.split(real)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{os.path.basename(parent)}-{split}")[:60]
    return folder / f"{readable}-{digest}.npz"


def write_index(path: Path, split_path: str, listing: SplitListing, stamps: FolderStamps) -> None:
    folders, mtimes = zip(*stamps, strict=True)
    with atomic_open(path, "wb") as stream:
        np.savez(
            stream,
            format=np.array(INDEX_FORMAT),
            split=np.array(os.path.realpath(split_path)),
            classes=np.array(listing.classes, dtype=np.str_),
            paths=listing.paths,
            labels=listing.labels.astype(np.int32),
            folders=np.array(folders, dtype=np.str_),
            mtimes=np.array(mtimes, dtype=np.int64),
        )


def read_index(path: Path, split_path: str) -> tuple[SplitListing | None, str]:
    """(the stored listing, "") when ``path`` holds one of ``split_path`` that still holds; else (None, why not),
    why being "" when there is no file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in INDEX_ARRAYS}
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        reason = str(error).splitlines()[0] if str(error) else "empty"
        return None, f"unreadable ({type(error).__name__}: {reason})"
    problem = inconsistency(arrays)
    if problem:
        return None, f"inconsistent ({problem})"
    if int(arrays["format"]) != INDEX_FORMAT or str(arrays["split"]) != os.path.realpath(split_path):
        return None, "written for another split or by another version"
    changed = first_changed_folder(split_path, arrays["folders"], arrays["mtimes"])
    if changed is not None:
        return None, f"{changed} changed since it was listed"
    classes = [str(name) for name in arrays["classes"]]
    return SplitListing(classes, arrays["paths"], arrays["labels"].astype(np.int64)), ""


def inconsistency(arrays: dict[str, np.ndarray]) -> str:
    """What is wrong with the arrays of an index file as ``write_index`` writes them, "" when nothing is: a file
    another version or a hand edit left must be listed again, not trusted nor refused."""
    kinds = {"format": "iu", "split": "U", "classes": "U", "paths": "S", "labels": "iu", "folders": "U"}
    kinds["mtimes"] = "iu"
    for name, kind in kinds.items():
        if arrays[name].dtype.kind not in kind:
            return f"{name} has dtype {arrays[name].dtype}"
    if arrays["format"].ndim or arrays["split"].ndim:
        return "format and split must be single values"
    if any(arrays[name].ndim != 1 for name in ("classes", "paths", "labels", "folders", "mtimes")):
        return "classes, paths, labels, folders and mtimes must be lists"
    if len(arrays["labels"]) != len(arrays["paths"]) or len(arrays["folders"]) != len(arrays["mtimes"]):
        return "as many labels as paths and as many mtimes as folders expected"
    if not len(arrays["classes"]):
        return "no class"
    labels = arrays["labels"]
    if len(labels) and (labels.min() < 0 or labels.max() >= len(arrays["classes"])):
        return f"labels outside 0..{len(arrays['classes']) - 1}"
    return ""


def first_changed_folder(split_path: str, folders: np.ndarray, mtimes: np.ndarray) -> str | None:
    """The first of ``folders`` (relative to ``split_path``) whose modification time is not ``mtimes``'s, or that
    is gone; None when none is."""
    for folder, mtime in zip(folders.tolist(), mtimes.tolist(), strict=True):
        full = os.path.normpath(os.path.join(split_path, folder))
        try:
            if os.stat(full).st_mtime_ns != mtime:
                return full
        except OSError:
            return full
    return None


def load_split(
    split_path: str, index_cache: str | None, rank: int | None = None, wait_seconds: float = WAIT_SECONDS
) -> SplitListing:
    """The listing of ``split_path``: from its index file in ``index_cache`` when that still holds, else listed
    now, and the file written, by rank 0 (``rank``: the global rank, by default this process's). Other ranks wait
    for rank 0's file."""
    folder = cache_folder(index_cache)
    if folder is None:
        return list_split(split_path)[0]
    path = index_path(folder, split_path)
    rank = rank_zero_only.rank if rank is None else rank
    if rank != 0:
        return wait_for_index(path, split_path, rank, wait_seconds)
    started = time.perf_counter()
    listing, why_not = read_index(path, split_path)
    if listing is not None:
        log.info(
            "%s: %d images from the file index %s (%.2f s)",
            split_path,
            len(listing),
            path,
            time.perf_counter() - started,
        )
        return listing
    if why_not:
        log.info("file index %s: %s; listing %s again", path, why_not, split_path)
    started = time.perf_counter()
    listing, stamps = list_split(split_path)
    took = time.perf_counter() - started
    try:
        write_index(path, split_path, listing, stamps)
    except OSError as error:
        log.warning(
            "cannot write the file index %s (%s: %s); set data.index_cache to a writable folder that all "
            "processes share, or to null to list at every start",
            path,
            type(error).__name__,
            error.strerror or error,
        )
        return listing
    log.info("%s: listed %d images in %.1f s, kept in %s", split_path, len(listing), took, path)
    return listing


def wait_for_index(path: Path, split_path: str, rank: int, wait_seconds: float) -> SplitListing:
    deadline = time.monotonic() + wait_seconds
    while True:
        listing, _ = read_index(path, split_path)
        if listing is not None:
            return listing
        if time.monotonic() > deadline:
            raise ValueError(  # one line, as a configuration error: the folder is most likely not shared
                f"{path}: rank {rank} waited {wait_seconds:.0f} s for rank 0 to write the file index of "
                f"{split_path}; set data.index_cache to a folder every process of the run shares (or null)"
            )
        time.sleep(POLL_SECONDS)
