# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes its flags and presets on tab)
"""Pascal VOC07 classification on a colorization trunk: ``python -m transfer.cli.voc_cls [--preset NAME] [--config FILE] key=value ...``.

Parses the command line, then imports the library, loads the config and calls ``transfer.voc.cls_task.classify``.
"""

from __future__ import annotations

from lit_colorization.cli.common import CommandLibrary, CommandLine, run_preset_command

COMMAND_LINE = CommandLine(
    module="transfer.cli.voc_cls",
    description="Pascal VOC07 classification on a colorization trunk",
    preset_kind="voc_cls",
    schema="transfer.voc.voc_config:VOCClsConfig",
)


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""

    def library() -> CommandLibrary:
        from transfer.voc.cls_task import classify
        from transfer.voc.voc_config import VOC_CLS

        return CommandLibrary(VOC_CLS, classify)

    run_preset_command(COMMAND_LINE, library, argv)


if __name__ == "__main__":
    main()
