"""Colorize photos with a trained colorizer.

``python -m lit_colorization.colorize --ckpt CKPT INPUT... --out DIR [--temperature 0.38]``

INPUT: image files or folders (searched recursively); colour inputs are converted to gray first. The output keeps
the input's full resolution: its own ``L`` joined with the predicted ``ab``, upsampled. Existing outputs are kept
(an interrupted job resumes where it stopped) unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from lit_colorization.checkpoint import (
    CheckpointError,
    build_network,
    load_raw,
    load_state_strict,
    read_checkpoint,
)
from lit_colorization.cli import run_cli
from lit_colorization.color import ab_bins, rgb_to_lab
from lit_colorization.data.folder import list_images
from lit_colorization.data.images import read_rgb
from lit_colorization.inference import predict_full_resolution_ab
from lit_colorization.models import ColorizationNet, create_model
from lit_colorization.models.eccv16 import convert_official_eccv16_state_dict
from lit_colorization.visualize import lab_batch_to_rgb, save_png, to_uint8_image

WEIGHT_FORMATS = ("lit", "official")


@dataclass
class Colorizer:
    network: ColorizationNet
    bins: Tensor
    regression: bool


def load_colorizer(path: str | Path, weights_format: str = "lit", device: str = "cpu") -> Colorizer:
    """A network ready for inference from our checkpoint or the authors' released eccv16 state dict."""
    if weights_format == "official":
        state = load_raw(path)
        network = create_model("eccv16")
        try:
            converted = convert_official_eccv16_state_dict(state)
        except ValueError as error:
            raise CheckpointError(f"{path}: not the authors' eccv16 state dict: {error}") from None
        load_state_strict(network, converted, str(path))
        return Colorizer(network.eval().to(device), ab_bins().to(device), regression=False)
    if weights_format != "lit":
        raise ValueError(f"--weights-format: expected one of {WEIGHT_FORMATS}, got {weights_format!r}")
    checkpoint = read_checkpoint(path)
    regression = checkpoint.config.get("loss") == "l2"
    return Colorizer(build_network(checkpoint).to(device), checkpoint.bins.to(device), regression)


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


def colorize_rgb(
    colorizer: Colorizer, rgb_uint8: Tensor, temperature: float, input_size: int | None
) -> Tensor:
    """H x W x 3 uint8 RGB -> 3 x H x W colorized RGB in [0, 1] at the same size, with the input's own L."""
    device = colorizer.bins.device
    rgb = rgb_uint8.permute(2, 0, 1).unsqueeze(0).to(device).float() / 255
    lightness = rgb_to_lab(rgb)[:, :1]
    ab = predict_full_resolution_ab(
        colorizer.network, lightness, colorizer.bins, temperature, colorizer.regression, input_size
    )
    return lab_batch_to_rgb(lightness, ab)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Colorize photos with a trained colorizer")
    parser.add_argument("inputs", nargs="+", help="image files or folders")
    parser.add_argument("--ckpt", required=True, help="a pretraining checkpoint (or official eccv16 weights)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--temperature", type=float, default=0.38, help="annealed-mean temperature (0.38)")
    parser.add_argument("--weights-format", choices=WEIGHT_FORMATS, default="lit")
    parser.add_argument("--size", type=int, default=256, help="network input size; 0 = the image's own size")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    args = parser.parse_args(argv)

    def run() -> None:
        if args.temperature <= 0:
            raise ValueError(f"--temperature: expected a positive number, got {args.temperature}")
        colorizer = load_colorizer(args.ckpt, args.weights_format, args.device)
        stride = colorizer.network.output_stride
        if args.size and args.size % stride:
            raise ValueError(
                f"--size: expected a multiple of the network's output stride {stride}, got {args.size}"
            )
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
