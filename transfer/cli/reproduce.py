"""``make reproduce``: the paper's table from raw data to the comparison, resumable:
``python -m transfer.cli.reproduce key=value ...`` (run=, data=, voc=, places=, model=, gpus=, nodes=, scale=, plan=).

Parses the command line, loads the config and calls ``transfer.reproduce.pipeline.reproduce``.
"""

from __future__ import annotations

from lit_colorization.cli.common import run_preset_command
from transfer.reproduce.pipeline import reproduce
from transfer.reproduce.reproduce_config import REPRODUCE


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""
    run_preset_command(
        REPRODUCE, reproduce, argv, description="The paper's table in one resumable command (make reproduce)"
    )


if __name__ == "__main__":
    main()
