"""Pascal VOC07 detection: ``python -m transfer.cli.voc_det [--preset NAME] key=value ...``.

Parses the command line, loads the config and calls ``transfer.voc.det_task.detect``.
"""

from __future__ import annotations

from lit_colorization.cli.common import run_preset_command
from transfer.voc.det_task import detect
from transfer.voc.voc_config import VOC_DET


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""
    run_preset_command(
        VOC_DET,
        detect,
        argv,
        description="Pascal VOC07 detection (Faster R-CNN) on a colorization trunk",
    )


if __name__ == "__main__":
    main()
