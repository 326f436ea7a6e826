"""PNG files written atomically: a picture is either whole on disk or absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lit_colorization.store.atomic import atomic_open


def save_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as stream:
        Image.fromarray(image).save(stream, format="PNG")
    return path
