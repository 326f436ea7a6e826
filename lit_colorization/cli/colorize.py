"""Colorize photos with a trained colorizer.

``python -m lit_colorization.cli.colorize --ckpt CKPT INPUT... --out DIR [--weights-format official] [--temperature T]``

Parses the command line and calls ``lit_colorization.inference.photo_files.colorize_files`` (inputs, outputs and
decoding are described there).
"""

from __future__ import annotations

import argparse

from lit_colorization.cli.common import run_cli


def main(argv: list[str] | None = None) -> None:
    """Colorize the inputs named on ``argv``."""
    parser = argparse.ArgumentParser(description="Colorize photos with a trained colorizer")
    parser.add_argument("inputs", nargs="*", help="image files or folders")
    parser.add_argument("--inputs-from", help="a text file listing image files or folders, one a line")
    parser.add_argument("--ckpt", required=True, help="a pretraining checkpoint (or official eccv16 weights)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="annealed-mean temperature; default: the weights' own decoding (lit: 0.38; official: the release's "
        "plain softmax). With official weights an explicit T re-anneals the release's softmax",
    )
    parser.add_argument(
        "--weights-format", default="lit", help="lit (this project's checkpoints) or official (the release's)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="network input size (256, as the release's demo); 0 = the image's own size",
    )
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when there is one)")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    args = parser.parse_args(argv)

    def colorize() -> None:
        import torch

        from lit_colorization.inference.photo_files import colorize_files

        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        colorize_files(
            args.ckpt,
            args.inputs,
            args.out,
            inputs_from=args.inputs_from,
            weights_format=args.weights_format,
            temperature=args.temperature,
            size=args.size,
            device=device,
            overwrite=args.overwrite,
        )

    run_cli(colorize)


if __name__ == "__main__":
    main()
