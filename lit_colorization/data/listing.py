"""Listing an image split on disk: the sorted image paths, their classes, and the folders read (for the index).

The file list is built with os.scandir (no stat per file), sorted at every level, and stored as one numpy
byte-string array: a 1.2M-image list then costs tens of MB and no per-item Python objects, which forked
DataLoader workers would otherwise slowly copy through reference counting.
"""

from __future__ import annotations

import os

import numpy as np

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
FLAT_CLASS_NAME = "unlabelled"


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# (folder relative to the split, its modification time in ns) of every folder a listing read, the split's own
# as ".": what `data/file_index.py` compares to tell whether a stored listing still holds.
FolderStamps = list[tuple[str, int]]
SPLIT_FOLDER = "."


def list_images(directory: str, prefix: str = "", stamps: FolderStamps | None = None) -> list[str]:
    """Image files under `directory`, recursively, as paths relative to it (joined onto `prefix`), sorted.

    A symbolic link that cannot be followed (a loop) or that leads back to a folder above it (a cycle, which
    would list the same images again and again) is an error naming the link. ``stamps``, if given, receives
    each folder below `directory` that was read (see `FolderStamps`).
    """
    return _walk(directory, prefix, {_identity(directory): directory}, stamps)


def _walk(
    directory: str, prefix: str, ancestors: dict[tuple[int, int], str], stamps: FolderStamps | None
) -> list[str]:
    found: list[str] = []
    for entry in _sorted_visible_entries(directory):
        relative = os.path.join(prefix, entry.name) if prefix else entry.name
        if _is_dir(entry):
            found.extend(_descend(entry, relative, ancestors, stamps))
        elif is_image_file(entry.name):
            found.append(relative)
    return found


def _descend(
    entry: os.DirEntry[str],
    relative: str,
    ancestors: dict[tuple[int, int], str],
    stamps: FolderStamps | None,
) -> list[str]:
    """The images under the folder ``entry``, which must not be one of the folders above it."""
    status = os.stat(entry.path)  # before reading the folder: a file added meanwhile makes the stamp stale
    identity = (status.st_dev, status.st_ino)
    if identity in ancestors:
        raise ValueError(
            f"{entry.path}: a symbolic link back to {ancestors[identity]}, a folder above it, so the image tree "
            "never ends; remove the link"
        )
    if stamps is not None:
        stamps.append((relative, status.st_mtime_ns))
    return _walk(entry.path, relative, {**ancestors, identity: entry.path}, stamps)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError as error:  # ELOOP: a link that leads, in the end, to itself
        raise ValueError(
            f"{entry.path}: cannot be followed ({error.strerror}); a symbolic link loop? remove or fix the link"
        ) from None


def _identity(directory: str) -> tuple[int, int]:
    """What a folder is, whatever path reached it."""
    status = os.stat(directory)
    return status.st_dev, status.st_ino


def scan_split(
    split_path: str, stamps: FolderStamps | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """(classes, relative image paths, int64 labels) for one split directory; ``stamps``, if given, receives
    every folder read, the split's own first (see `FolderStamps`)."""
    status = os.stat(split_path)
    if stamps is not None:
        stamps.append((SPLIT_FOLDER, status.st_mtime_ns))
    entries = _sorted_visible_entries(split_path)
    top_level_images = [entry.name for entry in entries if not _is_dir(entry) and is_image_file(entry.name)]
    split = {(status.st_dev, status.st_ino): split_path}
    per_class = {
        entry.name: _descend(entry, entry.name, split, stamps) for entry in entries if _is_dir(entry)
    }
    classes = [name for name, files in per_class.items() if files]
    if classes and top_level_images:
        raise ValueError(
            f"{split_path} holds both image files (e.g. {top_level_images[0]}) and class sub-folders "
            f"(e.g. {classes[0]}); expected one or the other"
        )
    if not classes:
        if not top_level_images:
            raise FileNotFoundError(
                f"no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {split_path}"
            )
        return [FLAT_CLASS_NAME], top_level_images, np.zeros(len(top_level_images), dtype=np.int64)
    paths = [path for name in classes for path in per_class[name]]
    labels = np.concatenate(
        [np.full(len(per_class[name]), label, dtype=np.int64) for label, name in enumerate(classes)]
    )
    return classes, paths, labels


def resolve_split_dir(root: str | os.PathLike[str], split_dir: str) -> str:
    """`root/split_dir`, or a one-line FileNotFoundError saying which of the two is missing."""
    root_str = os.fspath(root)
    if not os.path.isdir(root_str):
        raise FileNotFoundError(
            f"data root {root_str} is not a directory; expected a folder holding {split_dir}/ with images"
        )
    split_path = os.path.join(root_str, split_dir)
    if not os.path.isdir(split_path):
        raise FileNotFoundError(
            f"split directory {split_path} does not exist; expected images (optionally in class "
            f"sub-folders) under {root_str}/{split_dir}/"
        )
    return split_path


def _sorted_visible_entries(directory: str) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as iterator:
        return sorted((entry for entry in iterator if not entry.name.startswith(".")), key=lambda e: e.name)
