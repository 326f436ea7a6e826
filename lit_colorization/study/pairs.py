"""Find the (real, colorized) image pairs of a study folder.

Layout (written by `make eval-color`): ``DIR/real/NAME.png|jpg`` and ``DIR/colorized/NAME.png|jpg``,
paired by file stem.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})

logger = logging.getLogger(__name__)


class ImagePair(NamedTuple):
    real: Path
    colorized: Path


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(
            f"study folder {folder} is missing (expected a directory of .png/.jpg images)"
        )
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in images:
            raise ValueError(
                f"two images named {path.stem!r} in {folder}: {images[path.stem].name} and {path.name}"
            )
        images[path.stem] = path
    return images


def find_pairs(study_dir: str | Path) -> dict[str, ImagePair]:
    """Map each image name present in both ``real/`` and ``colorized/`` to its two files.

    Names present on one side only are skipped with a warning; a study without any pair is an error.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(
            f"study folder {study_dir} does not exist (expected real/ and colorized/ inside)"
        )
    real = _images_by_stem(study_dir / "real")
    colorized = _images_by_stem(study_dir / "colorized")
    unmatched = sorted(real.keys() ^ colorized.keys())
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (", ..." if len(unmatched) > 5 else "")
        logger.warning(
            "skipping %d image(s) of %s present in only one of real/ and colorized/: %s",
            len(unmatched),
            study_dir,
            shown,
        )
    pairs = {name: ImagePair(real[name], colorized[name]) for name in sorted(real.keys() & colorized.keys())}
    if not pairs:
        raise ValueError(f"no image pairs in {study_dir}: real/ and colorized/ share no file names")
    return pairs
