"""The study folder for ``make turing-test``: which images go in, and their real/colorized PNG pairs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from lit_colorization.color.pictures import to_uint8_image
from lit_colorization.data.datamodule import evenly_spaced_indices
from lit_colorization.store.images import save_png


def study_positions(positions: Sequence[int], count: int) -> set[int]:
    """``count`` of the evaluated ``positions``, evenly spaced (none for 0)."""
    if not count:
        return set()
    return {positions[i] for i in evenly_spaced_indices(len(positions), count)}


def write_study_pair(study_dir: Path, name: str, real: Tensor, colorized: Tensor) -> None:
    """Writes ``real`` (uint8 3 x H x W) and ``colorized`` (3 x H x W in [0, 1]) as {real,colorized}/NAME.png."""
    save_png(real.permute(1, 2, 0).cpu().numpy(), study_dir / "real" / f"{name}.png")
    save_png(to_uint8_image(colorized), study_dir / "colorized" / f"{name}.png")
