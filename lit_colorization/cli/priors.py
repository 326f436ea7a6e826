"""``python -m lit_colorization.cli.priors [--preset NAME] [--out PATH] key=value ...``: the ab prior of a
training set, written as a (Q,) ``.npy`` (default ``runs/<run>/prior.npy``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lit_colorization.cli.common import run_cli
from lit_colorization.color import ab_bins
from lit_colorization.data import build_datamodule
from lit_colorization.train.pretrain_config import PRETRAIN
from lit_colorization.train.priors import prior_from_datamodule, save_prior


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Empirical ab prior of a training set")
    parser.add_argument("--preset", default="sample", help="configs/presets/pretrain/<name>.yaml")
    parser.add_argument("--out", help="output .npy (default: runs/<run>/prior.npy)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)

    def run() -> None:
        config = PRETRAIN.load(args.preset, args.overrides)
        bins = ab_bins(config.targets.bins_path)
        prior = prior_from_datamodule(build_datamodule(config.data), config, bins)
        out = save_prior(prior, args.out or Path(config.runs_dir) / config.run / "prior.npy")
        print(f"prior over {bins.shape[0]} bins ({int((prior > 0).sum())} non-zero) written to {out}")

    run_cli(run)


if __name__ == "__main__":
    main()
