# PYTHON_ARGCOMPLETE_OK  (argcomplete: this command completes its flags and presets on tab)
"""Per-layer linear probes on frozen colorization features: ``python -m transfer.cli.probe [--preset NAME] [--config FILE] key=value ...``.

Parses the command line, then imports the library, loads the config and calls ``transfer.probe.linear_probe.probe``.
"""

from __future__ import annotations

from lit_colorization.cli.common import CommandLibrary, CommandLine, run_preset_command

COMMAND_LINE = CommandLine(
    module="transfer.cli.probe",
    description="Per-layer linear probes on frozen colorization features",
    preset_kind="probe",
    schema="transfer.probe.probe_config:ProbeConfig",
)


def main(argv: list[str] | None = None) -> None:
    """Run the command on ``argv`` (default: the process's arguments)."""

    def library() -> CommandLibrary:
        from transfer.probe.linear_probe import probe
        from transfer.probe.probe_config import PROBE

        return CommandLibrary(PROBE, probe)

    run_preset_command(COMMAND_LINE, library, argv)


if __name__ == "__main__":
    main()
