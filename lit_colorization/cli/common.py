"""Shared plumbing of the command-line entry points: config loading per preset and one-line errors."""

from __future__ import annotations

import argparse
import errno
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from lit_colorization.config.commands import CommandConfig
from lit_colorization.config.loading import ConfigError, available_presets
from lit_colorization.store.checkpoint import CheckpointError

WORKER_TRACEBACK_MARKER = "\nOriginal Traceback"
# Errors a user can fix from the message alone: printed as one line, without a traceback.
# Refused writes (no permission, a read-only filesystem, a full disk): the user's to fix, named in one line.
REFUSED_WRITES = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
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
        end_child_processes()
        if os.environ.get("LIT_COLORIZATION_DEBUG"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:
        end_child_processes()
        if error.errno not in REFUSED_WRITES or os.environ.get("LIT_COLORIZATION_DEBUG"):
            raise
        name = error.filename if error.filename is not None else "a file"
        print(
            f"error: {name}: {error.strerror}; run with write access there or choose another folder",
            file=sys.stderr,
        )
        sys.exit(2)
    except BaseException:
        end_child_processes()
        raise


def end_child_processes() -> None:
    """Kill this process's DataLoader workers on the way out of a failed or stopped command.

    Workers ignore SIGTERM (data/datamodule.py: the main process answers a scheduler's signal), and a loader whose
    iterator an exception still references is not shut down before ``multiprocessing``'s exit handler, which
    sends them SIGTERM and waits for them: without this, the process would print its error and never exit.
    They only read data, so SIGKILL loses nothing.
    """
    children = multiprocessing.active_children()
    if children and threading.current_thread() is threading.main_thread():
        # PyTorch's SIGCHLD handler would report each killed worker as a failure of its own.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in multiprocessing.active_children():
        child.join(timeout=10)


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
    run_cli(lambda: run(command.load(args.preset, args.overrides)))
