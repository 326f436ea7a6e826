"""Colorizing photo files: which inputs, which outputs, and the loop (``python -m lit_colorization.cli.colorize``).

INPUT: image files or folders (searched recursively), or ``--inputs-from FILE`` (one path a line, for names with
spaces); colour inputs are converted to gray first. The output keeps the input's full resolution: its own ``L``
joined with the predicted ``ab``, upsampled. Outputs mirror the inputs' paths below the folder they share, so two
inputs never share an output. Existing outputs are kept (an interrupted job resumes where it stopped) unless
``--overwrite``; images already under ``--out`` are never inputs (an output folder inside an input folder).

Without ``--temperature`` each weight format decodes its own way: our checkpoints by the annealed mean at 0.38,
the authors' released weights exactly as the release's demo does (plain softmax; see ``inference/colorizer.py``).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from lit_colorization.data.images import read_rgb
from lit_colorization.data.listing import list_images
from lit_colorization.inference.colorizer import (
    colorize_rgb,
    describe_decoding,
    load_colorizer,
)
from lit_colorization.store.images import save_png


def _absolute(path: Path) -> Path:
    """``path`` made absolute without following symbolic links (outputs mirror the paths as given)."""
    return Path(os.path.abspath(path))


def find_images(inputs: Sequence[str], out_dir: Path) -> tuple[list[Path], list[Path]]:
    """(absolute image paths, each once, in order; the folders they are mirrored from): every file given and
    every image under a folder given, except those under ``out_dir``."""
    out_dir = _absolute(out_dir)
    found: dict[Path, None] = {}
    bases = []
    for item in map(Path, inputs):
        if item.is_dir():
            folder = _absolute(item)
            bases.append(folder)
            for name in list_images(str(folder)):
                path = folder / name
                if out_dir not in path.parents:
                    found[path] = None
        elif item.is_file():
            found[_absolute(item)] = None
            bases.append(_absolute(item).parent)
        else:
            raise FileNotFoundError(f"{item}: input not found (expected an image file or a folder of images)")
    if not found:
        raise FileNotFoundError(f"no images found in {list(inputs)} (outside --out {out_dir})")
    return list(found), bases


def output_names(paths: Sequence[Path], bases: Sequence[Path]) -> list[Path]:
    """Each image's output path relative to --out: its path below the folder all inputs share, as .png.

    Two images of one stem in one folder (p.jpg, p.png) keep their suffix (p.jpg.png, p.png.png).
    """
    shared = Path(os.path.commonpath(bases))
    relative = [path.relative_to(shared) for path in paths]
    plain = [name.with_suffix(".png") for name in relative]
    clashes = Counter(plain)
    names = [
        name.with_name(name.name + ".png") if clashes[out] > 1 else out
        for name, out in zip(relative, plain, strict=True)
    ]
    first: dict[Path, Path] = {}
    for path, name in zip(paths, names, strict=True):
        if name in first:
            raise ValueError(f"{first[name]} and {path} would both be written to {name}; rename one of them")
        first[name] = path
    return names


def collect_inputs(inputs: Sequence[str], out_dir: Path) -> list[tuple[Path, Path]]:
    """(image path, output path) for every image to colorize; an output never overwrites an input."""
    paths, bases = find_images(inputs, out_dir)
    pairs = [(path, out_dir / name) for path, name in zip(paths, output_names(paths, bases), strict=True)]
    for path, target in pairs:
        if _absolute(target) == path:
            raise ValueError(f"{path}: its output would replace it; pick another --out")
    return pairs


def read_input_list(path: str) -> list[str]:
    """The non-empty lines of ``path``: one image file or folder each, spaces and all."""
    list_file = Path(path)
    if not list_file.is_file():
        raise FileNotFoundError(f"--inputs-from {list_file}: file not found (expected one input path a line)")
    return [line.strip() for line in list_file.read_text().splitlines() if line.strip()]


def colorize_files(
    ckpt: str,
    inputs: Sequence[str],
    out: str,
    inputs_from: str | None = None,
    weights_format: str = "lit",
    temperature: float | None = None,
    size: int = 256,
    device: str = "cpu",
    overwrite: bool = False,
) -> int:
    """Colorize every image of ``inputs`` (and of the list file ``inputs_from``) into ``out``; the number written."""
    if temperature is not None and not temperature > 0:
        raise ValueError(f"--temperature: expected a positive number, got {temperature}")
    if size < 0:
        raise ValueError(f"--size: expected 0 (each image's own size) or a positive size, got {size}")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir}: exists and is not a folder; expected an output folder")
    inputs = [*inputs, *(read_input_list(inputs_from) if inputs_from else [])]
    if not inputs:
        raise ValueError("no inputs: expected image files or folders, or --inputs-from FILE")
    colorizer = load_colorizer(ckpt, weights_format, device)
    multiple = colorizer.network.input_multiple
    if size % multiple:
        raise ValueError(f"--size: expected a multiple of {multiple} for this network, got {size}")
    print(describe_decoding(colorizer, temperature))
    pairs = collect_inputs(inputs, out_dir)
    written = skipped = unreadable = 0
    for path, target in tqdm(pairs, desc="colorize", unit="image", file=sys.stderr):
        if target.exists() and not overwrite:
            skipped += 1
            continue
        rgb = read_rgb(path)
        if rgb is None:
            unreadable += 1
            continue
        try:
            colorized = colorize_rgb(colorizer, torch.from_numpy(rgb), temperature, size or None)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        save_png(colorized, target)
        written += 1
    print(
        f"colorized {written} image(s) into {out_dir}"
        + (f"; kept {skipped} existing (use --overwrite to redo)" if skipped else "")
        + (f"; skipped {unreadable} unreadable (see warnings)" if unreadable else "")
    )
    return written
