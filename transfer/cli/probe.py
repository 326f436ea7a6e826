"""Linear probes on frozen features: ``python -m transfer.cli.probe [--preset NAME] key=value ...``.

Parses the command line, loads the config and calls ``transfer.probe.linear_probe.probe``.
"""

from __future__ import annotations

from lit_colorization.cli.common import run_preset_command
from transfer.probe.linear_probe import probe
from transfer.probe.probe_config import PROBE


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""
    run_preset_command(
        PROBE,
        probe,
        argv,
        description="Per-layer linear probes on frozen colorization features",
    )


if __name__ == "__main__":
    main()
