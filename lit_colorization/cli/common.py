"""Shared plumbing of the command-line entry points: parsing, config loading per preset and one-line errors.

Nothing here, nor in a command module's top level, imports torch: a command parses its arguments first and imports
its library after, so ``--help`` answers at once. ``--print-config`` loads and checks the config, prints it and
exits without writing anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import multiprocessing
import os
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from lit_colorization.config.loading import ConfigError, available_presets

WORKER_TRACEBACK_MARKER = "\nOriginal Traceback"


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix from the message alone: printed as one line, without a traceback."""
    from lit_colorization.store.checkpoint import CheckpointError  # imports torch: only once a command runs

    return (ConfigError, CheckpointError, FileNotFoundError, ValueError)


# Refused writes (no permission, a read-only filesystem, a full disk): the user's to fix, named in one line.
REFUSED_WRITES = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


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
    except Exception as error:
        end_child_processes()
        if isinstance(error, OSError) and error.errno in REFUSED_WRITES:
            name = error.filename if error.filename is not None else "a file"
            fail(OSError(f"{name}: {error.strerror}; run with write access there or choose another folder"))
        if not isinstance(error, user_errors()):
            raise
        fail(error)
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


def fail(error: BaseException) -> None:
    """End the process with ``error`` as one line on stderr (status 2), or re-raise it under the debug flag."""
    if os.environ.get("LIT_COLORIZATION_DEBUG"):
        raise error
    print(f"error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


@dataclass(frozen=True)
class CommandLine:
    """What a preset command's ``--help`` shows, known without importing its library."""

    module: str  # as ``python -m`` names it
    description: str
    preset_kind: str | None  # configs/presets/<preset_kind>/; None: no --preset
    schema: str  # "module:Class" of the config schema; its module must not import torch
    default_preset: str | None = None


@dataclass(frozen=True)
class CommandLibrary:
    """What a command runs once its arguments are parsed (imported then, so ``--help`` stays fast)."""

    command: Any  # lit_colorization.config.commands.CommandConfig
    run: Callable[[Any], Any]
    scale_line: Callable[[Any], str] | None = None  # the run's scale, as it prints it at start


def summary_of(schema: type) -> str:
    """The first sentence of a schema class's docstring ("" for a dataclass without one)."""
    doc = schema.__doc__ or ""
    if doc.startswith(f"{schema.__name__}("):  # the signature dataclasses write when there is no docstring
        return ""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".")


def config_groups(schema: type) -> list[tuple[str, str]]:
    """The schema's sections (fields typed by a dataclass) with the first sentence of each one's docstring."""
    hints = typing.get_type_hints(schema)
    return [
        (item.name, summary_of(hints[item.name]))
        for item in dataclasses.fields(schema)
        if isinstance(hints[item.name], type) and dataclasses.is_dataclass(hints[item.name])
    ]


def schema_class(reference: str) -> type:
    module, name = reference.split(":")
    return getattr(import_module(module), name)


def preset_parser(line: CommandLine) -> argparse.ArgumentParser:
    """``[--preset NAME] [--config FILE ...] [--print-config] key=value ...`` with presets and groups in the help."""
    presets = available_presets(line.preset_kind) if line.preset_kind else []
    schema = schema_class(line.schema)
    groups = config_groups(schema)
    width = max((len(name) for name, _ in groups), default=0)
    epilog = [f"presets (configs/presets/{line.preset_kind}/): {', '.join(presets)}"] if presets else []
    epilog += ["config groups (override any key as group.key=value):"]
    epilog += [f"  {name:<{width}}  {about}" for name, about in groups]
    plain = [item.name for item in dataclasses.fields(schema) if item.name not in dict(groups)]
    if plain:
        epilog += [f"top-level keys: {', '.join(plain)}"]
    parser = argparse.ArgumentParser(
        prog=f"python -m {line.module}",
        description=line.description,
        epilog="\n".join(epilog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if line.preset_kind:
        parser.add_argument(
            "--preset",
            default=line.default_preset,
            choices=presets,
            metavar="NAME",
            help=f"one of: {', '.join(presets)}"
            + (f" (default: {line.default_preset})" if line.default_preset else ""),
        )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="your YAML of config keys, merged after the preset and before key=value (repeatable)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (and the run's scale) and exit, writing nothing",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    enable_completion(parser)
    return parser


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Shell tab completion when argcomplete is installed (``pip install argcomplete``; see docs/commands.md)."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def load_preset_config(command: Any, args: argparse.Namespace) -> Any:
    """``command``'s config from the parsed ``--preset``, ``--config`` files and overrides; with ``resume=auto``,
    from the run's own saved config (``lit_colorization/config/saved_run.py``)."""
    from lit_colorization.config.saved_run import load_command_config

    files = [Path(path) for path in args.config]
    return load_command_config(command, getattr(args, "preset", None), args.overrides, files)


def print_config(config: Any, scale_line: str | None = None) -> None:
    """The resolved config as YAML, then the scale line if the command has one."""
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(config, resolve=True), end="")
    if scale_line:
        print(f"# scale: {scale_line}")


def run_preset_command(
    line: CommandLine, library: Callable[[], CommandLibrary], argv: Sequence[str] | None = None
) -> None:
    """Parse ``argv`` for ``line``, then import the library, load the config, and print it or run it."""
    run_parsed(preset_parser(line).parse_args(argv), library)


def run_parsed(args: argparse.Namespace, library: Callable[[], CommandLibrary]) -> None:
    """Import the library, load the config of the parsed ``args``, and print it (``--print-config``) or run it."""

    def start() -> None:
        loaded = library()
        config = load_preset_config(loaded.command, args)
        if args.print_config:
            print_config(config, loaded.scale_line(config) if loaded.scale_line else None)
            return
        loaded.run(config)

    run_cli(start)
