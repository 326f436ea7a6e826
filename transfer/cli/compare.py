"""``python -m transfer.cli.compare [--results PATH] [--plot PATH]``: the results store beside the paper.

Prints the tables and writes the plot, ``compare.md`` and ``compare.csv`` beside it (default: in results/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lit_colorization.cli.common import run_cli
from lit_colorization.store.results import DEFAULT_RESULTS_PATH


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Transfer results beside the paper's numbers")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS_PATH), help="the results store (.jsonl)")
    parser.add_argument(
        "--plot", default=None, help="PNG to write (default: linear_probe.png beside the results)"
    )
    args = parser.parse_args(argv)
    plot = args.plot or str(Path(args.results).with_name("linear_probe.png"))

    def report() -> None:
        from transfer.compare import compare

        print(compare(args.results, plot), end="")

    run_cli(report)


if __name__ == "__main__":
    main()
