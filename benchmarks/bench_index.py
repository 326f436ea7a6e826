"""Start-up cost of an ImageNet-style folder with and without the file index (``make bench-index``).

Generates a tree of empty ``.JPEG`` files in class folders (ImageNet's shape: 1000 classes) in a temporary folder,
then times, through ``data/file_index.load_split`` as every run calls it:

- the first start: list the tree (os.scandir, what every start of every rank did before the index) and write the
  index;
- a cached start: read the index and stat every folder to check that it still holds (median of ``--repeats``),
  split into its two parts.

and extrapolates to ImageNet's 1,281,167 training files: listing and reading the index grow with the number of
files, the folder check with the number of folders (1000 either way). The tree is on whatever filesystem
``--dir`` (default: the system's temporary folder) is, freshly written, so its folders are in the kernel's cache:
the first-start numbers are a lower bound of a cold listing, on a network filesystem many times more.

    python benchmarks/bench_index.py [--files 200000] [--classes 1000] [--dir DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lit_colorization.data import file_index
from lit_colorization.data.file_index import index_path, load_split

IMAGENET_TRAIN_FILES = 1_281_167


def generate_tree(split: Path, files: int, classes: int) -> None:
    """``files`` empty JPEG-named files spread evenly over ``classes`` folders named like ImageNet's."""
    per_class, extra = divmod(files, classes)
    for label in range(classes):
        folder = split / f"n{label:08d}"
        folder.mkdir(parents=True)
        for index in range(per_class + (label < extra)):
            os.close(os.open(folder / f"n{label:08d}_{index}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument(
        "--dir", default=None, help="where to generate the tree (default: a temporary folder)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    if options.files < options.classes or options.classes < 1:
        parser.error("--files must be at least --classes, and --classes at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="bench-index-", dir=options.dir))
    try:
        split, cache = workdir / "imagenet" / "train", workdir / "cache"
        took, _ = timed(lambda: generate_tree(split, options.files, options.classes))
        print(
            f"tree: {options.files:,} empty files in {options.classes} class folders under {workdir} ({took:.1f} s)"
        )

        first, listing = timed(lambda: load_split(str(split), str(cache), rank=0))
        assert len(listing) == options.files
        stored = index_path(cache, str(split))
        listing_only, _ = timed(lambda: file_index.list_split(str(split)))
        cached_times = [
            timed(lambda: load_split(str(split), str(cache), rank=0))[0] for _ in range(options.repeats)
        ]
        cached = statistics.median(cached_times)
        with np.load(stored) as arrays:
            folders, mtimes = arrays["folders"], arrays["mtimes"]
        check = statistics.median(
            timed(lambda: file_index.first_changed_folder(str(split), folders, mtimes))[0]
            for _ in range(options.repeats)
        )
        read = max(cached - check, 0.0)

        scale = IMAGENET_TRAIN_FILES / options.files
        print(f"first start (list + write the index): {first:.2f} s (listing alone {listing_only:.2f} s)")
        print(
            f"cached start: {cached:.3f} s (median of {options.repeats}; read the index {read:.3f} s, "
            f"stat {len(folders)} folders {check:.3f} s); index file {stored.stat().st_size / 1e6:.1f} MB"
        )
        print(
            f"extrapolated to {IMAGENET_TRAIN_FILES:,} files (x{scale:.2f}; listing and reading grow with the "
            f"files, the check with the {len(folders)} folders): listing {listing_only * scale:.1f} s at every "
            f"start without the index; cached start {read * scale + check:.2f} s "
            f"(index file {stored.stat().st_size * scale / 1e6:.0f} MB)"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
