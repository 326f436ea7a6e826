"""``python -m lit_colorization.cli.priors [--preset NAME] [--out PATH] key=value ...``: the ab prior of a
training set, written as a (Q,) ``.npy`` (default ``runs/<run>/prior.npy``)."""

from __future__ import annotations

import argparse

from lit_colorization.cli.common import run_cli
from lit_colorization.config.loading import available_presets
from lit_colorization.pretrain.pretrain_config import PRETRAIN
from lit_colorization.pretrain.priors import write_prior


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, load the pretraining config, write the prior."""
    parser = argparse.ArgumentParser(description="Empirical ab prior of a training set")
    parser.add_argument(
        "--preset", default="sample", help=f"one of: {', '.join(available_presets('pretrain'))}"
    )
    parser.add_argument("--out", help="output .npy (default: runs/<run>/prior.npy)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)
    run_cli(lambda: write_prior(PRETRAIN.load(args.preset, args.overrides), args.out))


if __name__ == "__main__":
    main()
