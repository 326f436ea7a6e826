"""Colorize photos with a trained colorizer.

``python -m lit_colorization.cli.colorize --ckpt CKPT INPUT... --out DIR [--weights-format official] [--temperature T]``

INPUT: image files or folders (searched recursively); colour inputs are converted to gray first. The output keeps
the input's full resolution: its own ``L`` joined with the predicted ``ab``, upsampled. Existing outputs are kept
(an interrupted job resumes where it stopped) unless ``--overwrite``.

Without ``--temperature`` each weight format decodes its own way: our checkpoints by the annealed mean at 0.38,
the authors' released weights exactly as the release's demo does (plain softmax; see ``inference/colorizer.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
from tqdm import tqdm

from lit_colorization.cli.common import run_cli
from lit_colorization.color.pictures import to_uint8_image
from lit_colorization.data.folder import list_images
from lit_colorization.data.images import read_rgb
from lit_colorization.inference.colorizer import (
    WEIGHT_FORMATS,
    colorize_rgb,
    describe_decoding,
    load_colorizer,
)
from lit_colorization.store.images import save_png


def collect_inputs(inputs: Iterable[str]) -> list[tuple[Path, Path]]:
    """(image path, output name relative to --out) for every file given or found under a folder given."""
    found: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found.extend((item / name, Path(name).with_suffix(".png")) for name in list_images(str(item)))
        elif item.is_file():
            found.append((item, Path(item.stem + ".png")))
        else:
            raise FileNotFoundError(f"{item}: input not found (expected an image file or a folder of images)")
    if not found:
        raise FileNotFoundError(f"no images found in {list(inputs)}")
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Colorize photos with a trained colorizer")
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--ckpt", required=True, help="a pretraining checkpoint (or official eccv16 weights)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="annealed-mean temperature; default: the weights' own decoding (lit: 0.38; official: the release's "
        "plain softmax). With official weights an explicit T re-anneals the release's softmax",
    )
    parser.add_argument("--weights-format", choices=WEIGHT_FORMATS, default="lit")
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="network input size (256, as the release's demo); 0 = the image's own size",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    args = parser.parse_args(argv)

    def run() -> None:
        if args.temperature is not None and not args.temperature > 0:
            raise ValueError(f"--temperature: expected a positive number, got {args.temperature}")
        colorizer = load_colorizer(args.ckpt, args.weights_format, args.device)
        multiple = colorizer.network.input_multiple
        if args.size and args.size % multiple:
            raise ValueError(f"--size: expected a multiple of {multiple} for this network, got {args.size}")
        print(describe_decoding(colorizer, args.temperature))
        out_dir = Path(args.out)
        written = skipped = unreadable = 0
        for path, name in tqdm(collect_inputs(args.inputs), desc="colorize", unit="image", file=sys.stderr):
            target = out_dir / name
            if target.exists() and not args.overwrite:
                skipped += 1
                continue
            rgb = read_rgb(path)
            if rgb is None:
                unreadable += 1
                continue
            colorized = colorize_rgb(colorizer, torch.from_numpy(rgb), args.temperature, args.size or None)
            save_png(to_uint8_image(colorized), target)
            written += 1
        print(
            f"colorized {written} image(s) into {out_dir}"
            + (f"; kept {skipped} existing (use --overwrite to redo)" if skipped else "")
            + (f"; skipped {unreadable} unreadable (see warnings)" if unreadable else "")
        )

    run_cli(run)


if __name__ == "__main__":
    main()
