"""Shared plumbing of the command-line entry points: config loading per preset and one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lit_colorization.config.commands import CommandConfig
from lit_colorization.config.loading import ConfigError, available_presets
from lit_colorization.config.saved_run import load_command_config
from lit_colorization.store.checkpoint import CheckpointError

WORKER_TRACEBACK_MARKER = "\nOriginal Traceback"
# Errors a user can fix from the message alone: printed as one line, without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, FileNotFoundError, ValueError)


def one_line(error: BaseException) -> str:
    """The message of ``error``; for an error re-raised from a DataLoader worker, the original one's message."""
    message = str(error)
    if (
        WORKER_TRACEBACK_MARKER in message
    ):  # "Caught X in DataLoader worker ...\nOriginal Traceback ...\nX: msg"
        last_line = message.rstrip().splitlines()[-1]
        return last_line.split(": ", 1)[-1]
    return message


def run_cli(main: Callable[[], None]) -> None:
    """Run ``main``; a user error ends the process with one line on stderr and exit status 2.

    ``LIT_COLORIZATION_DEBUG=1`` shows the traceback instead.
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        main()
    except USER_ERRORS as error:
        if os.environ.get("LIT_COLORIZATION_DEBUG"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)


def run_preset_command(
    command: CommandConfig,
    run: Callable[[Any], Any],
    argv: Sequence[str] | None = None,
    default_preset: str | None = None,
    description: str | None = None,
) -> None:
    """Parse ``[--preset NAME] key=value ...`` from ``argv``, load ``command``'s config, call ``run(config)``.

    ``--help`` lists the command's presets.
    """
    kind = command.preset_kind
    presets = available_presets(kind) if kind else []
    parser = argparse.ArgumentParser(
        prog=f"python -m {command.name}" if description is None else None,
        description=description,
        epilog=f"presets (configs/presets/{kind}/): {', '.join(presets)}" if presets else None,
    )
    parser.add_argument("--preset", default=default_preset, help=f"one of: {', '.join(presets)}")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args(argv)
    run_cli(lambda: run(load_command_config(command, args.preset, args.overrides)))
