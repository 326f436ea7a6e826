# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes its flags and presets on tab)
"""Pascal VOC segmentation (mIoU) on a colorization trunk: protocol release (FCN-AlexNet, VOC2011 + SBD -> seg11valid) or project-fcn (VOC2012): ``python -m transfer.cli.voc_seg [--preset NAME] [--config FILE] key=value ...``.

Parses the command line, then imports the library, loads the config and calls ``transfer.voc.seg_task.segment``.
"""

from __future__ import annotations

from lit_colorization.cli.common import CommandLibrary, CommandLine, run_preset_command

COMMAND_LINE = CommandLine(
    module="transfer.cli.voc_seg",
    description="Pascal VOC segmentation (mIoU) on a colorization trunk: protocol release (FCN-AlexNet, VOC2011 + SBD -> seg11valid) or project-fcn (VOC2012)",
    preset_kind="voc_seg",
    schema="transfer.voc.voc_config:VOCSegConfig",
)


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""

    def library() -> CommandLibrary:
        from transfer.voc.seg_task import segment
        from transfer.voc.voc_config import VOC_SEG

        return CommandLibrary(VOC_SEG, segment)

    run_preset_command(COMMAND_LINE, library, argv)


if __name__ == "__main__":
    main()
