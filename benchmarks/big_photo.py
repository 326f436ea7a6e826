"""A smooth coloured photo with texture, SIDE x SIDE, as a JPEG, written a band at a time (bounded memory).

``python benchmarks/big_photo.py SIDE OUT.jpg``: the large photos of docs/benchmarks.md's colorize memory.
"""

import sys

import numpy as np
from PIL import Image

side = int(sys.argv[1])
image = Image.new("RGB", (side, side))
rng = np.random.default_rng(0)
step = 500
for top in range(0, side, step):
    rows = min(step, side - top)
    y, x = np.mgrid[top : top + rows, 0:side].astype(np.float32) / side
    strip = np.stack(
        [128 + 100 * np.sin(6 * x + 2 * y), 128 + 90 * np.cos(5 * y), 128 + 80 * np.sin(4 * (x - y))], -1
    )
    strip += rng.normal(0, 12, strip.shape)
    image.paste(Image.fromarray(strip.clip(0, 255).astype(np.uint8)), (0, top))
image.save(sys.argv[2], quality=90)
