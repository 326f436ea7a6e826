"""``make demo``: the main job end to end on the embedded photos, on the CPU: ``python -m transfer.cli.demo [key=value ...]``.

Parses the command line and calls ``transfer.demo.run_demo`` (what it does and writes is described there).
"""

from __future__ import annotations

import argparse

from lit_colorization.cli.common import run_cli


def main(argv: list[str] | None = None) -> None:
    """Run the demo with the pretraining overrides on ``argv``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="config overrides key=value for the pretraining")
    args = parser.parse_args(argv)

    def demo() -> None:
        from transfer.demo import run_demo

        run_demo(args.overrides)

    run_cli(demo)


if __name__ == "__main__":
    main()
