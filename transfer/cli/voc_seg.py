"""Pascal VOC2012 semantic segmentation: ``python -m transfer.cli.voc_seg [--preset NAME] key=value ...``.

Parses the command line, loads the config and calls ``transfer.voc.seg_task.segment``.
"""

from __future__ import annotations

from lit_colorization.cli.common import run_preset_command
from transfer.voc.seg_task import segment
from transfer.voc.voc_config import VOC_SEG


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""
    run_preset_command(
        VOC_SEG,
        segment,
        argv,
        description="Pascal VOC2012 semantic segmentation (FCN) on a colorization trunk",
    )


if __name__ == "__main__":
    main()
