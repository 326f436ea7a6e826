# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes its flags and presets on tab)
"""Pascal VOC07 detection on a colorization trunk: protocol faster-rcnn-fc67 (the pretrained fc6/fc7 as the RoI head) or faster-rcnn-mlp: ``python -m transfer.cli.voc_det [--preset NAME] [--config FILE] key=value ...``.

Parses the command line, then imports the library, loads the config and calls ``transfer.voc.det_task.detect``.
"""

from __future__ import annotations

from lit_colorization.cli.common import CommandLibrary, CommandLine, run_preset_command

COMMAND_LINE = CommandLine(
    module="transfer.cli.voc_det",
    description="Pascal VOC07 detection on a colorization trunk: protocol faster-rcnn-fc67 (the pretrained fc6/fc7 as the RoI head) or faster-rcnn-mlp",
    preset_kind="voc_det",
    schema="transfer.voc.voc_config:VOCDetConfig",
)


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""

    def library() -> CommandLibrary:
        from transfer.voc.det_task import detect
        from transfer.voc.voc_config import VOC_DET

        return CommandLibrary(VOC_DET, detect)

    run_preset_command(COMMAND_LINE, library, argv)


if __name__ == "__main__":
    main()
