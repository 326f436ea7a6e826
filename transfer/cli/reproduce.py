# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes its flags on tab)
"""``make reproduce``: the paper's table from raw data to the comparison, resumable:
``python -m transfer.cli.reproduce [--config FILE] key=value ...`` (run=, data=, voc=, places=, model=, gpus=,
nodes=, scale=, plan=).

Parses the command line, then imports the library, loads the config and calls
``transfer.reproduce.pipeline.reproduce``.
"""

from __future__ import annotations

from lit_colorization.cli.common import CommandLibrary, CommandLine, run_preset_command

COMMAND_LINE = CommandLine(
    module="transfer.cli.reproduce",
    description="The paper's table in one resumable command (make reproduce)",
    preset_kind=None,
    schema="transfer.reproduce.reproduce_config:ReproduceConfig",
)


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""

    def library() -> CommandLibrary:
        from transfer.reproduce.pipeline import reproduce
        from transfer.reproduce.reproduce_config import REPRODUCE

        return CommandLibrary(REPRODUCE, reproduce)

    run_preset_command(COMMAND_LINE, library, argv)


if __name__ == "__main__":
    main()
