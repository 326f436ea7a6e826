"""Pascal VOC07 classification: ``python -m transfer.cli.voc_cls [--preset NAME] key=value ...``.

Parses the command line, loads the config and calls ``transfer.voc.cls_task.classify``.
"""

from __future__ import annotations

from lit_colorization.cli.common import run_preset_command
from transfer.voc.cls_task import classify
from transfer.voc.voc_config import VOC_CLS


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""
    run_preset_command(
        VOC_CLS,
        classify,
        argv,
        description="Pascal VOC07 classification on a colorization trunk",
    )


if __name__ == "__main__":
    main()
