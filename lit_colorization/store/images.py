"""PNG files written atomically: a picture or a plot is either whole on disk or absent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lit_colorization.store.atomic import atomic_open


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """An H x W (x 3) uint8 array as a PNG at ``path``, written atomically."""
    path = Path(path)
    with atomic_open(path, "wb") as stream:
        Image.fromarray(image).save(stream, format="PNG")
    return path


def save_figure(figure: Any, path: str | Path, dpi: int = 110) -> Path:
    """A matplotlib ``figure`` as a PNG at ``path``, written atomically, then closed so pyplot lets it go."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_open(path, "wb") as stream:
        figure.savefig(stream, format="png", dpi=dpi)
    plt.close(figure)
    return path
