"""``make lock``: regenerate ``requirements/ci.lock``, the environment ``make setup`` installs, pinned.

    python scripts/lock.py EXTRAS [OUT]

``uv pip compile`` resolves pyproject.toml's dependencies with ``EXTRAS`` (comma-separated: the Makefile's
``SETUP_EXTRAS``) for the running Python, from the package indexes, find-links and constraint files pip is
configured with here (``pip config list``: pip.conf and ``PIP_*`` variables), so the lock pins only releases that
``pip install -c requirements/ci.lock`` on this machine can find. Needs uv (the ``dev`` extra installs it).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# pip config keys -> the uv pip compile option of the same meaning (each value may list several, space-separated).
PIP_OPTIONS = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
}
DEFAULT_OUT = "requirements/ci.lock"


def pip_settings() -> dict[str, list[str]]:
    """The values pip is configured with for ``PIP_OPTIONS``' keys, from every scope (``pip config list``)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    settings: dict[str, list[str]] = {}
    for line in listed.splitlines():
        match = re.fullmatch(r"[^.]*\.([a-z-]+)='(.*)'", line.strip())
        if match and match.group(1) in PIP_OPTIONS:
            values = settings.setdefault(match.group(1), [])
            values += [value for value in match.group(2).split() if value not in values]
    return settings


def compile_command(extras: list[str], out: str, settings: dict[str, list[str]]) -> list[str]:
    """The ``uv pip compile`` line for ``extras`` with pip's ``settings``."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("make lock needs uv: pip install -e '.[dev]' (make setup installs it)")
    command = [uv, "pip", "compile", "pyproject.toml", "--quiet", "--output-file", out]
    command += ["--python-version", f"{sys.version_info.major}.{sys.version_info.minor}"]
    command += [part for extra in extras for part in ("--extra", extra)]
    # pip's rule: the best release of a package across every index, not the first index that has it.
    command += ["--index-strategy", "unsafe-best-match", "--custom-compile-command", "make lock"]
    for key, option in PIP_OPTIONS.items():
        command += [part for value in settings.get(key, []) for part in (option, value)]
    return command


def main(argv: list[str]) -> None:
    if not argv or len(argv) > 2:
        raise SystemExit(f"usage: python scripts/lock.py EXTRAS [OUT] (OUT default: {DEFAULT_OUT})")
    extras = [name for name in argv[0].split(",") if name]
    out = Path(argv[1] if len(argv) == 2 else DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Compiled into a copy (uv keeps the pins it finds there where they still resolve), and moved over the lock
    # only when it changed: an unchanged lock keeps its time, so make setup does not reinstall for nothing.
    draft = out.with_name(f".{out.name}.draft")
    draft.write_text(out.read_text() if out.is_file() else "")
    command = compile_command(extras, str(draft), pip_settings())
    print(shlex.join(command), flush=True)
    try:
        subprocess.run(command, check=True)
        text = draft.read_text()
    finally:
        draft.unlink(missing_ok=True)
    pins = [line for line in text.splitlines() if "==" in line and not line.startswith("#")]
    if out.is_file() and out.read_text() == text:
        print(f"{out}: unchanged, {len(pins)} packages pinned")
        return
    out.write_text(text)
    print(f"{out}: {len(pins)} packages pinned")


if __name__ == "__main__":
    main(sys.argv[1:])
